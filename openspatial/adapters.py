"""Dataset adapters: each reads one dataset's own on-disk layout and box convention into a canonical `Scene`.

ScanNet v2 (`scans/<sceneXXXX_XX>/`, frames exported from the .sens stream by the official SensReader):
- `<scene>.txt` holds `axisAlignment = m00 ... m33` (row-major 4x4) mapping the Z-up scan into an axis-aligned
  frame; that aligned frame is our world, so boxes and poses are both moved by it;
- boxes: ScanNet has none; an object is a `segGroups` entry of `<scene>.aggregation.json` (`objectId`, `label`,
  `segments`), its vertices are those of `<scene>_vh_clean_2.ply` whose `segIndices` (in
  `<scene>_vh_clean_2.0.010000.segs.json`) are in `segments`; its box is their axis-aligned min/max box in the
  aligned frame (the VoteNet convention);
- frames: `color/<i>.jpg`, `depth/<i>.png` (uint16 mm), `pose/<i>.txt` (camera-to-world 4x4, OpenCV camera,
  scan frame; invalid poses are written as -inf), `intrinsic/intrinsic_depth.txt` (4x4, pixel centres on whole
  numbers) calibrated for the `depthWidth` x `depthHeight` of `<scene>.txt`: a depth map of another size with the
  same aspect scales K, one of another aspect is dropped (a header without the size leaves K as read). Colour is
  resized to the depth resolution so that image, depth and K agree.

ARKitScenes 3DOD (`<split>/<video_id>/`):
- `<video_id>_3dod_annotation.json`: `data[i].label` and `data[i].segments.obbAligned` with `centroid`,
  `axesLengths` (full side lengths) and `normalizedAxes` (9 numbers, a 3x3 whose ROWS are the box axes: corners
  are `normalizedAxes.reshape(3, 3).T @ local + centroid`); the world is gravity aligned with Z up (the official
  evaluation takes z as the vertical);
- `<video_id>_frames/lowres_wide/<video_id>_<t>.png` (RGB), `lowres_depth/<video_id>_<t>.png` (uint16 mm),
  `lowres_wide_intrinsics/<video_id>_<t>.pincam` (`w h fx fy cx cy`), and `lowres_wide.traj` with lines
  `t rx ry rz tx ty tz`: world-to-camera rotation (axis-angle, radians) and translation; the camera looks along +z
  with y down (the official loader back-projects pixels with a plain pinhole), i.e. OpenCV; `.pincam` pixel
  centres are on whole numbers;
- `metadata.csv` (`video_id`, `sky_direction` = Up | Down | Left | Right, in the dataset root or a folder above
  the video) says where the sky is in the sensor image; frames are turned upright as the dataset's own loader
  does (Left: a quarter turn clockwise, Right: counter-clockwise, Down: a half turn), with K and the camera
  turned alike. A video without a row takes the direction its poses show (the dataset's `rectify_im.py` rule).

Matterport3D (`<house>/`, from the release's data organisation notes):
- `house_segmentations/<house>.house`: `C category_index label_id label_name mpcat40_id mpcat40_name 0 0 0 0 0`
  and `O object_index region_index category_index px py pz a0x a0y a0z a1x a1y a1z r0 r1 r2 0 ...` lines: an OBB
  by centre, two axis directions and RADII (half side lengths); the third axis is a0 x a1; Z is up;
- `undistorted_camera_parameters/<house>.conf`: `intrinsics_matrix fx 0 cx 0 fy cy 0 0 1` then
  `scan <depth file> <color file> <16 numbers>` (camera-to-world, row-major) for an OpenGL-style camera (looking
  down -Z, Y up) whose image origin is the BOTTOM-left: for top-left pixel rows cy becomes height - cy
  (`data_engine.conventions` says why not height - 1 - cy);
- `undistorted_color_images/`, `undistorted_depth_images/` (uint16, 0.25 mm per unit, 0 = no reading).

ScanNet++ (`data/<scene_id>/`, the official toolkit's layout):
- `scans/segments_anno.json`: `segGroups[i]` with `objectId`, `label` and `obb` = {`centroid`, `axesLengths`
  (full side lengths), `normalizedAxes` (a 3x3 whose ROWS are the box axes, as the toolkit's
  `reshape(3, 3).T` rotation shows)}, in the aligned (Z-up) mesh frame;
- `iphone/colmap/cameras.txt` (`CAMERA_ID MODEL WIDTH HEIGHT PARAMS`, PINHOLE/OPENCV: fx fy cx cy ...;
  the iPhone images are undistorted) and `iphone/colmap/images.txt` (`IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`
  then a line of 2D points): world-to-camera, OpenCV camera, in the aligned frame;
- `iphone/rgb/<name>` (1920x1440) and `iphone/depth/<stem>.png` (uint16 mm, 256x192): colour and K are scaled
  to the depth resolution.

Hypersim (`<root>/ai_VVV_NNN/`, the ml-hypersim README's layout; every .hdf5 holds one array named `dataset`):
- positions are in asset coordinates (Z up, gravity aligned) and lengths in asset units; `_detail/metadata_scene.csv`
  (`parameter_name,parameter_value`) gives `meters_per_asset_unit`;
- `_detail/metadata_cameras.csv` lists the trajectories (`camera_name` column); `_detail/cam_XX/`
  `camera_keyframe_positions.hdf5` (N x 3) and `camera_keyframe_orientations.hdf5` (N x 3 x 3, camera-to-world
  rotations of a camera with x right, y UP and z pointing AWAY from where it looks, i.e. an OpenGL camera);
  keyframe i is image `frame.{i:04d}`;
- intrinsics differ per scene (tilt-shift lenses): `metadata_camera_parameters.csv` from the ml-hypersim repository
  (contrib/mikeroberts3000), placed in the dataset root, holds a row per scene whose `M_proj_00..M_proj_33` is an
  OpenGL projection matrix; it becomes K (and, for tilted image planes, a rotation of the camera) through
  `camera_from_gl_projection`;
- `images/scene_cam_XX_final_hdf5/frame.IIII.color.hdf5` (linear HDR RGB, tone-mapped here),
  `images/scene_cam_XX_geometry_hdf5/frame.IIII.depth_meters.hdf5` (metres along each pixel's RAY from the optical
  centre, not planar depth; NaN where no surface) and `frame.IIII.semantic_instance.hdf5` (instance id, -1 = none);
- boxes: `_detail/mesh/metadata_semantic_instance_bounding_box_object_aligned_2d_{positions,orientations,extents}.hdf5`
  indexed by semantic instance id: centre (asset coordinates), object-to-world rotation (columns = box axes, z up)
  and FULL side lengths (asset units); ids without an instance hold inf; the NYU40 label of an instance comes from
  `_detail/mesh/mesh_objects_si.hdf5` (label per low-level mesh object) and `mesh_objects_sii.hdf5` (instance per
  mesh object).

Every adapter applies one rule to bad input (`ScanConfig`): a frame without a usable pose (non-finite, not
rigid), with an unreadable file or with intrinsics that fit no scaling of its depth map is dropped; an object of
a structural class (`structural_classes`: floor, wall, ...), with a non-finite or degenerate box (a side under
`min_box_extent_m`), without a box (Hypersim) or with too few vertices for one (ScanNet) is dropped. Each drop is
counted by reason in the scene's metadata (`dropped`: `frames`, `objects`), which every QA row of the scene
carries as `scene_dropped`. The scene is kept while at least one frame and one object remain, otherwise it is
rejected with the counts in its one-line error. A malformed file (missing fields, wrong shapes) still rejects the
scene, naming the file and the field.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from data_engine.conventions import (ORTHONORMAL_TOLERANCE, OrientedBox, box_from_axis_aligned_min_max,
                                     box_from_half_sizes, camera_from_gl_projection, intrinsics_from_bottom_left_origin,
                                     intrinsics_from_integer_pixel_centres, planar_depth_from_ray_distance,
                                     pose_from_opengl, pose_from_world_to_camera, rotate_camera_clockwise,
                                     rotation_error, rotation_from_quaternion_wxyz, scale_intrinsics)
from openspatial.scene import DEPTH_PNG_SCALE, Frame, Scene, SceneFormatError, SceneObject, validate_scene

# Room structure: never an object to ask about (ScanNet raw labels, NYU40, mpcat40 and ScanNet++ names).
STRUCTURAL_CLASSES = ("wall", "floor", "ceiling", "otherstructure", "column", "beam")


class ScanConfig(BaseModel):
    """How every adapter reads a scan: frames per scene and the one rule for bad input."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_frames: int = Field(default=8, ge=1)  # frames sampled evenly per scene, among those with a usable pose
    structural_classes: tuple[str, ...] = STRUCTURAL_CLASSES  # labels skipped as objects (case-insensitive)
    min_box_extent_m: float = Field(default=0.005, gt=0)  # a box with a shorter side is degenerate

    def is_structural(self, label: str) -> bool:
        return label.strip().lower() in {name.lower() for name in self.structural_classes}


