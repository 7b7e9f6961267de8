"""RGB-D sequences: the input of 3D lifting, i.e. frames of a video with what upstream models give per frame.

A sequence is frames with image, metric depth, K, camera-to-world pose (conventions of
`data_engine.conventions`) and a per-frame instance map whose ids mean nothing across frames (a 2D segmenter
run on each frame), with each frame's id -> category table. Three sources:

Documented layout: one directory per sequence holding `sequence.json` and the files it names (relative paths):

    {"format": "openspatial.rgbd_sequence/1", "sequence_id": "...", "source_dataset": "...", "license": "...",
     "frames": [{"id": "000", "image": "color/000.jpg", "depth": "depth/000.png",
                 "instances": "instances/000.png", "labels": {"3": "chair", "17": "table"},
                 "intrinsics": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], "pose": [[4x4 camera-to-world]]}]}

  depth PNGs are uint16 millimetres (0 = unknown), instance PNGs uint16 (0 = no object); image, depth and
  instances must have the same size.

ScanNet sequence layout (`<scene>/` as ScanNet's SensReader and 2D label export write it): `color/<i>.jpg`,
  `depth/<i>.png` (uint16 mm), `pose/<i>.txt` (camera-to-world; tracking failures are -inf and those frames are
  dropped, as in the ScanNet adapter), `intrinsic/intrinsic_depth.txt`, `<scene>.txt` (axisAlignment, optional),
  `instance-filt/<i>.png` (instance ids) and `label-filt/<i>.png` (NYU40 ids, as ScanNet's BenchmarkScripts
  2d_helpers write them). Colour, instances and labels are resized to the depth resolution (nearest neighbour
  for ids). A frame's instance takes the majority NYU40 label under its mask; structure and catch-all classes
  (wall, floor, otherprop, ...) are not objects. ScanNet's instance ids are consistent across frames, but
  lifting never uses that: they are treated as per-frame ids like any segmenter's.

Procedural: `procedural://N?seed=S`, procedural scenes (`openspatial.procedural`) with the noise model of
  `openspatial.noise` applied; the scene's objects travel along as ground truth for evaluation only.

A sequence that cannot be lifted raises `SequenceError` with a short reason code (`missing_depth`,
`missing_pose`, `nan_pose`, `frame_size_mismatch`, `missing_instances`, `unreadable`, `invalid_sequence`) and
a one-line detail naming the file and field; the reader turns it into a rejected row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from data_engine.conventions import ORTHONORMAL_TOLERANCE, rotation_error
from openspatial.adapters import NYU40_CATCH_ALL_LABELS, NYU40_LABELS, STRUCTURAL_CLASSES, ScanNetAdapter
from openspatial.noise import ObservationNoise, noisy_frames
from openspatial.procedural import ProceduralConfig, generate_scene
from openspatial.scene import DEPTH_PNG_SCALE, Frame, SceneFormatError, SceneObject

SEQUENCE_FORMAT = "openspatial.rgbd_sequence/1"
SEQUENCE_FILE = "sequence.json"
# NYU40 classes that are room structure or catch-alls: not objects a question can name.
SCANNET_NON_OBJECTS = frozenset(STRUCTURAL_CLASSES) | NYU40_CATCH_ALL_LABELS


class SequenceError(ValueError):
    """A sequence cannot be lifted; `reason` is a stable code, str() one line naming file and field."""

    def __init__(self, reason: str, source: str, detail: str) -> None:
        super().__init__(f"{source}: {detail}")
        self.reason = reason


@dataclass
class RgbdSequence:
    sequence_id: str
    frames: list[Frame]  # instances hold per-frame ids
    labels: list[dict[int, str]]  # per frame: its instance id -> category
    source_dataset: str = "unknown"
    license: str = "unknown"
    ground_truth: list[SceneObject] = field(default_factory=list)  # procedural only: for evaluation, never lifting
    metadata: dict = field(default_factory=dict)


def validate_sequence(sequence: RgbdSequence, source: str) -> RgbdSequence:
    """Every frame has depth, instances and a finite rigid pose, all of the frame's size."""
    if len(sequence.frames) < 2:
        raise SequenceError("invalid_sequence", source, f"frames: {len(sequence.frames)} usable frames, need 2")
    for index, frame in enumerate(sequence.frames):
        where = f"frames[{index}]"
        if frame.depth is None:
            raise SequenceError("missing_depth", source, f"{where}.depth: missing")
        if frame.instances is None:
            raise SequenceError("missing_instances", source, f"{where}.instances: missing")
        if frame.pose is None:
            raise SequenceError("missing_pose", source, f"{where}.pose: missing")
        pose = np.asarray(frame.pose, dtype=float)
        if pose.shape != (4, 4):
            raise SequenceError("invalid_sequence", source, f"{where}.pose: expected 4x4, got {pose.shape}")
        if not np.all(np.isfinite(pose)):
            raise SequenceError("nan_pose", source, f"{where}.pose: contains NaN or infinity")
        if not np.allclose(pose[3], [0, 0, 0, 1]) or rotation_error(pose[:3, :3]) > ORTHONORMAL_TOLERANCE:
            raise SequenceError("invalid_sequence", source, f"{where}.pose: not a rigid camera-to-world transform")
        intrinsics = np.asarray(frame.intrinsics, dtype=float)
        if intrinsics.shape != (3, 3) or not np.all(np.isfinite(intrinsics)) or intrinsics[0, 0] <= 0 \
                or intrinsics[1, 1] <= 0:
            raise SequenceError("invalid_sequence", source, f"{where}.intrinsics: expected a 3x3 pinhole K")
        for name in ("image", "depth", "instances"):
            array = getattr(frame, name)
            if array is not None and array.shape[:2] != (frame.height, frame.width):
                raise SequenceError("frame_size_mismatch", source, f"{where}.{name}: size {array.shape[1]}x"
                                    f"{array.shape[0]} != frame {frame.width}x{frame.height}")
        if not np.all(np.isfinite(frame.depth)):
            raise SequenceError("invalid_sequence", source, f"{where}.depth: contains NaN or infinity")
    return sequence


