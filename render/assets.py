"""Asset geometry known without Blender: surface samples and bounds of procedural assets, file formats.

The samples are the "known 3D points" of the geometry checks: they come from the scene description, never
from the renderer, so a wrong camera conversion in the worker shows up as a reprojection error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data_engine.conventions import transform_points
from render.geometry import trs_matrix
from render.scene import AssetFormat, FileAsset, ObjectInstance, Primitive, PrimitivesAsset

FORMAT_BY_SUFFIX: dict[str, AssetFormat] = {".gltf": "gltf", ".glb": "glb", ".obj": "obj", ".ply": "ply",
                                            ".blend": "blend"}
_RING = 48  # samples around circular edges


class UnsupportedAssetError(ValueError):
    """An asset file whose format the worker cannot load."""


def file_asset(path: Path, *, category: str = "object") -> FileAsset:
    fmt = FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        raise UnsupportedAssetError(f"{path}: unsupported asset format {path.suffix!r}; "
                                    f"supported: {', '.join(FORMAT_BY_SUFFIX)}")
    return FileAsset(name=path.stem, category=category, path=str(path.resolve()), format=fmt)


def primitive_outline_points(part: Primitive) -> np.ndarray:
    """Points on the part's surface whose convex hull is the part (box corners, circle rims, sphere samples),
    in the asset frame. Text parts have no analytic outline and give none."""
    sx, sy, sz = (s / 2 for s in part.size)
    if part.shape == "text":
        return np.zeros((0, 3))
    if part.shape == "box":
        local = np.array([[x, y, z] for x in (-sx, sx) for y in (-sy, sy) for z in (-sz, sz)])
    elif part.shape in ("cylinder", "cone"):
        angles = np.linspace(0, 2 * np.pi, _RING, endpoint=False)
        ring = np.stack([np.cos(angles) * sx, np.sin(angles) * sy], axis=1)
        bottom = np.concatenate([ring, np.full((_RING, 1), -sz)], axis=1)
        if part.shape == "cylinder":
            top = np.concatenate([ring, np.full((_RING, 1), sz)], axis=1)
        else:
            top = np.array([[0.0, 0.0, sz]])
        local = np.concatenate([bottom, top])
    else:  # sphere (ellipsoid)
        phi, theta = np.meshgrid(np.linspace(0, np.pi, 25), np.linspace(0, 2 * np.pi, _RING, endpoint=False))
        local = np.stack([np.sin(phi) * np.cos(theta) * sx, np.sin(phi) * np.sin(theta) * sy, np.cos(phi) * sz],
                         axis=-1).reshape(-1, 3)
    return transform_points(trs_matrix(part.location, part.rotation_euler), local)


def asset_convex_pieces(asset: PrimitivesAsset) -> list[np.ndarray]:
    """The asset as convex pieces (one point set per primitive; text parts have none), asset frame."""
    return [points for points in map(primitive_outline_points, asset.parts) if len(points)]


def asset_appearance_points(asset: PrimitivesAsset) -> tuple[np.ndarray, np.ndarray]:
    """Outline points of every part (a text part as the box it is fitted into), asset frame, and per point
    a label that says how its part looks (material and text): what a symmetry must map onto itself."""
    looks: dict[tuple[object, str | None], int] = {}
    points, labels = [], []
    for part in asset.parts:
        shape = part if part.shape != "text" else part.model_copy(update={"shape": "box"})
        outline = primitive_outline_points(shape)
        look = looks.setdefault((asset.materials[part.material], part.text), len(looks))
        points.append(outline)
        labels.append(np.full(len(outline), look))
    return np.concatenate(points), np.concatenate(labels)


def asset_outline_points(asset: PrimitivesAsset) -> np.ndarray:
    return np.concatenate(asset_convex_pieces(asset))


def asset_bounds(asset: PrimitivesAsset) -> tuple[np.ndarray, np.ndarray]:
    points = asset_outline_points(asset)
    return points.min(axis=0), points.max(axis=0)


def instance_outline_points(instance: ObjectInstance) -> np.ndarray:
    if not isinstance(instance.asset, PrimitivesAsset):
        raise TypeError(f"{instance.name}: outline points are known only for procedural assets")
    return transform_points(np.asarray(instance.object_to_world), asset_outline_points(instance.asset))


def instance_bounds(instance: ObjectInstance) -> tuple[np.ndarray, np.ndarray]:
    points = instance_outline_points(instance)
    return points.min(axis=0), points.max(axis=0)