class DatasetAdapter(Protocol):
    name: str

    def list_scenes(self, root: Path) -> list[str]: ...

    def load_scene(self, root: Path, item: str, config: ScanConfig) -> Scene: ...


class Drops:
    """Frames and objects an adapter left out, counted by reason."""

    def __init__(self) -> None:
        self.frames: Counter[str] = Counter()
        self.objects: Counter[str] = Counter()
        self.first_error: str | None = None  # the first unreadable file, for the scene's error message

    def frame(self, reason: str, error: SceneFormatError | None = None) -> None:
        self.frames[reason] += 1
        if error is not None and self.first_error is None:
            self.first_error = str(error)

    def object(self, reason: str) -> None:
        self.objects[reason] += 1

    def metadata(self) -> dict:
        """The scene metadata entry (`dropped`) that QA rows carry along (`qa/rows.py`)."""
        return {"dropped": {"frames": dict(sorted(self.frames.items())),
                            "objects": dict(sorted(self.objects.items()))}}


def box_problem(box: OrientedBox, min_extent: float) -> str | None:
    """Why a box cannot stand for an object, or None when it can."""
    if not all(np.all(np.isfinite(part)) for part in (box.center, box.extents, box.rotation)):
        return "non_finite_box"
    if np.min(box.extents) < min_extent:
        return "degenerate_box"
    if rotation_error(box.rotation) > ORTHONORMAL_TOLERANCE:
        return "non_orthonormal_box"
    return None


def pose_problem(pose: np.ndarray) -> str | None:
    """Why a camera-to-world pose cannot be used, or None when it can."""
    if not np.all(np.isfinite(pose)):
        return "non_finite_pose"  # ScanNet writes tracking failures as -inf
    if rotation_error(pose[:3, :3]) > ORTHONORMAL_TOLERANCE or not np.allclose(pose[3], [0, 0, 0, 1]):
        return "non_rigid_pose"
    return None