# ---- documented layout -------------------------------------------------------------------------------

def _read(directory: Path, name: object, flags: int, source: str, where: str) -> np.ndarray:
    if not isinstance(name, str) or not name:
        raise SequenceError("invalid_sequence", source, f"{where}: expected a file name")
    path = (directory / name).resolve()
    if not path.is_relative_to(directory.resolve()):
        raise SequenceError("invalid_sequence", source, f"{where}: {name!r} points outside the sequence directory")
    array = cv2.imread(str(path), flags)
    if array is None:
        raise SequenceError("unreadable", source, f"{where}: cannot read image file {name!r}")
    return array


def _matrix(value: object, shape: tuple[int, int], reason: str, source: str, where: str) -> np.ndarray:
    if value is None:
        raise SequenceError(reason, source, f"{where}: missing")
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise SequenceError("invalid_sequence", source, f"{where}: expected numbers") from None
    if array.shape != shape:
        raise SequenceError("invalid_sequence", source, f"{where}: expected shape {shape}, got {array.shape}")
    return array


def _labels(value: object, source: str, where: str) -> dict[int, str]:
    if not isinstance(value, dict):
        raise SequenceError("invalid_sequence", source, f"{where}: expected an object of id -> category")
    try:
        return {int(key): str(category) for key, category in value.items() if category}
    except ValueError:
        raise SequenceError("invalid_sequence", source, f"{where}: ids must be integers") from None


