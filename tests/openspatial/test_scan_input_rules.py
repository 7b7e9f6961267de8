"""The rules every scan adapter shares, on fixtures in each dataset's published layout (`test_adapters.py`):
bad frames and objects dropped and counted, structural classes skipped, one-frame scenes, ARKitScenes upright
frames by sky direction, ScanNet depth maps of another size than the calibration, the half-pixel convention."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import h5py
import numpy as np
import open3d as o3d
import pytest

from data_engine.conventions import OrientedBox
from openspatial.adapters import ADAPTERS, ScanConfig
from openspatial.frame_index import IndexConfig, build_object_frame_index
from openspatial.procedural import look_at_pose, render_frames
from openspatial.qa.tasks import TASKS, QAConfig, generate_scene_qa
from openspatial.reader import SpatialScenesConfig, SpatialScenesReader
from openspatial.scene import Frame, SceneFormatError, SceneObject
from tests.openspatial.test_adapters import (HOUSE, HYPERSIM_SCENE, SCENE_PP, VIDEO, _render,
                                             write_arkitscenes_fixture, write_arkitscenes_video, write_hypersim_fixture,
                                             write_matterport_fixture, write_scannet_fixture, write_scannetpp_fixture)

INDEX = IndexConfig(min_visible_pixels=30)
QA = QAConfig(min_visible_pixels=30)
SCENE_ITEMS = {"scannet": "scene0000_00", "arkitscenes": f"Training/{VIDEO}", "matterport3d": HOUSE,
               "scannetpp": SCENE_PP, "hypersim": HYPERSIM_SCENE}


# ---- per-dataset edits in each published layout -------------------------------------------------------------

def _add_scannet_group(root: Path, label: str, low, high, segment: int) -> None:
    """One more segGroup whose vertices fill [low, high] (raw scan frame), added to the ply and segs.json."""
    scene = root / "scene0000_00"
    ply = scene / "scene0000_00_vh_clean_2.ply"
    vertices = np.asarray(o3d.io.read_point_cloud(str(ply)).points)
    added = np.stack(np.meshgrid(*[np.linspace(lo, hi, 3) for lo, hi in zip(low, high)]), axis=-1).reshape(-1, 3)
    o3d.io.write_point_cloud(str(ply), o3d.geometry.PointCloud(o3d.utility.Vector3dVector(
        np.concatenate([vertices, added]))), write_ascii=True)
    segs_path = scene / "scene0000_00_vh_clean_2.0.010000.segs.json"
    segs = json.loads(segs_path.read_text())
    segs["segIndices"] += [segment] * len(added)
    segs_path.write_text(json.dumps(segs))
    aggregation_path = scene / "scene0000_00.aggregation.json"
    aggregation = json.loads(aggregation_path.read_text())
    object_id = len(aggregation["segGroups"])
    aggregation["segGroups"].append({"id": object_id, "objectId": object_id, "segments": [segment], "label": label})
    aggregation_path.write_text(json.dumps(aggregation))


def _nan_line(path: Path, line_index: int, first_number: int, count: int) -> None:
    lines = path.read_text().splitlines()
    tokens = lines[line_index].split()
    tokens[first_number:first_number + count] = ["nan"] * count
    lines[line_index] = " ".join(tokens)
    path.write_text("\n".join(lines) + "\n")


def _write_hdf5(path: Path, array) -> None:
    with h5py.File(path, "w") as handle:
        handle.create_dataset("dataset", data=np.asarray(array))


def _read_hdf5(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as handle:
        return np.asarray(handle["dataset"][()])


def _add_hypersim_instance(root: Path, nyu40_label: int, centre, extents) -> None:
    mesh = root / HYPERSIM_SCENE / "_detail" / "mesh"
    box_file = "metadata_semantic_instance_bounding_box_object_aligned_2d_{}.hdf5"
    instance = len(_read_hdf5(mesh / box_file.format("positions")))
    for kind, row in (("positions", centre), ("extents", extents), ("orientations", np.eye(3))):
        _write_hdf5(mesh / box_file.format(kind), np.concatenate([_read_hdf5(mesh / box_file.format(kind)), [row]]))
    _write_hdf5(mesh / "mesh_objects_si.hdf5", np.append(_read_hdf5(mesh / "mesh_objects_si.hdf5"), nyu40_label))
    _write_hdf5(mesh / "mesh_objects_sii.hdf5", np.append(_read_hdf5(mesh / "mesh_objects_sii.hdf5"), instance))


def break_one_frame_and_add_bad_object(adapter: str, root: Path) -> str:
    """Gives the second frame a NaN pose and adds one unusable object; returns that object's drop reason."""
    if adapter == "scannet":
        np.savetxt(root / "scene0000_00" / "pose" / "1.txt", np.full((4, 4), np.nan))
        _add_scannet_group(root, "box", [1, 1, 0.2], [1, 1, 0.2], 30)  # five identical vertices: no extent
        return "degenerate_box"
    if adapter == "arkitscenes":
        video = root / "Training" / VIDEO
        _nan_line(video / f"{VIDEO}_frames" / "lowres_wide.traj", 1, 1, 3)
        annotation_path = video / f"{VIDEO}_3dod_annotation.json"
        annotation = json.loads(annotation_path.read_text())
        annotation["data"].append({"uid": "flat", "label": "tv_monitor", "segments": {"obbAligned": {
            "centroid": [1, 1, 1], "axesLengths": [0.5, 1.7e-7, 0.4], "normalizedAxes": [1, 0, 0, 0, 1, 0, 0, 0, 1]}}})
        annotation_path.write_text(json.dumps(annotation))
        return "degenerate_box"
    if adapter == "matterport3d":
        conf = root / HOUSE / "undistorted_camera_parameters" / f"{HOUSE}.conf"
        scan_lines = [i for i, line in enumerate(conf.read_text().splitlines()) if line.startswith("scan")]
        _nan_line(conf, scan_lines[1], 3, 16)
        house = root / HOUSE / "house_segmentations" / f"{HOUSE}.house"
        house.write_text(house.read_text() + "O 3 0 7  1 1 1  1 0 0  0 1 0  0.5 1e-9 0.5  0 0 0 0 0 0 0 0\n")
        return "degenerate_box"
    if adapter == "scannetpp":
        images = root / SCENE_PP / "iphone" / "colmap" / "images.txt"
        data_lines = [i for i, line in enumerate(images.read_text().splitlines()) if line and not line.startswith("#")]
        _nan_line(images, data_lines[1], 1, 4)
        anno_path = root / SCENE_PP / "scans" / "segments_anno.json"
        anno = json.loads(anno_path.read_text())
        anno["segGroups"].append({"id": 12, "objectId": 12, "label": "lamp", "segments": [5], "obb": {
            "centroid": [float("nan"), 1, 1], "axesLengths": [0.2, 0.2, 0.5],
            "normalizedAxes": [1, 0, 0, 0, 1, 0, 0, 0, 1]}})
        anno_path.write_text(json.dumps(anno))
        return "non_finite_box"
    if adapter == "hypersim":
        orientations_path = root / HYPERSIM_SCENE / "_detail" / "cam_00" / "camera_keyframe_orientations.hdf5"
        orientations = _read_hdf5(orientations_path)
        orientations[1] = np.nan
        _write_hdf5(orientations_path, orientations)
        _add_hypersim_instance(root, 35, [40, 40, 40], [10, 1e-6, 10])  # a lamp 25 nm thick
        return "degenerate_box"
    raise AssertionError(adapter)