def keep_object(drops: Drops, config: ScanConfig, label: str, box: OrientedBox) -> bool:
    if config.is_structural(label):
        drops.object("structural_class")
        return False
    problem = box_problem(box, config.min_box_extent_m)
    if problem:
        drops.object(problem)
        return False
    return True


def assemble_scene(source: Path, scene_id: str, objects: list[SceneObject], frames: list[Frame], drops: Drops,
                   **fields) -> Scene:
    """The scene with its drop counts, or a one-line error when no frame or no object remains."""
    for name, kept, dropped in (("frames", frames, drops.frames), ("objects", objects, drops.objects)):
        if not kept:
            counts = ", ".join(f"{reason}: {count}" for reason, count in sorted(dropped.items())) or "none found"
            first = f"; first: {drops.first_error}" if name == "frames" and drops.first_error else ""
            raise SceneFormatError(str(source), name, f"no usable {name[:-1]} ({counts}){first}")
    scene = Scene(scene_id, objects, frames, **fields)
    scene.metadata.update(drops.metadata())
    return validate_scene(scene, str(source))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except OSError:
        raise SceneFormatError(str(path), "<file>", "missing or unreadable") from None
    except json.JSONDecodeError as exc:
        raise SceneFormatError(str(path), "<file>", f"invalid JSON at line {exc.lineno}") from None


def _read_image(path: Path, flags: int) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        raise SceneFormatError(str(path), "<file>", "missing or not an image")
    return image


