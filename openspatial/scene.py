"""Canonical scene format: objects with oriented boxes, frames with image, depth, instances, K and pose.

On disk a scene is a directory holding `scene.json` and the frame files it names (paths relative to it):

    {"format": "openspatial.scene/1", "scene_id": "...", "source_dataset": "...", "license": "...",
     "objects": [{"id": "7", "instance_id": 7, "category": "chair", "has_front": true,
                  "box": {"center": [x, y, z], "extents": [l, w, h], "rotation": [[...], [...], [...]]}}],
     "frames": [{"id": "000", "image": "frames/000.jpg", "depth": "frames/000.depth.png",
                 "instances": "frames/000.instances.png", "width": 640, "height": 480,
                 "intrinsics": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], "pose": [[4x4 camera-to-world]]}]}

Conventions are those of `data_engine.conventions`. Depth PNGs are uint16 millimetres (0 = unknown);
instance PNGs are uint16 maps of `instance_id` (0 = no object). `depth` and `instances` are optional.
Every check names the file and the field that failed (`SceneFormatError`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from data_engine.conventions import ORTHONORMAL_TOLERANCE, OrientedBox, rotation_error

FORMAT = "openspatial.scene/1"
SCENE_FILE = "scene.json"
DEPTH_PNG_SCALE = 1000.0  # millimetres per metre


class SceneFormatError(ValueError):
    """A scene violates the canonical format; str() is one line naming the file and the field."""

    def __init__(self, source: str, field_path: str, message: str) -> None:
        super().__init__(f"{source}: {field_path}: {message}")
        self.source, self.field_path, self.message = source, field_path, message


@dataclass
class SceneObject:
    object_id: str
    instance_id: int  # value of this object in the frames' instance maps
    category: str
    box: OrientedBox
    has_front: bool = False  # its front is the box's local +x axis


@dataclass
class Frame:
    frame_id: str
    width: int
    height: int
    intrinsics: np.ndarray  # (3, 3)
    pose: np.ndarray  # (4, 4) camera-to-world, OpenCV camera
    image: np.ndarray | None = None  # (H, W, 3) uint8 RGB
    depth: np.ndarray | None = None  # (H, W) float32 metres, 0 = unknown
    instances: np.ndarray | None = None  # (H, W) int32 instance ids, 0 = none

    @property
    def camera_center(self) -> np.ndarray:
        return self.pose[:3, 3]


@dataclass
class Scene:
    scene_id: str
    objects: list[SceneObject]
    frames: list[Frame]
    source_dataset: str = "unknown"
    license: str = "unknown"
    metadata: dict[str, Any] = field(default_factory=dict)

    def object_by_instance(self) -> dict[int, SceneObject]:
        return {obj.instance_id: obj for obj in self.objects}


# ---- validation (shared by the loader, the adapters and the procedural generator) -----------------------

def _finite_array(value: Any, shape: tuple[int, ...], source: str, where: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise SceneFormatError(source, where, f"expected numbers of shape {shape}") from None
    if array.shape != shape:
        raise SceneFormatError(source, where, f"expected shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise SceneFormatError(source, where, "contains NaN or infinity")
    return array


def validate_box(box: OrientedBox, source: str, where: str) -> OrientedBox:
    center = _finite_array(box.center, (3,), source, f"{where}.center")
    extents = _finite_array(box.extents, (3,), source, f"{where}.extents")
    rotation = _finite_array(box.rotation, (3, 3), source, f"{where}.rotation")
    if np.any(extents <= 0):
        raise SceneFormatError(source, f"{where}.extents", f"every side must be > 0, got {extents.tolist()}")
    error = rotation_error(rotation)
    if error > ORTHONORMAL_TOLERANCE:
        raise SceneFormatError(source, f"{where}.rotation", f"not a proper orthonormal rotation (error {error:.3g})")
    return OrientedBox(center, extents, rotation)


def validate_frame(frame: Frame, source: str, where: str) -> None:
    if frame.width <= 0 or frame.height <= 0:
        raise SceneFormatError(source, f"{where}.width",
                               f"image size must be positive, got {frame.width}x{frame.height}")
    intrinsics = _finite_array(frame.intrinsics, (3, 3), source, f"{where}.intrinsics")
    if intrinsics[0, 0] <= 0 or intrinsics[1, 1] <= 0 or not np.allclose(intrinsics[2], [0, 0, 1]):
        raise SceneFormatError(source, f"{where}.intrinsics", "expected [[fx,0,cx],[0,fy,cy],[0,0,1]] with fx, fy > 0")
    pose = _finite_array(frame.pose, (4, 4), source, f"{where}.pose")
    if not np.allclose(pose[3], [0, 0, 0, 1]):
        raise SceneFormatError(source, f"{where}.pose", "last row must be [0, 0, 0, 1]")
    error = rotation_error(pose[:3, :3])
    if error > ORTHONORMAL_TOLERANCE:
        raise SceneFormatError(source, f"{where}.pose", f"rotation part is not orthonormal (error {error:.3g})")
    for name in ("image", "depth", "instances"):
        array = getattr(frame, name)
        if array is not None and array.shape[:2] != (frame.height, frame.width):
            raise SceneFormatError(source, f"{where}.{name}",
                                   f"size {array.shape[1]}x{array.shape[0]} != frame {frame.width}x{frame.height}")
    if frame.depth is not None and not np.all(np.isfinite(frame.depth)):
        raise SceneFormatError(source, f"{where}.depth", "contains NaN or infinity")


def validate_scene(scene: Scene, source: str) -> Scene:
    if not scene.scene_id:
        raise SceneFormatError(source, "scene_id", "must be a non-empty string")
    seen_ids: set[str] = set()
    seen_instances: set[int] = set()
    for index, obj in enumerate(scene.objects):
        where = f"objects[{index}]"
        if obj.object_id in seen_ids:
            raise SceneFormatError(source, f"{where}.id", f"duplicate object id {obj.object_id!r}")
        if obj.instance_id <= 0 or obj.instance_id in seen_instances:
            raise SceneFormatError(source, f"{where}.instance_id",
                                   f"must be a unique integer > 0, got {obj.instance_id}")
        if not obj.category:
            raise SceneFormatError(source, f"{where}.category", "must be a non-empty string")
        seen_ids.add(obj.object_id)
        seen_instances.add(obj.instance_id)
        obj.box = validate_box(obj.box, source, f"{where}.box")
    if not scene.frames:
        raise SceneFormatError(source, "frames", "a scene needs at least one frame")
    for index, frame in enumerate(scene.frames):
        validate_frame(frame, source, f"frames[{index}]")
    return scene


# ---- reading and writing ------------------------------------------------------------------------------

def _require(mapping: Any, key: str, source: str, where: str) -> Any:
    if not isinstance(mapping, dict):
        raise SceneFormatError(source, where, "expected an object")
    if key not in mapping or mapping[key] is None:
        raise SceneFormatError(source, f"{where}.{key}" if where else key, "missing")
    return mapping[key]


def _read_image_file(directory: Path, name: str, flags: int, source: str, where: str) -> np.ndarray:
    path = (directory / name).resolve()
    if not path.is_relative_to(directory.resolve()):
        raise SceneFormatError(source, where, f"{name!r} points outside the scene directory")
    array = cv2.imread(str(path), flags)
    if array is None:
        raise SceneFormatError(source, where, f"cannot read image file {name!r}")
    return array


def _parse_object(data: Any, source: str, where: str) -> SceneObject:
    box_data = _require(data, "box", source, where)
    box = OrientedBox(*(np.asarray(_finite_array(_require(box_data, key, source, f"{where}.box"),
                                                 shape, source, f"{where}.box.{key}"))
                        for key, shape in (("center", (3,)), ("extents", (3,)), ("rotation", (3, 3)))))
    instance_id = _require(data, "instance_id", source, where)
    if not isinstance(instance_id, int):
        raise SceneFormatError(source, f"{where}.instance_id", f"expected an integer, got {instance_id!r}")
    return SceneObject(str(_require(data, "id", source, where)), instance_id,
                       str(_require(data, "category", source, where)), box, bool(data.get("has_front", False)))


def _parse_frame(data: Any, directory: Path, source: str, where: str) -> Frame:
    width, height = (_require(data, key, source, where) for key in ("width", "height"))
    if not isinstance(width, int) or not isinstance(height, int):
        raise SceneFormatError(source, f"{where}.width", "width and height must be integers")
    frame = Frame(str(_require(data, "id", source, where)), width, height,
                  _finite_array(_require(data, "intrinsics", source, where), (3, 3), source, f"{where}.intrinsics"),
                  _finite_array(_require(data, "pose", source, where), (4, 4), source, f"{where}.pose"))
    image_name = _require(data, "image", source, where)
    bgr = _read_image_file(directory, image_name, cv2.IMREAD_COLOR, source, f"{where}.image")
    frame.image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if data.get("depth"):
        raw = _read_image_file(directory, data["depth"], cv2.IMREAD_UNCHANGED, source, f"{where}.depth")
        frame.depth = raw.astype(np.float32) / DEPTH_PNG_SCALE
    if data.get("instances"):
        frame.instances = _read_image_file(directory, data["instances"], cv2.IMREAD_UNCHANGED, source,
                                           f"{where}.instances").astype(np.int32)
    return frame


def load_scene(scene_dir: Path) -> Scene:
    path = Path(scene_dir) / SCENE_FILE
    source = str(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise SceneFormatError(source, "<file>", f"cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise SceneFormatError(source, "<file>", f"invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if _require(data, "format", source, "") != FORMAT:
        raise SceneFormatError(source, "format", f"expected {FORMAT!r}, got {data['format']!r}")
    objects = _require(data, "objects", source, "")
    frames = _require(data, "frames", source, "")
    if not isinstance(objects, list) or not isinstance(frames, list):
        raise SceneFormatError(source, "objects" if not isinstance(objects, list) else "frames", "expected a list")
    scene = Scene(str(_require(data, "scene_id", source, "")),
                  [_parse_object(o, source, f"objects[{i}]") for i, o in enumerate(objects)],
                  [_parse_frame(f, path.parent, source, f"frames[{i}]") for i, f in enumerate(frames)],
                  source_dataset=str(data.get("source_dataset", "unknown")),
                  license=str(data.get("license", "unknown")))
    return validate_scene(scene, source)


def save_scene(scene: Scene, scene_dir: Path) -> Path:
    """Write a scene in the canonical on-disk format (JPEG images, uint16 PNG depth and instances)."""
    scene_dir = Path(scene_dir)
    (scene_dir / "frames").mkdir(parents=True, exist_ok=True)
    frames = []
    for frame in scene.frames:
        entry: dict[str, Any] = {"id": frame.frame_id, "width": frame.width, "height": frame.height,
                                 "intrinsics": frame.intrinsics.tolist(), "pose": frame.pose.tolist()}
        if frame.image is not None:
            entry["image"] = f"frames/{frame.frame_id}.jpg"
            cv2.imwrite(str(scene_dir / entry["image"]), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
        if frame.depth is not None:
            entry["depth"] = f"frames/{frame.frame_id}.depth.png"
            millimetres = np.clip(np.round(frame.depth * DEPTH_PNG_SCALE), 0, 65535).astype(np.uint16)
            cv2.imwrite(str(scene_dir / entry["depth"]), millimetres)
        if frame.instances is not None:
            entry["instances"] = f"frames/{frame.frame_id}.instances.png"
            cv2.imwrite(str(scene_dir / entry["instances"]), frame.instances.astype(np.uint16))
        frames.append(entry)
    objects = [{"id": o.object_id, "instance_id": o.instance_id, "category": o.category, "has_front": o.has_front,
                "box": o.box.to_json()} for o in scene.objects]
    payload = {"format": FORMAT, "scene_id": scene.scene_id, "source_dataset": scene.source_dataset,
               "license": scene.license, "objects": objects, "frames": frames}
    path = scene_dir / SCENE_FILE
    path.write_text(json.dumps(payload, indent=1))
    return path