def add_structural_object(adapter: str, root: Path) -> None:
    """One object of a structural class in each dataset's own vocabulary."""
    if adapter == "scannet":
        _add_scannet_group(root, "floor", [-3, -2, -0.01], [4, 4, 0.0], 40)
    elif adapter == "arkitscenes":  # its 17 furniture classes hold no structure: a wall stands in for one
        annotation_path = root / "Training" / VIDEO / f"{VIDEO}_3dod_annotation.json"
        annotation = json.loads(annotation_path.read_text())
        annotation["data"].append({"uid": "w", "label": "Wall", "segments": {"obbAligned": {
            "centroid": [3, 7, 1.35], "axesLengths": [6, 0.1, 2.7], "normalizedAxes": [1, 0, 0, 0, 1, 0, 0, 0, 1]}}})
        annotation_path.write_text(json.dumps(annotation))
    elif adapter == "matterport3d":
        house = root / HOUSE / "house_segmentations" / f"{HOUSE}.house"
        house.write_text(house.read_text() + "C 9 17 ceiling 22 ceiling 0 0 0 0 0\n"
                         "O 4 0 9  3 3.5 2.7  1 0 0  0 1 0  3 3.5 0.05  0 0 0 0 0 0 0 0\n")
    elif adapter == "scannetpp":
        anno_path = root / SCENE_PP / "scans" / "segments_anno.json"
        anno = json.loads(anno_path.read_text())
        anno["segGroups"].append({"id": 20, "objectId": 20, "label": "wall", "segments": [7], "obb": {
            "centroid": [0, 3.5, 1.35], "axesLengths": [0.1, 7, 2.7], "normalizedAxes": [1, 0, 0, 0, 1, 0, 0, 0, 1]}})
        anno_path.write_text(json.dumps(anno))
    # hypersim: the fixture already holds a wall instance (NYU40 1)