def _read_matrix(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    try:
        values = np.loadtxt(path, dtype=float)
    except (OSError, ValueError) as exc:
        raise SceneFormatError(str(path), "<file>", f"cannot read a {shape} matrix ({exc})") from None
    if values.shape != shape:
        raise SceneFormatError(str(path), "<file>", f"expected a {shape} matrix, got {values.shape}")
    return values


def _evenly_spaced(items: list, count: int) -> list:
    if len(items) <= count:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


class ScanNetAdapter:
    name = "scannet"

    def list_scenes(self, root: Path) -> list[str]:
        return sorted(p.parent.relative_to(root).as_posix() for p in root.rglob("*.aggregation.json")
                      if not p.name.endswith("_vh_clean.aggregation.json"))

    @staticmethod
    def _header(meta_path: Path) -> dict[str, str]:
        """`key = value` lines of `<scene>.txt` (axisAlignment, depthWidth, depthHeight, ...)."""
        try:
            lines = meta_path.read_text().splitlines()
        except OSError:
            raise SceneFormatError(str(meta_path), "<file>", "missing or unreadable") from None
        return {key.strip(): value.strip() for key, _, value in (line.partition("=") for line in lines) if value}

    @staticmethod
    def _axis_alignment(header: dict[str, str], meta_path: Path) -> np.ndarray:
        if "axisAlignment" not in header:
            return np.eye(4)  # test scans ship without an alignment: their scan frame is used as is
        numbers = [float(v) for v in header["axisAlignment"].split()]
        if len(numbers) != 16:
            raise SceneFormatError(str(meta_path), "axisAlignment", f"expected 16 numbers, got {len(numbers)}")
        return np.array(numbers).reshape(4, 4)

    @staticmethod
    def _calibrated_size(header: dict[str, str], meta_path: Path) -> tuple[int, int] | None:
        """The depth size intrinsic_depth.txt was calibrated for, when the header states it."""
        if "depthWidth" not in header or "depthHeight" not in header:
            return None
        try:
            return int(header["depthWidth"]), int(header["depthHeight"])
        except ValueError:
            raise SceneFormatError(str(meta_path), "depthWidth",
                                   "depthWidth and depthHeight must be integers") from None

    def _objects(self, directory: Path, scene_name: str, alignment: np.ndarray, config: ScanConfig,
                 drops: Drops) -> list[SceneObject]:
        import open3d as o3d

        ply_path = directory / f"{scene_name}_vh_clean_2.ply"
        if not ply_path.is_file():
            raise SceneFormatError(str(ply_path), "<file>", "missing")
        vertices = np.asarray(o3d.io.read_point_cloud(str(ply_path)).points)
        vertices = vertices @ alignment[:3, :3].T + alignment[:3, 3]
        segs_path = directory / f"{scene_name}_vh_clean_2.0.010000.segs.json"
        seg_indices = np.asarray(_read_json(segs_path).get("segIndices", []))
        if len(seg_indices) != len(vertices):
            raise SceneFormatError(str(segs_path), "segIndices",
                                   f"{len(seg_indices)} entries for {len(vertices)} vertices")
        aggregation_path = directory / f"{scene_name}.aggregation.json"
        objects = []
        for position, group in enumerate(_read_json(aggregation_path).get("segGroups", [])):
            if not {"objectId", "label", "segments"} <= group.keys():
                raise SceneFormatError(str(aggregation_path), f"segGroups[{position}]",
                                       "needs objectId, label and segments")
            points = vertices[np.isin(seg_indices, group["segments"])]
            if len(points) < 4:
                drops.object("too_few_vertices")
                continue
            box = box_from_axis_aligned_min_max(points.min(axis=0), points.max(axis=0))
            if keep_object(drops, config, group["label"], box):
                objects.append(SceneObject(str(group["objectId"]), int(group["objectId"]) + 1, group["label"], box))
        return objects

    @staticmethod
    def _frame(directory: Path, frame_id: str, pose: np.ndarray, intrinsics: np.ndarray,
               calibrated: tuple[int, int] | None, drops: Drops) -> Frame | None:
        try:
            depth = _read_image(directory / "depth" / f"{frame_id}.png", cv2.IMREAD_UNCHANGED).astype(np.float32)
            colour = _read_image(directory / "color" / f"{frame_id}.jpg", cv2.IMREAD_COLOR)
        except SceneFormatError as error:
            drops.frame("unreadable_file", error)
            return None
        height, width = depth.shape
        if calibrated and calibrated != (width, height):
            scale_x, scale_y = width / calibrated[0], height / calibrated[1]
            if abs(scale_x - scale_y) > 1e-3 * max(scale_x, scale_y):
                drops.frame("depth_size_mismatch")  # another aspect: no scaling of K fits this depth map
                return None
            intrinsics = scale_intrinsics(intrinsics, scale_x, scale_y)
        colour = cv2.resize(colour, (width, height), interpolation=cv2.INTER_AREA)
        return Frame(frame_id, width, height, intrinsics, pose, cv2.cvtColor(colour, cv2.COLOR_BGR2RGB),
                     depth / DEPTH_PNG_SCALE)

    def load_scene(self, root: Path, item: str, config: ScanConfig) -> Scene:
        directory = root / item
        scene_name = directory.name
        meta_path = directory / f"{scene_name}.txt"
        header = self._header(meta_path)
        alignment = self._axis_alignment(header, meta_path)
        calibrated = self._calibrated_size(header, meta_path)
        intrinsics = intrinsics_from_integer_pixel_centres(
            _read_matrix(directory / "intrinsic" / "intrinsic_depth.txt", (4, 4))[:3, :3])
        drops = Drops()
        posed = []
        for pose_path in sorted((directory / "pose").glob("*.txt"), key=lambda p: int(p.stem)):
            pose = _read_matrix(pose_path, (4, 4))
            problem = pose_problem(pose)
            if problem:
                drops.frame(problem)
                continue
            posed.append((pose_path.stem, alignment @ pose))
        frames = [frame for frame_id, pose in _evenly_spaced(posed, config.max_frames)
                  if (frame := self._frame(directory, frame_id, pose, intrinsics, calibrated, drops)) is not None]
        objects = self._objects(directory, scene_name, alignment, config, drops)
        return assemble_scene(directory, scene_name, objects, frames, drops, source_dataset="scannet",
                              license="ScanNet Terms of Use")


# Quarter turns clockwise that bring an ARKitScenes frame upright, by its metadata.csv sky_direction.
ARKIT_UPRIGHT_TURNS = {"Up": 0, "Left": 1, "Down": 2, "Right": 3}


def sky_direction_from_pose(pose: np.ndarray) -> str:
    """Where world up (+Z) points in a camera's image: the sky direction a sensor frame was taken with."""
    up_in_camera = pose[2, :3]  # world Z in camera coordinates (rows of a camera-to-world rotation)
    image_up = {"Up": (0.0, -1.0, 0.0), "Left": (-1.0, 0.0, 0.0), "Down": (0.0, 1.0, 0.0), "Right": (1.0, 0.0, 0.0)}
    return max(image_up, key=lambda direction: float(np.dot(image_up[direction], up_in_camera)))


def turn_frame_upright(frame: Frame, quarter_turns: int) -> Frame:
    """The frame turned `quarter_turns` times clockwise: images, K and the camera turn together."""
    for _ in range(quarter_turns):
        intrinsics, pose = rotate_camera_clockwise(frame.intrinsics, frame.pose, frame.height)
        turned = [None if a is None else np.ascontiguousarray(np.rot90(a, -1))
                  for a in (frame.image, frame.depth, frame.instances)]
        frame = Frame(frame.frame_id, frame.height, frame.width, intrinsics, pose, *turned)
    return frame


class ARKitScenesAdapter:
    name = "arkitscenes"

    def list_scenes(self, root: Path) -> list[str]:
        return sorted(p.parent.relative_to(root).as_posix() for p in root.rglob("*_3dod_annotation.json"))

    def _objects(self, annotation_path: Path, config: ScanConfig, drops: Drops) -> list[SceneObject]:
        objects = []
        for position, entry in enumerate(_read_json(annotation_path).get("data", [])):
            try:
                obb = entry["segments"]["obbAligned"]
                center = np.asarray(obb["centroid"], dtype=float).reshape(3)
                extents = np.asarray(obb["axesLengths"], dtype=float).reshape(3)
                axes_as_rows = np.asarray(obb["normalizedAxes"], dtype=float).reshape(3, 3)
                label = entry["label"]
            except (KeyError, TypeError, ValueError) as exc:
                raise SceneFormatError(str(annotation_path), f"data[{position}].segments.obbAligned",
                                       f"needs centroid, axesLengths, normalizedAxes and a label ({exc})") from None
            box = OrientedBox(center, extents, axes_as_rows.T)
            if keep_object(drops, config, label, box):
                objects.append(SceneObject(str(entry.get("uid", position)), position + 1, label, box))
        return objects

    def _poses(self, traj_path: Path) -> dict[float, np.ndarray]:
        try:
            lines = traj_path.read_text().splitlines()
        except OSError:
            raise SceneFormatError(str(traj_path), "<file>", "missing or unreadable") from None
        poses = {}
        for number, line in enumerate(lines, 1):
            values = line.split()
            if len(values) != 7:
                raise SceneFormatError(str(traj_path), f"line {number}", f"expected 7 numbers, got {len(values)}")
            timestamp, *numbers = (float(v) for v in values)
            world_to_camera = np.full((4, 4), np.nan)
            if np.all(np.isfinite(numbers)):
                world_to_camera = np.eye(4)
                world_to_camera[:3, :3] = cv2.Rodrigues(np.array(numbers[:3]))[0]
                world_to_camera[:3, 3] = numbers[3:]
            poses[round(timestamp, 3)] = pose_from_world_to_camera(world_to_camera)
        return poses

    @staticmethod
    def _sky_direction(root: Path, directory: Path, video_id: str) -> str | None:
        """The video's sky_direction from the nearest metadata.csv at or above its split folder."""
        for folder in directory.parents:
            path = folder / "metadata.csv"
            if path.is_file():
                row = next((r for r in _read_csv_rows(path) if r.get("video_id") == video_id), None)
                direction = row.get("sky_direction") if row else None
                if direction is not None and direction not in ARKIT_UPRIGHT_TURNS:
                    raise SceneFormatError(str(path), f"sky_direction ({video_id})",
                                           f"expected one of {sorted(ARKIT_UPRIGHT_TURNS)}, got {direction!r}")
                return direction
            if folder == root:
                break
        return None

    def load_scene(self, root: Path, item: str, config: ScanConfig) -> Scene:
        directory = root / item
        video_id = directory.name
        frames_dir = directory / f"{video_id}_frames"
        poses = self._poses(frames_dir / "lowres_wide.traj")
        drops = Drops()
        posed = []
        for depth_path in sorted((frames_dir / "lowres_depth").glob(f"{video_id}_*.png")):
            stamp = depth_path.stem.split("_", 1)[1]
            nearest = min(poses, key=lambda t: abs(t - round(float(stamp), 3)), default=None)
            if nearest is None or abs(nearest - round(float(stamp), 3)) > 0.005:
                drops.frame("no_pose")
                continue
            problem = pose_problem(poses[nearest])
            if problem:
                drops.frame(problem)
                continue
            posed.append((depth_path, stamp, poses[nearest]))
        sky = self._sky_direction(root, directory, video_id)
        if sky is None and posed:  # no metadata row: the direction most frames show
            sky = Counter(sky_direction_from_pose(pose) for _, _, pose in posed).most_common(1)[0][0]
        frames = []
        for depth_path, stamp, pose in _evenly_spaced(posed, config.max_frames):
            try:
                width, height, fx, fy, cx, cy = _read_matrix(
                    frames_dir / "lowres_wide_intrinsics" / f"{video_id}_{stamp}.pincam", (6,))
                depth = _read_image(depth_path, cv2.IMREAD_UNCHANGED).astype(np.float32) / DEPTH_PNG_SCALE
                colour = _read_image(frames_dir / "lowres_wide" / depth_path.name, cv2.IMREAD_COLOR)
            except SceneFormatError as error:
                drops.frame("unreadable_file", error)
                continue
            intrinsics = intrinsics_from_integer_pixel_centres(np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]]))
            frame = Frame(stamp, int(width), int(height), intrinsics, pose, cv2.cvtColor(colour, cv2.COLOR_BGR2RGB),
                          depth)
            frames.append(turn_frame_upright(frame, ARKIT_UPRIGHT_TURNS[sky]))
        objects = self._objects(directory / f"{video_id}_3dod_annotation.json", config, drops)
        return assemble_scene(directory, video_id, objects, frames, drops, source_dataset="arkitscenes",
                              license="ARKitScenes license (Apple, non-commercial research)",
                              metadata={"sky_direction": sky})