def load_sequence_dir(directory: Path) -> RgbdSequence:
    source = str(directory / SEQUENCE_FILE)
    try:
        data = json.loads((directory / SEQUENCE_FILE).read_text())
    except OSError as exc:
        raise SequenceError("unreadable", source, f"<file>: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise SequenceError("invalid_sequence", source, f"<file>: invalid JSON at line {exc.lineno}") from None
    if not isinstance(data, dict) or data.get("format") != SEQUENCE_FORMAT:
        raise SequenceError("invalid_sequence", source, f"format: expected {SEQUENCE_FORMAT!r}")
    entries = data.get("frames")
    if not isinstance(entries, list):
        raise SequenceError("invalid_sequence", source, "frames: expected a list")
    frames, labels = [], []
    for index, entry in enumerate(entries):
        where = f"frames[{index}]"
        if not isinstance(entry, dict):
            raise SequenceError("invalid_sequence", source, f"{where}: expected an object")
        bgr = _read(directory, entry.get("image"), cv2.IMREAD_COLOR, source, f"{where}.image")
        if not entry.get("depth"):
            raise SequenceError("missing_depth", source, f"{where}.depth: missing")
        depth = _read(directory, entry["depth"], cv2.IMREAD_UNCHANGED, source, f"{where}.depth")
        if not entry.get("instances"):
            raise SequenceError("missing_instances", source, f"{where}.instances: missing")
        instances = _read(directory, entry["instances"], cv2.IMREAD_UNCHANGED, source, f"{where}.instances")
        pose = _matrix(entry.get("pose"), (4, 4), "missing_pose", source, f"{where}.pose")
        intrinsics = _matrix(entry.get("intrinsics"), (3, 3), "invalid_sequence", source, f"{where}.intrinsics")
        height, width = bgr.shape[:2]
        frames.append(Frame(str(entry.get("id", f"{index:06d}")), width, height, intrinsics, pose,
                            cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), depth.astype(np.float32) / DEPTH_PNG_SCALE,
                            instances.astype(np.int32)))
        labels.append(_labels(entry.get("labels", {}), source, f"{where}.labels"))
    sequence = RgbdSequence(str(data.get("sequence_id") or directory.name), frames, labels,
                            str(data.get("source_dataset", "unknown")), str(data.get("license", "unknown")))
    return validate_sequence(sequence, source)