WRITERS = {"scannet": write_scannet_fixture, "arkitscenes": write_arkitscenes_fixture,
           "matterport3d": write_matterport_fixture, "scannetpp": write_scannetpp_fixture,
           "hypersim": write_hypersim_fixture}


# ---- one rule for bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("adapter", sorted(WRITERS))
def test_bad_frame_and_bad_object_are_dropped_and_counted_the_scene_kept(tmp_path, adapter):
    root = WRITERS[adapter](tmp_path)
    reason = break_one_frame_and_add_bad_object(adapter, root)
    scene = ADAPTERS[adapter].load_scene(root, SCENE_ITEMS[adapter], ScanConfig())
    assert len(scene.frames) == 1 and len(scene.objects) == 2  # the good frame and both good objects remain
    assert scene.metadata["dropped"]["frames"]["non_finite_pose"] == 1 + (adapter == "scannet")  # ScanNet's -inf pose
    assert scene.metadata["dropped"]["objects"][reason] == 1
    assert generate_scene_qa(build_object_frame_index(scene, INDEX), QA, 0)


@pytest.mark.parametrize("adapter", sorted(WRITERS))
def test_scene_without_any_usable_object_is_rejected_with_the_counts(tmp_path, adapter):
    root = WRITERS[adapter](tmp_path)
    scene = ADAPTERS[adapter].load_scene(root, SCENE_ITEMS[adapter], ScanConfig())
    everything = ScanConfig(structural_classes=tuple({o.category for o in scene.objects}) + ("wall",))
    with pytest.raises(SceneFormatError, match=r": objects: no usable object \((.*, )?structural_class: \d[,)]"):
        ADAPTERS[adapter].load_scene(root, SCENE_ITEMS[adapter], everything)


def test_near_zero_extent_is_degenerate_and_the_threshold_is_configured(tmp_path):
    root = write_arkitscenes_fixture(tmp_path)
    break_one_frame_and_add_bad_object("arkitscenes", root)
    adapter = ADAPTERS["arkitscenes"]
    assert [o.object_id for o in adapter.load_scene(root, SCENE_ITEMS["arkitscenes"], ScanConfig()).objects] == \
        ["b7c1", "f00d"]
    kept = adapter.load_scene(root, SCENE_ITEMS["arkitscenes"], ScanConfig(min_box_extent_m=1e-7)).objects
    assert [o.object_id for o in kept] == ["b7c1", "f00d", "flat"]


# ---- structural classes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("adapter", sorted(WRITERS))
def test_structural_classes_are_skipped_by_every_adapter(tmp_path, adapter):
    root = WRITERS[adapter](tmp_path)
    add_structural_object(adapter, root)
    scene = ADAPTERS[adapter].load_scene(root, SCENE_ITEMS[adapter], ScanConfig())
    assert scene.metadata["dropped"]["objects"]["structural_class"] == 1
    assert not {o.category.lower() for o in scene.objects} & {"floor", "wall", "ceiling"}
    kept = ADAPTERS[adapter].load_scene(root, SCENE_ITEMS[adapter], ScanConfig(structural_classes=()))
    assert len(kept.objects) == len(scene.objects) + 1  # the list is the configuration, not a constant


def test_scannet_floor_is_neither_counted_nor_captioned(tmp_path):
    root = write_scannet_fixture(tmp_path)
    add_structural_object("scannet", root)
    scene = ADAPTERS["scannet"].load_scene(root, "scene0000_00", ScanConfig())
    index = build_object_frame_index(scene, INDEX)
    texts = [s.question + " " + s.answer for seed in range(20) for s in generate_scene_qa(index, QA, seed)]
    assert texts and not any("floor" in text or "地板" in text for text in texts)


# ---- one-frame scenes --------------------------------------------------------------------------------------

def _read_rows(root: Path, **config) -> list[dict]:
    reader = SpatialScenesReader(SpatialScenesConfig(adapter="scannet", source_dataset="scannet",
                                                     index={"min_visible_pixels": 30}, qa={"min_visible_pixels": 30},
                                                     **config))
    return reader.read_items(str(root), reader.list_items(str(root))).to_pylist()


def _assert_single_view_rows_and_one_reason(rows: list[dict]) -> None:
    accepted = [r for r in rows if r["reject_reason"] is None]
    rejected = [r for r in rows if r["reject_reason"] is not None]
    assert accepted and all(not TASKS[r["task"]].multi_view for r in accepted)
    assert [r["reject_reason"] for r in rejected] == ["too_few_frames"]
    multi_view = sorted(name for name, spec in TASKS.items() if spec.multi_view)
    detail = rejected[0]["reject_detail"]
    assert sorted(part.split(":")[0] for part in detail.split("; ")) == multi_view
    assert "at least 2 frames, the scene has 1" in detail