MATTERPORT_DEPTH_UNITS_PER_METRE = 4000.0  # 0.25 mm per unit


class Matterport3DAdapter:
    name = "matterport3d"

    def list_scenes(self, root: Path) -> list[str]:
        return sorted(p.parents[1].relative_to(root).as_posix() for p in root.rglob("house_segmentations/*.house"))

    def _objects(self, house_path: Path, config: ScanConfig, drops: Drops) -> list[SceneObject]:
        try:
            lines = [line.split() for line in house_path.read_text().splitlines()]
        except OSError:
            raise SceneFormatError(str(house_path), "<file>", "missing or unreadable") from None
        # Category names are read from the right: the raw label may contain spaces, the trailing fields do not.
        categories = {int(tokens[1]): tokens[-6] for tokens in lines if tokens and tokens[0] == "C"}
        objects = []
        for number, tokens in enumerate(lines, 1):
            if not tokens or tokens[0] != "O":
                continue
            try:
                object_index, category_index = int(tokens[1]), int(tokens[3])
                center, axis_0, axis_1, radii = (np.array([float(v) for v in tokens[i:i + 3]]) for i in (4, 7, 10, 13))
            except (IndexError, ValueError):
                raise SceneFormatError(str(house_path), f"line {number} (O)", "expected O index region category px "
                                       "py pz a0x a0y a0z a1x a1y a1z r0 r1 r2") from None
            if category_index not in categories:
                drops.object("unlabelled")  # category -1: an object the annotators left without a label
                continue
            box = box_from_half_sizes(center, radii, np.stack([axis_0, axis_1, np.cross(axis_0, axis_1)], axis=1))
            if keep_object(drops, config, categories[category_index], box):
                objects.append(SceneObject(str(object_index), object_index + 1, categories[category_index], box))
        return objects

    def _scans(self, conf_path: Path) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
        try:
            lines = conf_path.read_text().splitlines()
        except OSError:
            raise SceneFormatError(str(conf_path), "<file>", "missing or unreadable") from None
        intrinsics, scans = None, []
        for number, line in enumerate(lines, 1):
            tokens = line.split()
            if tokens[:1] == ["intrinsics_matrix"]:
                intrinsics = np.array([float(v) for v in tokens[1:10]]).reshape(3, 3)
            elif tokens[:1] == ["scan"]:
                if intrinsics is None or len(tokens) != 19:
                    raise SceneFormatError(str(conf_path), f"line {number}",
                                           "scan needs an earlier intrinsics_matrix and 16 pose numbers")
                pose_gl = np.array([float(v) for v in tokens[3:19]]).reshape(4, 4)
                scans.append((tokens[1], tokens[2], intrinsics.copy(), pose_from_opengl(pose_gl)))
        return scans

    def load_scene(self, root: Path, item: str, config: ScanConfig) -> Scene:
        directory = root / item
        house = directory.name
        drops = Drops()
        posed = []
        for scan in self._scans(directory / "undistorted_camera_parameters" / f"{house}.conf"):
            problem = pose_problem(scan[3])
            if problem:
                drops.frame(problem)
            else:
                posed.append(scan)
        frames = []
        for depth_name, color_name, intrinsics, pose in _evenly_spaced(posed, config.max_frames):
            try:
                raw_depth = _read_image(directory / "undistorted_depth_images" / depth_name, cv2.IMREAD_UNCHANGED)
                colour = _read_image(directory / "undistorted_color_images" / color_name, cv2.IMREAD_COLOR)
            except SceneFormatError as error:
                drops.frame("unreadable_file", error)
                continue
            height, width = raw_depth.shape
            frames.append(Frame(Path(color_name).stem, width, height,
                                intrinsics_from_bottom_left_origin(intrinsics, height), pose,
                                cv2.cvtColor(colour, cv2.COLOR_BGR2RGB),
                                raw_depth.astype(np.float32) / MATTERPORT_DEPTH_UNITS_PER_METRE))
        objects = self._objects(directory / "house_segmentations" / f"{house}.house", config, drops)
        return assemble_scene(directory, house, objects, frames, drops, source_dataset="matterport3d",
                              license="Matterport3D Terms of Use")