def save_sequence_dir(sequence: RgbdSequence, directory: Path) -> Path:
    """Write a sequence in the documented layout (JPEG colour, uint16 PNG depth in mm and instance ids)."""
    for sub in ("color", "depth", "instances"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    entries = []
    for frame, labels in zip(sequence.frames, sequence.labels):
        names = {kind: f"{kind}/{frame.frame_id}.{'jpg' if kind == 'color' else 'png'}"
                 for kind in ("color", "depth", "instances")}
        cv2.imwrite(str(directory / names["color"]), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
        millimetres = np.clip(np.round(frame.depth * DEPTH_PNG_SCALE), 0, 65535).astype(np.uint16)
        cv2.imwrite(str(directory / names["depth"]), millimetres)
        cv2.imwrite(str(directory / names["instances"]), frame.instances.astype(np.uint16))
        entries.append({"id": frame.frame_id, "image": names["color"], "depth": names["depth"],
                        "instances": names["instances"], "labels": {str(k): v for k, v in labels.items()},
                        "intrinsics": np.asarray(frame.intrinsics).tolist(), "pose": np.asarray(frame.pose).tolist()})
    path = directory / SEQUENCE_FILE
    path.write_text(json.dumps({"format": SEQUENCE_FORMAT, "sequence_id": sequence.sequence_id,
                                "source_dataset": sequence.source_dataset, "license": sequence.license,
                                "frames": entries}, indent=1))
    return path


def list_sequence_dirs(root: Path) -> list[str]:
    return sorted(p.parent.relative_to(root).as_posix() for p in root.rglob(SEQUENCE_FILE))


# ---- ScanNet sequence layout ----------------------------------------------------------------------------

def list_scannet_sequences(root: Path) -> list[str]:
    return sorted(p.parent.relative_to(root).as_posix() for p in root.rglob("instance-filt")
                  if p.is_dir() and (p.parent / "pose").is_dir())


def _scannet_labels(instances: np.ndarray, nyu40: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
    """Per-frame instance ids with a referable majority NYU40 label; the others become background."""
    kept = np.zeros_like(instances)
    labels = {}
    for instance in np.unique(instances):
        if instance == 0:
            continue
        mask = instances == instance
        values, counts = np.unique(nyu40[mask], return_counts=True)
        label = int(values[np.argmax(counts)])
        if 1 <= label <= len(NYU40_LABELS) and NYU40_LABELS[label - 1] not in SCANNET_NON_OBJECTS:
            kept[mask] = instance
            labels[int(instance)] = NYU40_LABELS[label - 1]
    return kept, labels


def load_scannet_sequence(directory: Path, max_frames: int) -> RgbdSequence:
    source = str(directory)
    scene_name = directory.name
    meta = directory / f"{scene_name}.txt"
    try:
        header = ScanNetAdapter._header(meta) if meta.is_file() else {}
        alignment = ScanNetAdapter._axis_alignment(header, meta)
    except SceneFormatError as exc:
        raise SequenceError("invalid_sequence", source, str(exc)) from None
    try:
        intrinsics = np.loadtxt(directory / "intrinsic" / "intrinsic_depth.txt")[:3, :3]
    except (OSError, ValueError, IndexError) as exc:
        raise SequenceError("invalid_sequence", source, f"intrinsic/intrinsic_depth.txt: {exc}") from None
    colour_files = sorted((directory / "color").glob("*.jpg"),
                          key=lambda p: int(p.stem) if p.stem.isdigit() else -1)
    usable, invalid_poses = [], 0
    for colour_path in colour_files:
        stem = colour_path.stem
        pose_path = directory / "pose" / f"{stem}.txt"
        if not pose_path.is_file():
            raise SequenceError("missing_pose", source, f"pose/{stem}.txt: missing")
        try:
            pose = np.loadtxt(pose_path)
        except ValueError as exc:
            raise SequenceError("invalid_sequence", source, f"pose/{stem}.txt: {exc}") from None
        if pose.shape == (4, 4) and not np.all(np.isfinite(pose)):
            invalid_poses += 1  # ScanNet writes tracking failures as -inf poses: the frame is dropped
            continue
        usable.append((stem, pose))
    if len(usable) > max_frames:
        usable = [usable[i] for i in np.linspace(0, len(usable) - 1, max_frames).round().astype(int)]
    frames, labels = [], []
    for stem, pose in usable:
        if not (directory / "depth" / f"{stem}.png").is_file():
            raise SequenceError("missing_depth", source, f"depth/{stem}.png: missing")
        depth = _read(directory, f"depth/{stem}.png", cv2.IMREAD_UNCHANGED, source, f"depth/{stem}.png")
        height, width = depth.shape[:2]
        colour = cv2.resize(_read(directory, f"color/{stem}.jpg", cv2.IMREAD_COLOR, source, f"color/{stem}.jpg"),
                            (width, height), interpolation=cv2.INTER_AREA)
        ids = [cv2.resize(_read(directory, name, cv2.IMREAD_UNCHANGED, source, name), (width, height),
                          interpolation=cv2.INTER_NEAREST).astype(np.int32)
               for name in (f"instance-filt/{stem}.png", f"label-filt/{stem}.png")]
        instances, frame_labels = _scannet_labels(*ids)
        frames.append(Frame(stem, width, height, intrinsics.copy(), alignment @ pose if pose.shape == (4, 4) else pose,
                            cv2.cvtColor(colour, cv2.COLOR_BGR2RGB), depth.astype(np.float32) / DEPTH_PNG_SCALE,
                            instances))
        labels.append(frame_labels)
    sequence = RgbdSequence(scene_name, frames, labels, "scannet", "ScanNet Terms of Use",
                            metadata={"frames_with_invalid_pose": invalid_poses})
    return validate_sequence(sequence, source)


# ---- procedural -----------------------------------------------------------------------------------------

def procedural_sequence(seed: int, index: int, config: ProceduralConfig, noise: ObservationNoise) -> RgbdSequence:
    """Procedural scene `index` of stream `seed` seen through `noise` (seeded by the same pair)."""
    scene = generate_scene(seed, index, config)
    categories = {obj.instance_id: obj.category for obj in scene.objects}
    frames, labels = noisy_frames(scene.frames, categories, noise, seed=[seed, index])
    return RgbdSequence(scene.scene_id, frames, labels, scene.source_dataset, scene.license, scene.objects,
                        dict(scene.metadata))