def test_max_frames_one_gives_single_view_rows_and_a_reason(tmp_path):
    _assert_single_view_rows_and_one_reason(_read_rows(write_scannet_fixture(tmp_path), max_frames=1))


def test_scannet_scan_with_one_valid_pose_gives_single_view_rows_and_a_reason(tmp_path):
    root = write_scannet_fixture(tmp_path)
    np.savetxt(root / "scene0000_00" / "pose" / "1.txt", np.full((4, 4), -np.inf))
    rows = _read_rows(root)
    _assert_single_view_rows_and_one_reason(rows)
    # Each QA row says what the adapter left out of its scene.
    dropped = {json.dumps(json.loads(r["metadata"])["scene_dropped"]) for r in rows if r["reject_reason"] is None}
    assert [json.loads(d) for d in dropped] == [{"frames": {"non_finite_pose": 2}, "objects": {}}]


# ---- ScanNet depth size vs the intrinsics' calibration size ------------------------------------------------

def _resize_depth(root: Path, size: tuple[int, int]) -> None:
    for path in (root / "scene0000_00" / "depth").glob("*.png"):
        cv2.imwrite(str(path), cv2.resize(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), size,
                                          interpolation=cv2.INTER_NEAREST))


def test_scannet_half_size_depth_scales_the_intrinsics(tmp_path):
    root = write_scannet_fixture(tmp_path)
    _resize_depth(root, (80, 60))  # intrinsic_depth.txt stays calibrated for the header's 160 x 120
    scene = ADAPTERS["scannet"].load_scene(root, "scene0000_00", ScanConfig())
    frame = scene.frames[0]
    assert (frame.width, frame.height) == (80, 60)
    np.testing.assert_allclose(frame.intrinsics, [[50, 0, 40], [0, 50, 30], [0, 0, 1]])
    # The boxes land where the depth says: a re-render of the loaded boxes at the loaded camera matches it.
    # (A nearest resize keeps each 2x2 block's top-left pixel, the re-render samples its centre: half a pixel
    # apart, so grazing walls differ by a few per cent and edges flip.)
    reference = _rendered_depth([o.box for o in scene.objects], frame)
    assert (np.abs(frame.depth - reference) < 0.03 * reference).mean() > 0.95


def test_scannet_depth_of_another_aspect_is_dropped_with_a_reason(tmp_path):
    root = write_scannet_fixture(tmp_path)
    _resize_depth(root, (80, 80))
    with pytest.raises(SceneFormatError,
                       match=r"frames: no usable frame \(depth_size_mismatch: 2, non_finite_pose: 1\)"):
        ADAPTERS["scannet"].load_scene(root, "scene0000_00", ScanConfig())


# ---- half-pixel convention ---------------------------------------------------------------------------------

@pytest.mark.parametrize("adapter", ["scannet", "arkitscenes"])
def test_integer_centre_intrinsics_put_depth_on_the_box_surfaces(tmp_path, adapter):
    """The fixture's frames were ray cast with our K (centres at +0.5) and written with the dataset's K (centres
    on whole numbers); the loaded depth matches a re-render at the loaded K, so K was converted exactly."""
    root = WRITERS[adapter](tmp_path)
    scene = ADAPTERS[adapter].load_scene(root, SCENE_ITEMS[adapter], ScanConfig())
    frame = scene.frames[0]
    assert np.abs(frame.depth - _rendered_depth([o.box for o in scene.objects], frame)).max() < 0.001


# ---- ARKitScenes sky direction -----------------------------------------------------------------------------

def _sensor_pose(upright: np.ndarray, sky: str) -> np.ndarray:
    """The sensor camera of a device held so that the sky lies towards `sky` in the sensor image: world up is
    the sensor's -y (Up), -x (Left), +y (Down) or +x (Right)."""
    right, down = upright[:3, 0], upright[:3, 1]  # the upright camera's image axes; world up is -down
    sensor_x, sensor_y = {"Up": (right, down), "Left": (down, -right), "Down": (-right, -down),
                          "Right": (-down, right)}[sky]
    pose = upright.copy()
    pose[:3, 0], pose[:3, 1] = sensor_x, sensor_y
    return pose