class ScanNetPPAdapter:
    name = "scannetpp"

    def list_scenes(self, root: Path) -> list[str]:
        return sorted(p.parents[1].relative_to(root).as_posix() for p in root.rglob("scans/segments_anno.json"))

    def _objects(self, anno_path: Path, config: ScanConfig, drops: Drops) -> list[SceneObject]:
        objects = []
        for position, group in enumerate(_read_json(anno_path).get("segGroups", [])):
            try:
                obb = group["obb"]
                axes_as_rows = np.asarray(obb["normalizedAxes"], dtype=float).reshape(3, 3)
                box = OrientedBox(np.asarray(obb["centroid"], dtype=float).reshape(3),
                                  np.asarray(obb["axesLengths"], dtype=float).reshape(3), axes_as_rows.T)
                object_id, label = int(group["objectId"]), group["label"]
            except (KeyError, TypeError, ValueError) as exc:
                raise SceneFormatError(str(anno_path), f"segGroups[{position}].obb", "needs objectId, label and obb "
                                       f"centroid/axesLengths/normalizedAxes ({exc})") from None
            if keep_object(drops, config, label, box):
                objects.append(SceneObject(str(object_id), object_id + 1, label, box))
        return objects

    def _colmap(self, colmap_dir: Path) -> list[tuple[str, np.ndarray, np.ndarray, int, int]]:
        """(image name, K, camera-to-world pose, width, height) per registered image."""
        cameras = {}
        for number, line in enumerate(self._data_lines(colmap_dir / "cameras.txt"), 1):
            camera_id, model, width, height, *params = line.split()
            if model == "SIMPLE_PINHOLE":
                fx = fy = float(params[0])
                cx, cy = float(params[1]), float(params[2])
            elif model in ("PINHOLE", "OPENCV"):
                fx, fy, cx, cy = (float(v) for v in params[:4])
            else:
                raise SceneFormatError(str(colmap_dir / "cameras.txt"), f"camera {camera_id}",
                                       f"unsupported model {model}")
            cameras[camera_id] = (np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]]), int(width), int(height))
        images = []
        # images.txt alternates an image line and a line of its 2D points.
        for line in self._data_lines(colmap_dir / "images.txt", keep_empty=True)[::2]:
            _, qw, qx, qy, qz, tx, ty, tz, camera_id, name = line.split()[:10]
            world_to_camera = np.eye(4)
            world_to_camera[:3, :3] = rotation_from_quaternion_wxyz(float(qw), float(qx), float(qy), float(qz))
            world_to_camera[:3, 3] = [float(tx), float(ty), float(tz)]
            if camera_id not in cameras:
                raise SceneFormatError(str(colmap_dir / "images.txt"), f"image {name}", f"unknown camera {camera_id}")
            intrinsics, width, height = cameras[camera_id]
            images.append((name, intrinsics, pose_from_world_to_camera(world_to_camera), width, height))
        return sorted(images, key=lambda image: image[0])

    @staticmethod
    def _data_lines(path: Path, keep_empty: bool = False) -> list[str]:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            raise SceneFormatError(str(path), "<file>", "missing or unreadable") from None
        return [line for line in lines if not line.startswith("#") and (keep_empty or line.strip())]

    def load_scene(self, root: Path, item: str, config: ScanConfig) -> Scene:
        directory = root / item
        drops = Drops()
        posed = []
        for image in self._colmap(directory / "iphone" / "colmap"):
            problem = pose_problem(image[2])
            if problem:
                drops.frame(problem)
            else:
                posed.append(image)
        frames = []
        for name, intrinsics, pose, width, height in _evenly_spaced(posed, config.max_frames):
            try:
                depth = _read_image(directory / "iphone" / "depth" / f"{Path(name).stem}.png", cv2.IMREAD_UNCHANGED)
                colour = _read_image(directory / "iphone" / "rgb" / name, cv2.IMREAD_COLOR)
            except SceneFormatError as error:
                drops.frame("unreadable_file", error)
                continue
            depth_height, depth_width = depth.shape
            colour = cv2.resize(colour, (depth_width, depth_height), interpolation=cv2.INTER_AREA)
            scaled = scale_intrinsics(intrinsics, depth_width / width, depth_height / height)
            frames.append(Frame(Path(name).stem, depth_width, depth_height, scaled, pose,
                                cv2.cvtColor(colour, cv2.COLOR_BGR2RGB), depth.astype(np.float32) / DEPTH_PNG_SCALE))
        objects = self._objects(directory / "scans" / "segments_anno.json", config, drops)
        return assemble_scene(directory, directory.name, objects, frames, drops, source_dataset="scannetpp",
                              license="ScanNet++ Terms of Use")


