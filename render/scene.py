"""The plain-Python scene description: assets, transforms, materials, lights, cameras, render settings.

Everything here is built, validated and tested in the main environment without Blender. A scene travels to
a render worker as JSON (`RenderScene.model_dump(mode="json")`) and only `render/blender_scene.py` turns it into
bpy data. Conventions (ARCHITECTURE.md): world Z-up, metres; cameras OpenCV (x right, y down, z forward)
with camera-to-world 4x4 poses; pixel centres at integer coordinates.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Vec3 = tuple[float, float, float]
Matrix4 = tuple[tuple[float, float, float, float], ...]
IDENTITY4: Matrix4 = tuple(tuple(float(v) for v in row) for row in np.eye(4))


def matrix_tuple(matrix: np.ndarray) -> Matrix4:
    return tuple(tuple(float(v) for v in row) for row in np.asarray(matrix))


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Material(Model):
    base_color: tuple[float, float, float] = (0.8, 0.8, 0.8)  # linear RGB in [0, 1]
    roughness: float = Field(default=0.5, ge=0, le=1)
    metallic: float = Field(default=0.0, ge=0, le=1)
    color_name: str = "grey"  # what the colour is called in captions


PrimitiveShape = Literal["box", "cylinder", "cone", "sphere", "text"]


class Primitive(Model):
    """One part of a procedural asset, in the asset's frame.

    `size` is the full extent along the part's local x, y, z before rotation. A cone has its apex at +z.
    A text part is scaled to fit inside size x/z and faces -y (the nominal front).
    """

    shape: PrimitiveShape
    size: Vec3
    location: Vec3 = (0.0, 0.0, 0.0)
    rotation_euler: Vec3 = (0.0, 0.0, 0.0)  # XYZ order, radians
    material: str
    text: str | None = None

    @model_validator(mode="after")
    def _text_only_on_text_parts(self) -> Primitive:
        if (self.shape == "text") != bool(self.text):
            raise ValueError("a text part needs `text`; other parts must not have it")
        if min(self.size) <= 0 and self.shape != "text":
            raise ValueError(f"size {self.size} must be positive")
        return self


class PrimitivesAsset(Model):
    """A procedural asset: a composition of primitives; front is -y, up is +z, resting on z = 0."""

    kind: Literal["primitives"] = "primitives"
    name: str
    category: str
    parts: tuple[Primitive, ...] = Field(min_length=1)
    materials: dict[str, Material]

    @model_validator(mode="after")
    def _materials_exist(self) -> PrimitivesAsset:
        missing = sorted({p.material for p in self.parts} - set(self.materials))
        if missing:
            raise ValueError(f"asset {self.name}: parts use undefined materials {missing}")
        return self


AssetFormat = Literal["gltf", "glb", "obj", "ply", "blend"]


class FileAsset(Model):
    """An asset file loaded by the worker; its pose is applied on top of the file's own transforms."""

    kind: Literal["file"] = "file"
    name: str
    category: str = "object"
    path: str  # absolute path on the render node
    format: AssetFormat


Asset = Annotated[PrimitivesAsset | FileAsset, Field(discriminator="kind")]


class ObjectInstance(Model):
    """An asset placed in the world. `pass_index` (>= 1) is the object's value in the index mask."""

    name: str
    asset: Asset
    object_to_world: Matrix4 = IDENTITY4
    pass_index: int = Field(ge=1, le=255)

    @field_validator("object_to_world")
    @classmethod
    def _is_affine(cls, matrix: Matrix4) -> Matrix4:
        array = np.asarray(matrix, dtype=float)
        if array.shape != (4, 4) or not np.allclose(array[3], (0, 0, 0, 1)):
            raise ValueError("object_to_world must be a 4x4 affine matrix with last row 0 0 0 1")
        return matrix


class Light(Model):
    kind: Literal["sun", "point", "area"]
    energy: float = Field(gt=0)  # W for point/area lights, W/m^2 (strength) for the sun
    location: Vec3 = (0.0, 0.0, 5.0)
    direction: Vec3 = (0.0, 0.0, -1.0)  # where the light points (sun, area)
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    size: float = Field(default=1.0, gt=0)  # area light side, m; sun angular diameter is fixed


class Camera(Model):
    """Pinhole camera with square pixels: intrinsics in pixels, OpenCV camera-to-world pose."""

    width: int = Field(gt=0)
    height: int = Field(gt=0)
    fx: float = Field(gt=0)
    fy: float = Field(gt=0)
    cx: float
    cy: float
    cam_to_world: Matrix4

    @model_validator(mode="after")
    def _square_pixels(self) -> Camera:
        if abs(self.fx - self.fy) > 1e-6 * self.fx:
            raise ValueError(f"fx={self.fx} and fy={self.fy} differ; only square pixels are supported")
        pose = np.asarray(self.cam_to_world, dtype=float)
        if pose.shape != (4, 4) or not np.allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-6):
            raise ValueError("cam_to_world must be a 4x4 rigid transform")
        return self

    def intrinsics(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=float)

    def pose(self) -> np.ndarray:
        return np.asarray(self.cam_to_world, dtype=float)


class World(Model):
    color: tuple[float, float, float] = (0.6, 0.6, 0.65)  # ambient light colour (linear RGB)
    strength: float = Field(default=0.6, ge=0)


class RenderScene(Model):
    objects: tuple[ObjectInstance, ...] = Field(min_length=1)
    lights: tuple[Light, ...] = ()
    world: World = World()

    @model_validator(mode="after")
    def _unique_names(self) -> RenderScene:
        names = [o.name for o in self.objects]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"object names must be unique; repeated: {repeated}")
        return self

    def object_named(self, name: str) -> ObjectInstance:
        for instance in self.objects:
            if instance.name == name:
                return instance
        raise KeyError(f"scene has no object {name!r}")

    def digest(self) -> str:
        """Stable hash of the scene: the worker rebuilds Blender data only when it changes."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class RenderSettings(Model):
    engine: Literal["CYCLES"] = "CYCLES"
    device: Literal["CPU", "GPU"] = "CPU"
    gpu_backend: Literal["OPTIX", "CUDA"] = "OPTIX"  # used when device is GPU
    samples: int = Field(default=8, gt=0)
    denoise: bool = False
    threads: int = Field(default=1, ge=0)  # Cycles CPU threads; 0 = all cores (one worker per core by default)