# A cabinet, a shelf 1.15 m above it, a chair 1.2 m to its right; the camera looks along +y at them.
PORTRAIT_OBJECTS = [("cabinet", [3.0, 3.5, 0.4], [1.0, 0.5, 0.8]), ("shelf", [3.0, 3.5, 1.95], [1.0, 0.4, 0.3]),
                    ("chair", [4.2, 3.2, 0.45], [0.5, 0.5, 0.9])]
PORTRAIT_CAMERAS = [look_at_pose(np.array([3.0, 0.6, 1.2]), np.array([3.3, 3.5, 1.0])),
                    look_at_pose(np.array([3.6, 0.7, 1.3]), np.array([3.4, 3.5, 1.0]))]


def write_arkitscenes_sensor_fixture(root: Path, sky: str, write_metadata: bool = True) -> Path:
    """Frames as the device stored them (160 x 120 sensor images, rotated with the device) and metadata.csv."""
    if write_metadata:
        (root / "metadata.csv").write_text(f"video_id,visit_id,fold,sky_direction\n40777060,1,Training,Up\n"
                                           f"{VIDEO},2,Training,{sky}\n")
    annotations = [{"uid": label, "label": label, "segments": {"obbAligned": {
        "centroid": centre, "axesLengths": extents, "normalizedAxes": [1, 0, 0, 0, 1, 0, 0, 0, 1]}}}
        for label, centre, extents in PORTRAIT_OBJECTS]
    boxes = [OrientedBox(np.array(c, float), np.array(e, float), np.eye(3)) for _, c, e in PORTRAIT_OBJECTS]
    frames = _render(boxes, [_sensor_pose(pose, sky) for pose in PORTRAIT_CAMERAS])
    return write_arkitscenes_video(root, annotations, frames, 100.0)


@pytest.mark.parametrize("write_metadata", [True, False], ids=["metadata_csv", "from_poses"])
@pytest.mark.parametrize("sky", ["Up", "Left", "Right", "Down"])
def test_arkitscenes_frames_are_turned_upright_by_sky_direction(tmp_path, sky, write_metadata):
    root = write_arkitscenes_sensor_fixture(tmp_path, sky, write_metadata)
    scene = ADAPTERS["arkitscenes"].load_scene(root, f"Training/{VIDEO}", ScanConfig())
    assert scene.metadata["sky_direction"] == sky
    portrait = sky in ("Left", "Right")
    for frame, upright in zip(scene.frames, PORTRAIT_CAMERAS):
        assert (frame.width, frame.height) == ((120, 160) if portrait else (160, 120))
        assert frame.image.shape[:2] == frame.depth.shape == (frame.height, frame.width)
        np.testing.assert_allclose(frame.pose, upright, atol=1e-6)  # image rows run down the world again
        # Image, depth, K and pose agree: the loaded boxes re-rendered at the loaded camera give the same depth.
        assert np.abs(frame.depth - _rendered_depth([o.box for o in scene.objects], frame)).max() < 0.001


def _rendered_depth(boxes: list[OrientedBox], frame: Frame) -> np.ndarray:
    """Depth ray cast at the frame's own size, K and pose, in the fixtures' room."""
    target = Frame("reference", frame.width, frame.height, frame.intrinsics, frame.pose)
    render_frames([SceneObject(str(i), i + 1, "box", box) for i, box in enumerate(boxes)], np.array([6.0, 7.0]), 2.7,
                  [target])
    return target.depth


@pytest.mark.parametrize("sky", ["Left", "Right"])
def test_portrait_arkitscenes_answers_left_right_and_above_as_the_world_has_them(tmp_path, sky):
    scene = ADAPTERS["arkitscenes"].load_scene(write_arkitscenes_sensor_fixture(tmp_path, sky),
                                               f"Training/{VIDEO}", ScanConfig())
    index = build_object_frame_index(scene, INDEX)
    config = QA.model_copy(update={"tasks": ("egocentric_position",), "samples_per_task": 4})
    asked = set()
    for seed in range(40):
        for sample in generate_scene_qa(index, config, seed):
            pair = set(sample.objects)  # object ids are the fixture's labels
            relation, holds = sample.value["relation"], sample.value["holds"]
            first, second = sample.objects
            asked.add((first, second, relation))
            if pair == {"cabinet", "shelf"}:  # stacked: no left/right, and the shelf is the one above
                assert relation in ("above", "below", "in_front", "behind")
                if relation in ("above", "below"):
                    assert holds == ((first == "shelf") == (relation == "above"))
            if pair == {"cabinet", "chair"} and relation in ("left", "right"):
                assert holds == ((first == "chair") == (relation == "right"))
    assert any(relation == "above" or relation == "below" for _, _, relation in asked)
    assert any(relation in ("left", "right") for _, _, relation in asked)