def _read_hdf5(path: Path, shape: tuple[int | None, ...]) -> np.ndarray:
    """The array named `dataset` of a Hypersim HDF5 file; None in `shape` matches any length."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            array = np.asarray(handle["dataset"][()])
    except OSError:
        raise SceneFormatError(str(path), "<file>", "missing or not an HDF5 file") from None
    except KeyError:
        raise SceneFormatError(str(path), "dataset", "missing") from None
    if array.ndim != len(shape) or any(want not in (None, got) for want, got in zip(shape, array.shape)):
        raise SceneFormatError(str(path), "dataset", f"expected shape {shape}, got {array.shape}")
    return array


def _read_csv_rows(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="") as stream:
            return list(csv.DictReader(stream))
    except OSError:
        raise SceneFormatError(str(path), "<file>", "missing or unreadable") from None


NYU40_LABELS = ("wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture",
                "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat",
                "clothes", "ceiling", "books", "refrigerator", "television", "paper", "towel", "shower curtain", "box",
                "whiteboard", "person", "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure",
                "otherfurniture", "otherprop")  # label id i is NYU40_LABELS[i - 1]
# NYU40's catch-all classes cannot be referred to by their name in a question (structure is `structural_classes`).
NYU40_CATCH_ALL_LABELS = frozenset({"otherfurniture", "otherprop"})
HYPERSIM_CAMERA_PARAMETERS = "metadata_camera_parameters.csv"
HYPERSIM_BOX_FILE = "metadata_semantic_instance_bounding_box_object_aligned_2d_{}.hdf5"


def tonemap_hdr(linear_rgb: np.ndarray) -> np.ndarray:
    """Linear HDR RGB -> uint8 sRGB-like image: scale so the 90th percentile of luminance lands at 0.8 after a
    1/2.2 gamma (Hypersim's own preview tone mapping follows the same idea), then clip."""
    linear = np.nan_to_num(np.asarray(linear_rgb, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0).clip(min=0)
    luminance = linear @ np.array([0.3, 0.59, 0.11])
    reference = np.percentile(luminance, 90)
    scale = 0.8 ** 2.2 / reference if reference > 1e-8 else 1.0
    return np.round(255 * np.clip(scale * linear, 0, 1) ** (1 / 2.2)).astype(np.uint8)


class HypersimAdapter:
    name = "hypersim"

    def list_scenes(self, root: Path) -> list[str]:
        return sorted(p.parents[1].relative_to(root).as_posix() for p in root.rglob("_detail/metadata_scene.csv"))

    @staticmethod
    def _metres_per_asset_unit(path: Path) -> float:
        values = {row.get("parameter_name"): row.get("parameter_value") for row in _read_csv_rows(path)}
        try:
            scale = float(values["meters_per_asset_unit"])
        except (KeyError, TypeError, ValueError):
            raise SceneFormatError(str(path), "meters_per_asset_unit", "missing or not a number") from None
        if not np.isfinite(scale) or scale <= 0:
            raise SceneFormatError(str(path), "meters_per_asset_unit", f"must be > 0, got {scale}")
        return scale

    @staticmethod
    def _camera_model(path: Path, scene_name: str, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """(K, tilt) of the scene's camera at this image size, from its row of metadata_camera_parameters.csv."""
        row = next((r for r in _read_csv_rows(path) if r.get("scene_name") == scene_name), None)
        if row is None:
            raise SceneFormatError(str(path), f"scene_name {scene_name}", "no row for this scene")
        try:
            projection = np.array([[float(row[f"M_proj_{i}{j}"]) for j in range(4)] for i in range(4)])
            return camera_from_gl_projection(projection, width, height)
        except (KeyError, TypeError, ValueError) as exc:
            raise SceneFormatError(str(path), f"{scene_name}.M_proj", f"unusable projection matrix ({exc})") from None

    def _objects(self, mesh_dir: Path, scale: float, config: ScanConfig, drops: Drops) -> list[SceneObject]:
        centres = _read_hdf5(mesh_dir / HYPERSIM_BOX_FILE.format("positions"), (None, 3))
        rotations = _read_hdf5(mesh_dir / HYPERSIM_BOX_FILE.format("orientations"), (len(centres), 3, 3))
        extents = _read_hdf5(mesh_dir / HYPERSIM_BOX_FILE.format("extents"), (len(centres), 3))
        labels_path = mesh_dir / "mesh_objects_si.hdf5"
        labels = _read_hdf5(labels_path, (None,)).astype(int)
        instances = _read_hdf5(mesh_dir / "mesh_objects_sii.hdf5", (len(labels),)).astype(int)
        objects = []
        for instance in np.unique(instances[instances >= 0]):
            if instance >= len(centres) or np.all(np.isinf(centres[instance])):
                drops.object("no_box")  # the release writes inf for ids without a box
                continue
            values, counts = np.unique(labels[instances == instance], return_counts=True)
            label = int(values[np.argmax(counts)])  # the annotation tool labels whole instances: one value
            if not 1 <= label <= len(NYU40_LABELS):
                raise SceneFormatError(str(labels_path), f"dataset (instance {instance})", f"NYU40 label {label}")
            if NYU40_LABELS[label - 1] in NYU40_CATCH_ALL_LABELS:
                drops.object("unreferable_label")
                continue
            box = OrientedBox(centres[instance] * scale, extents[instance] * scale, rotations[instance].astype(float))
            if keep_object(drops, config, NYU40_LABELS[label - 1], box):
                objects.append(SceneObject(str(instance), int(instance) + 1, NYU40_LABELS[label - 1], box))
        return objects

    def _frame(self, directory: Path, root: Path, camera: str, index: int, gl_pose: np.ndarray,
               drops: Drops) -> Frame | None:
        stem = f"frame.{index:04d}"
        geometry = directory / "images" / f"scene_{camera}_geometry_hdf5"
        try:
            distance = _read_hdf5(geometry / f"{stem}.depth_meters.hdf5", (None, None)).astype(np.float64)
            height, width = distance.shape
            colour = _read_hdf5(directory / "images" / f"scene_{camera}_final_hdf5" / f"{stem}.color.hdf5",
                                (height, width, 3))
            instances = _read_hdf5(geometry / f"{stem}.semantic_instance.hdf5", (height, width)).astype(np.int64)
        except SceneFormatError as error:
            drops.frame("unreadable_file", error)
            return None
        intrinsics, tilt = self._camera_model(root / HYPERSIM_CAMERA_PARAMETERS, directory.name, width, height)
        tilt_pose = np.eye(4)
        tilt_pose[:3, :3] = tilt.T  # virtual (tilted) camera -> OpenCV camera
        return Frame(f"{camera}_{index:04d}", width, height, intrinsics, pose_from_opengl(gl_pose) @ tilt_pose,
                     tonemap_hdr(colour), planar_depth_from_ray_distance(distance, intrinsics).astype(np.float32),
                     np.where(instances >= 0, instances + 1, 0).astype(np.int32))

    def load_scene(self, root: Path, item: str, config: ScanConfig) -> Scene:
        directory = root / item
        detail = directory / "_detail"
        scale = self._metres_per_asset_unit(detail / "metadata_scene.csv")
        cameras_path = detail / "metadata_cameras.csv"
        cameras = [row.get("camera_name") for row in _read_csv_rows(cameras_path)]
        if not cameras or None in cameras:
            raise SceneFormatError(str(cameras_path), "camera_name", "needs a camera_name column with at least one row")
        drops = Drops()
        posed = []
        for camera in cameras:
            positions = _read_hdf5(detail / camera / "camera_keyframe_positions.hdf5", (None, 3))
            orientations = _read_hdf5(detail / camera / "camera_keyframe_orientations.hdf5", (len(positions), 3, 3))
            colour_dir = directory / "images" / f"scene_{camera}_final_hdf5"
            for path in sorted(colour_dir.glob("frame.*.color.hdf5")):  # published frames only (some were removed)
                index = int(path.name.split(".")[1])
                if index >= len(positions):
                    raise SceneFormatError(str(path), "<file>", f"no keyframe {index} in {camera}")
                gl_pose = np.eye(4)
                gl_pose[:3, :3], gl_pose[:3, 3] = orientations[index], positions[index] * scale
                problem = pose_problem(gl_pose)
                if problem:
                    drops.frame(problem)
                else:
                    posed.append((camera, index, gl_pose))
        frames = [frame for camera, index, gl_pose in _evenly_spaced(posed, config.max_frames)
                  if (frame := self._frame(directory, root, camera, index, gl_pose, drops)) is not None]
        objects = self._objects(detail / "mesh", scale, config, drops)
        return assemble_scene(directory, directory.name, objects, frames, drops, source_dataset="hypersim",
                              license="CC BY-SA 3.0", metadata={"metres_per_asset_unit": scale})


ADAPTERS: dict[str, DatasetAdapter] = {
    adapter.name: adapter
    for adapter in (ScanNetAdapter(), ARKitScenesAdapter(), Matterport3DAdapter(), ScanNetPPAdapter(),
                    HypersimAdapter())}
