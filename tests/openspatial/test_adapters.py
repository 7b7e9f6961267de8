"""Dataset adapters on small fixtures written in each dataset's own layout, with hand-worked boxes and poses."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import open3d as o3d
import pytest

from data_engine.conventions import OrientedBox, invert_pose, rotation_z
from openspatial.adapters import (ARKitScenesAdapter, HypersimAdapter, Matterport3DAdapter, ScanConfig, ScanNetAdapter,
                                  ScanNetPPAdapter)
from openspatial.frame_index import IndexConfig, build_object_frame_index
from openspatial.procedural import look_at_pose, render_frames
from openspatial.qa.tasks import QAConfig, generate_scene_qa
from openspatial.reader import SpatialScenesConfig, SpatialScenesReader
from openspatial.scene import Frame, SceneFormatError, SceneObject

K = np.array([[100.0, 0, 80], [0, 100.0, 60], [0, 0, 1]])  # ours: pixel centres at +0.5, a centred 160x120 camera
# The same camera as ScanNet and ARKitScenes write it, with pixel centres on whole numbers.
K_INTEGER_CENTRES = np.array([[100.0, 0, 79.5], [0, 100.0, 59.5], [0, 0, 1]])


def _render(boxes: list[OrientedBox], poses: list[np.ndarray], room=(6.0, 7.0), intrinsics=K) -> list[Frame]:
    """Frames of the canonical geometry: RGB, depth (mm-quantised on write) for the dataset files."""
    objects = [SceneObject(str(i), i + 1, "box", box) for i, box in enumerate(boxes)]
    frames = [Frame(str(i), 160, 120, intrinsics, pose) for i, pose in enumerate(poses)]
    render_frames(objects, np.array(room), 2.7, frames)
    return frames


CAMERAS = [look_at_pose(np.array([3.0, 0.5, 1.4]), np.array([2.8, 4.0, 0.4])),
           look_at_pose(np.array([4.5, 1.0, 1.4]), np.array([3.0, 3.5, 0.4]))]

# ---- ScanNet ------------------------------------------------------------------------------------------------
# axisAlignment: rotate the scan 90 degrees about +Z, then shift by (3, 2, 0): x' = -y + 3, y' = x + 2, z' = z.
SCANNET_ALIGNMENT = np.array([[0.0, -1, 0, 3], [1, 0, 0, 2], [0, 0, 1, 0], [0, 0, 0, 1]])
# Raw scan vertices: the chair fills [0, 1] x [0, 2] x [0, 0.5], the table [2, 3] x [-1, 0] x [0, 0.8].
RAW_CHAIR = ([0, 0, 0], [1, 2, 0.5])
RAW_TABLE = ([2, -1, 0], [3, 0, 0.8])


def _cube_vertices(low, high, per_side=5) -> np.ndarray:
    axes = [np.linspace(lo, hi, per_side) for lo, hi in zip(low, high)]
    grid = np.stack(np.meshgrid(*axes), axis=-1).reshape(-1, 3)
    return grid


def write_scannet_fixture(root: Path) -> Path:
    scene = root / "scans" / "scene0000_00"
    (scene / "pose").mkdir(parents=True)
    for sub in ("color", "depth", "intrinsic"):
        (scene / sub).mkdir()
    alignment_text = " ".join(f"{v:g}" for v in SCANNET_ALIGNMENT.ravel())
    (scene / "scene0000_00.txt").write_text("colorHeight = 240\ncolorWidth = 320\ndepthHeight = 120\n"
                                            f"depthWidth = 160\naxisAlignment = {alignment_text}\nnumDepthFrames = 3\n")
    chair, table = _cube_vertices(*RAW_CHAIR), _cube_vertices(*RAW_TABLE)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.concatenate([chair, table])))
    o3d.io.write_point_cloud(str(scene / "scene0000_00_vh_clean_2.ply"), cloud, write_ascii=True)
    (scene / "scene0000_00_vh_clean_2.0.010000.segs.json").write_text(
        json.dumps({"sceneId": "scene0000_00", "segIndices": [10] * len(chair) + [20] * len(table)}))
    (scene / "scene0000_00.aggregation.json").write_text(json.dumps({"sceneId": "scene0000_00", "segGroups": [
        {"id": 0, "objectId": 0, "segments": [10], "label": "chair"},
        {"id": 1, "objectId": 1, "segments": [20], "label": "table"}]}))
    intrinsic = np.eye(4)
    intrinsic[:3, :3] = K_INTEGER_CENTRES
    np.savetxt(scene / "intrinsic" / "intrinsic_depth.txt", intrinsic)
    aligned = [OrientedBox(np.array([2.0, 2.5, 0.25]), np.array([2.0, 1, 0.5]), np.eye(3)),
               OrientedBox(np.array([3.5, 4.5, 0.4]), np.array([1.0, 1, 0.8]), np.eye(3))]
    frames = _render(aligned, CAMERAS)
    for frame in frames:
        np.savetxt(scene / "pose" / f"{frame.frame_id}.txt", invert_pose(SCANNET_ALIGNMENT) @ frame.pose)
        cv2.imwrite(str(scene / "depth" / f"{frame.frame_id}.png"), np.round(frame.depth * 1000).astype(np.uint16))
        colour = cv2.resize(frame.image, (320, 240), interpolation=cv2.INTER_LINEAR)  # ScanNet colour is larger
        cv2.imwrite(str(scene / "color" / f"{frame.frame_id}.jpg"), cv2.cvtColor(colour, cv2.COLOR_RGB2BGR))
    np.savetxt(scene / "pose" / "2.txt", np.full((4, 4), -np.inf))  # a tracking failure, as ScanNet stores it
    return root / "scans"


def test_scannet_adapter_hand_worked_boxes_and_poses(tmp_path):
    root = write_scannet_fixture(tmp_path)
    adapter = ScanNetAdapter()
    assert adapter.list_scenes(root) == ["scene0000_00"]
    scene = adapter.load_scene(root, "scene0000_00", ScanConfig())
    chair, table = scene.objects
    # Chair: raw y in [0, 2] -> x' = 3 - y in [1, 3]; raw x in [0, 1] -> y' = x + 2 in [2, 3]; z in [0, 0.5].
    np.testing.assert_allclose(chair.box.center, [2.0, 2.5, 0.25], atol=1e-9)
    np.testing.assert_allclose(chair.box.extents, [2.0, 1.0, 0.5], atol=1e-9)
    # Table: raw y in [-1, 0] -> x' in [3, 4]; raw x in [2, 3] -> y' in [4, 5]; z in [0, 0.8].
    np.testing.assert_allclose(table.box.center, [3.5, 4.5, 0.4], atol=1e-9)
    assert (chair.category, table.category, chair.instance_id) == ("chair", "table", 1)
    # Poses are moved into the aligned frame: the first camera is back at (3, 0.5, 1.4).
    np.testing.assert_allclose(scene.frames[0].pose[:3, 3], [3.0, 0.5, 1.4], atol=1e-6)
    assert len(scene.frames) == 2 and scene.metadata["dropped"]["frames"] == {"non_finite_pose": 1}
    assert scene.frames[0].image.shape == (120, 160, 3)
    np.testing.assert_allclose(scene.frames[0].intrinsics, K)  # pixel centres moved from whole numbers to +0.5
    index = build_object_frame_index(scene, IndexConfig(min_visible_pixels=30))
    assert index.records["0", 0].visible and index.records["1", 0].visible
    assert generate_scene_qa(index, QAConfig(min_visible_pixels=30), 0)


def test_scannet_adapter_names_the_broken_file(tmp_path):
    root = write_scannet_fixture(tmp_path)
    segs = root / "scene0000_00" / "scene0000_00_vh_clean_2.0.010000.segs.json"
    segs.write_text(json.dumps({"segIndices": [10, 20]}))
    with pytest.raises(SceneFormatError, match=r"segs\.json: segIndices: 2 entries for 250 vertices"):
        ScanNetAdapter().load_scene(root, "scene0000_00", ScanConfig())


# ---- ARKitScenes --------------------------------------------------------------------------------------------
VIDEO = "41069021"
# normalizedAxes rows are the box axes: the first (0.6 m long) runs along world +y, the second (0.4 m) along -x.
ARKIT_BOX = {"centroid": [2.0, 2.5, 0.45], "axesLengths": [0.6, 0.4, 0.9], "normalizedAxes": [0, 1, 0, -1, 0, 0, 0, 0, 1]}


def write_arkitscenes_video(root: Path, annotations: list[dict], frames: list[Frame], first_stamp: float) -> Path:
    """One 3DOD video: the annotation, and per frame its RGB, depth, .pincam (pixel centres on whole numbers)
    and a lowres_wide.traj line (world-to-camera axis-angle and translation)."""
    video = root / "Training" / VIDEO
    frames_dir = video / f"{VIDEO}_frames"
    for sub in ("lowres_wide", "lowres_depth", "lowres_wide_intrinsics"):
        (frames_dir / sub).mkdir(parents=True)
    (video / f"{VIDEO}_3dod_annotation.json").write_text(json.dumps({"skipped": False, "data": annotations}))
    lines = []
    for number, frame in enumerate(frames):
        stamp = f"{first_stamp + number * 0.1:.3f}"
        name = f"{VIDEO}_{stamp}.png"
        cv2.imwrite(str(frames_dir / "lowres_wide" / name), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(frames_dir / "lowres_depth" / name), np.round(frame.depth * 1000).astype(np.uint16))
        (frames_dir / "lowres_wide_intrinsics" / f"{VIDEO}_{stamp}.pincam").write_text("160 120 100 100 79.5 59.5\n")
        world_to_camera = invert_pose(frame.pose)
        angle_axis = cv2.Rodrigues(world_to_camera[:3, :3])[0].ravel()
        lines.append(" ".join(f"{v:.9f}" for v in [float(stamp), *angle_axis, *world_to_camera[:3, 3]]))
    (frames_dir / "lowres_wide.traj").write_text("\n".join(lines) + "\n")
    return root


def write_arkitscenes_fixture(root: Path) -> Path:
    annotations = [{"uid": "b7c1", "label": "chair", "segments": {"obbAligned": ARKIT_BOX}},
                   {"uid": "f00d", "label": "table", "segments": {"obbAligned": {
                       "centroid": [3.5, 4.5, 0.4], "axesLengths": [1.0, 1.0, 0.8],
                       "normalizedAxes": [1, 0, 0, 0, 1, 0, 0, 0, 1]}}}]
    boxes = [OrientedBox(np.array([2.0, 2.5, 0.45]), np.array([0.6, 0.4, 0.9]), rotation_z(np.pi / 2)),
             OrientedBox(np.array([3.5, 4.5, 0.4]), np.array([1.0, 1.0, 0.8]), np.eye(3))]
    return write_arkitscenes_video(root, annotations, _render(boxes, CAMERAS), 6845.75)


def test_arkitscenes_adapter_hand_worked_box_and_pose(tmp_path):
    root = write_arkitscenes_fixture(tmp_path)
    adapter = ARKitScenesAdapter()
    assert adapter.list_scenes(root) == [f"Training/{VIDEO}"]
    scene = adapter.load_scene(root, f"Training/{VIDEO}", ScanConfig())
    chair = scene.objects[0]
    # Corners: 0.6 m along +y and 0.4 m along -x around (2, 2.5): x in [1.8, 2.2], y in [2.2, 2.8], z in [0, 0.9].
    corners = chair.box.corners()
    np.testing.assert_allclose(corners.min(axis=0), [1.8, 2.2, 0.0], atol=1e-9)
    np.testing.assert_allclose(corners.max(axis=0), [2.2, 2.8, 0.9], atol=1e-9)
    np.testing.assert_allclose(chair.box.rotation[:, 0], [0, 1, 0])  # the first axis, now a column
    # A traj line holds world-to-camera; the camera centre comes back as written by the fixture.
    np.testing.assert_allclose(scene.frames[0].pose[:3, 3], [3.0, 0.5, 1.4], atol=1e-6)
    np.testing.assert_allclose(scene.frames[1].pose, CAMERAS[1], atol=1e-6)
    np.testing.assert_allclose(scene.frames[0].intrinsics, K)  # .pincam centres on whole numbers -> ours
    index = build_object_frame_index(scene, IndexConfig(min_visible_pixels=30))
    assert index.records["b7c1", 0].visible
    assert generate_scene_qa(index, QAConfig(min_visible_pixels=30), 0)


def test_arkitscenes_broken_annotation_names_file_and_field(tmp_path):
    root = write_arkitscenes_fixture(tmp_path)
    annotation = root / "Training" / VIDEO / f"{VIDEO}_3dod_annotation.json"
    annotation.write_text(json.dumps({"data": [{"uid": "x", "label": "chair", "segments": {"obbAligned": {
        "centroid": [0, 0, 0], "normalizedAxes": [1, 0, 0, 0, 1, 0, 0, 0, 1]}}}]}))
    with pytest.raises(SceneFormatError, match=r"_3dod_annotation\.json: data\[0\]\.segments\.obbAligned: needs"):
        ARKitScenesAdapter().load_scene(root, f"Training/{VIDEO}", ScanConfig())


# ---- Matterport3D -------------------------------------------------------------------------------------------
HOUSE = "17DRP5sb8fy"
# Axis 0 = (0.6, 0.8, 0), axis 1 = (-0.8, 0.6, 0), radii (0.5, 0.25, 0.5): full extents (1, 0.5, 1).
MATTERPORT_CHAIR = "O 0 0 3  2.0 3.0 0.5  0.6 0.8 0  -0.8 0.6 0  0.5 0.25 0.5  0 0 0 0 0 0 0 0"
K_OFF_CENTRE = np.array([[100.0, 0, 80], [0, 100.0, 55], [0, 0, 1]])  # cy = 55 from the top = 65 from the bottom


def write_matterport_fixture(root: Path) -> Path:
    house = root / HOUSE
    for sub in ("house_segmentations", "undistorted_camera_parameters", "undistorted_color_images",
                "undistorted_depth_images"):
        (house / sub).mkdir(parents=True)
    (house / "house_segmentations" / f"{HOUSE}.house").write_text("\n".join([
        "ASCII 1.1", "H 17DRP5sb8fy house 0 0 0 0 0 2 2 1 0 1  0 0 0 0 0  0 0 0 6 7 3  0 0 0 0 0",
        "C 3 5 office chair 3 chair 0 0 0 0 0", "C 7 12 table 5 table 0 0 0 0 0",
        MATTERPORT_CHAIR, "O 1 0 7  3.5 4.5 0.4  1 0 0  0 1 0  0.5 0.5 0.4  0 0 0 0 0 0 0 0",
        "O 2 0 -1  1 1 1  1 0 0  0 1 0  0.1 0.1 0.1  0 0 0 0 0 0 0 0"]) + "\n")
    chair = OrientedBox(np.array([2.0, 3.0, 0.5]), np.array([1.0, 0.5, 1.0]),
                        np.array([[0.6, -0.8, 0], [0.8, 0.6, 0], [0, 0, 1]]))
    table = OrientedBox(np.array([3.5, 4.5, 0.4]), np.array([1.0, 1.0, 0.8]), np.eye(3))
    objects = [SceneObject("0", 1, "chair", chair), SceneObject("1", 2, "table", table)]
    frames = [Frame(str(i), 160, 120, K_OFF_CENTRE, pose) for i, pose in enumerate(CAMERAS)]
    render_frames(objects, np.array([6.0, 7.0]), 2.7, frames)
    conf = ["dataset matterport", "n_images 2", "depth_directory undistorted_depth_images",
            "color_directory undistorted_color_images", "intrinsics_matrix 100 0 80  0 100 65  0 0 1"]
    for i, frame in enumerate(frames):
        depth_name, color_name = f"pano_d1_{i}.png", f"pano_i1_{i}.jpg"
        cv2.imwrite(str(house / "undistorted_depth_images" / depth_name), np.round(frame.depth * 4000).astype(np.uint16))
        cv2.imwrite(str(house / "undistorted_color_images" / color_name), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
        pose_gl = frame.pose @ np.diag([1.0, -1, -1, 1])  # OpenGL camera: looking down -Z, Y up
        conf.append(f"scan {depth_name} {color_name} " + " ".join(f"{v:.9f}" for v in pose_gl.ravel()))
    (house / "undistorted_camera_parameters" / f"{HOUSE}.conf").write_text("\n".join(conf) + "\n")
    return root


def test_matterport_adapter_hand_worked_box_camera_and_intrinsics(tmp_path):
    root = write_matterport_fixture(tmp_path)
    adapter = Matterport3DAdapter()
    assert adapter.list_scenes(root) == [HOUSE]
    scene = adapter.load_scene(root, HOUSE, ScanConfig())
    chair, table = scene.objects
    assert (chair.category, table.category) == ("chair", "table")  # mpcat40 names
    np.testing.assert_allclose(chair.box.extents, [1.0, 0.5, 1.0])  # radii doubled
    # x: 0.5 * 0.6 + 0.25 * 0.8 = 0.5 either side of 2; y: 0.5 * 0.8 + 0.25 * 0.6 = 0.55 either side of 3.
    np.testing.assert_allclose(chair.box.corners().min(axis=0), [1.5, 2.45, 0.0], atol=1e-9)
    np.testing.assert_allclose(chair.box.corners().max(axis=0), [2.5, 3.55, 1.0], atol=1e-9)
    assert scene.metadata["dropped"]["objects"] == {"unlabelled": 1}
    np.testing.assert_allclose(scene.frames[0].intrinsics[1, 2], 55.0)  # 120 - 65
    np.testing.assert_allclose(scene.frames[1].pose, CAMERAS[1], atol=1e-6)
    index = build_object_frame_index(scene, IndexConfig(min_visible_pixels=30))
    record = index.records["0", 0]
    assert record.visible and record.occlusion < 0.2  # depth-refined mask agrees with the projected box


# ---- ScanNet++ ----------------------------------------------------------------------------------------------
SCENE_PP = "0a5c013435"


def write_scannetpp_fixture(root: Path) -> Path:
    from scipy.spatial.transform import Rotation

    scene = root / "data" / SCENE_PP
    for sub in ("scans", "iphone/colmap", "iphone/rgb", "iphone/depth"):
        (scene / sub).mkdir(parents=True)
    (scene / "scans" / "segments_anno.json").write_text(json.dumps({"sceneId": SCENE_PP, "segGroups": [
        {"id": 4, "objectId": 4, "label": "office chair", "segments": [1, 2], "obb": ARKIT_BOX},
        {"id": 9, "objectId": 9, "label": "table", "segments": [3], "obb": {
            "centroid": [3.5, 4.5, 0.4], "axesLengths": [1.0, 1.0, 0.8], "normalizedAxes": [1, 0, 0, 0, 1, 0, 0, 0, 1]}}]}))
    (scene / "iphone" / "colmap" / "cameras.txt").write_text(
        "# Camera list with one line of data per camera:\n1 PINHOLE 1920 1440 1200 1200 960 720\n")
    boxes = [OrientedBox(np.array([2.0, 2.5, 0.45]), np.array([0.6, 0.4, 0.9]), rotation_z(np.pi / 2)),
             OrientedBox(np.array([3.5, 4.5, 0.4]), np.array([1.0, 1.0, 0.8]), np.eye(3))]
    lines = ["# Image list with two lines of data per image:"]
    for number, frame in enumerate(_render(boxes, CAMERAS)):
        name = f"frame_{number * 10:06d}"
        world_to_camera = invert_pose(frame.pose)
        qx, qy, qz, qw = Rotation.from_matrix(world_to_camera[:3, :3]).as_quat()
        lines += [" ".join(str(v) for v in [number + 1, qw, qx, qy, qz, *world_to_camera[:3, 3], 1, f"{name}.jpg"]), ""]
        rgb = cv2.resize(frame.image, (1920, 1440), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(scene / "iphone" / "rgb" / f"{name}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(scene / "iphone" / "depth" / f"{name}.png"), np.round(frame.depth * 1000).astype(np.uint16))
    (scene / "iphone" / "colmap" / "images.txt").write_text("\n".join(lines) + "\n")
    return root / "data"


def test_scannetpp_adapter_hand_worked_box_camera_and_intrinsics(tmp_path):
    root = write_scannetpp_fixture(tmp_path)
    adapter = ScanNetPPAdapter()
    assert adapter.list_scenes(root) == [SCENE_PP]
    scene = adapter.load_scene(root, SCENE_PP, ScanConfig())
    chair = scene.objects[0]
    assert (chair.object_id, chair.category) == ("4", "office chair")
    np.testing.assert_allclose(chair.box.corners().min(axis=0), [1.8, 2.2, 0.0], atol=1e-9)
    np.testing.assert_allclose(chair.box.corners().max(axis=0), [2.2, 2.8, 0.9], atol=1e-9)
    # 1920x1440 intrinsics scaled by 1/12 to the 160x120 depth maps.
    np.testing.assert_allclose(scene.frames[0].intrinsics, K, atol=1e-9)
    np.testing.assert_allclose(scene.frames[1].pose, CAMERAS[1], atol=1e-6)
    assert scene.frames[0].image.shape == (120, 160, 3)
    assert build_object_frame_index(scene, IndexConfig(min_visible_pixels=30)).records["4", 0].visible


# ---- Hypersim ----------------------------------------------------------------------------------------------
HYPERSIM_SCENE = "ai_001_002"
METRES_PER_ASSET_UNIT = 0.025  # 2.5 cm per asset unit: 40 units per metre
# Lens shift only: M_proj_00 = fx / (W/2) = 1.25, M_proj_02 = 1 - cx / (W/2) = -0.05, M_proj_11 = fy / (H/2) = 5/3,
# M_proj_12 = cy / (H/2) - 1 = -1/12, w = -z. So K = [[100, 0, 84], [0, 100, 55], [0, 0, 1]] at 160 x 120.
HYPERSIM_M_PROJ = [[1.25, 0, -0.05, 0], [0, 5 / 3, -1 / 12, 0], [0, 0, -1.002002, -2.002002], [0, 0, -1, 0]]
K_SHIFTED = np.array([[100.0, 0, 84], [0, 100.0, 55], [0, 0, 1]])


def _write_hdf5(path: Path, array) -> None:
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("dataset", data=np.asarray(array))


def write_hypersim_fixture(root: Path) -> Path:
    scene = root / HYPERSIM_SCENE
    detail, mesh = scene / "_detail", scene / "_detail" / "mesh"
    mesh.mkdir(parents=True)
    (detail / "metadata_scene.csv").write_text(
        f"parameter_name,parameter_value\nmeters_per_asset_unit,{METRES_PER_ASSET_UNIT}\n")
    (detail / "metadata_cameras.csv").write_text("camera_name\ncam_00\n")
    columns = [f"M_proj_{i}{j}" for i in range(4) for j in range(4)]
    (root / "metadata_camera_parameters.csv").write_text(
        "scene_name,settings_output_img_height,settings_output_img_width," + ",".join(columns) + "\n"
        + "ai_001_001,768,1024," + ",".join(["0"] * 16) + "\n"  # another scene's row, never read
        + f"{HYPERSIM_SCENE},120,160," + ",".join(str(v) for row in HYPERSIM_M_PROJ for v in row) + "\n")
    # Boxes in asset units; row 0 is unused (inf), as in the release. Instance 1: centre (80, 100, 18), extents
    # (24, 16, 36), its x axis along world +y; instance 2: an axis-aligned table; instance 3: a wall (skipped).
    inf = np.full(3, np.inf)
    _write_hdf5(mesh / "metadata_semantic_instance_bounding_box_object_aligned_2d_positions.hdf5",
                [inf, [80, 100, 18], [140, 180, 16], [120, 0, 54]])
    _write_hdf5(mesh / "metadata_semantic_instance_bounding_box_object_aligned_2d_extents.hdf5",
                [inf, [24, 16, 36], [40, 40, 32], [240, 4, 108]])
    _write_hdf5(mesh / "metadata_semantic_instance_bounding_box_object_aligned_2d_orientations.hdf5",
                [np.full((3, 3), np.inf), rotation_z(np.pi / 2), np.eye(3), np.eye(3)])
    # Four low-level mesh objects: two form the chair (NYU40 5), one the table (7), one the wall (1).
    _write_hdf5(mesh / "mesh_objects_si.hdf5", np.array([5, 5, 7, 1], np.int32))
    _write_hdf5(mesh / "mesh_objects_sii.hdf5", np.array([1, 1, 2, 3], np.int32))
    boxes = [OrientedBox(np.array([2.0, 2.5, 0.45]), np.array([0.6, 0.4, 0.9]), rotation_z(np.pi / 2)),
             OrientedBox(np.array([3.5, 4.5, 0.4]), np.array([1.0, 1.0, 0.8]), np.eye(3))]
    frames = _render(boxes, CAMERAS, intrinsics=K_SHIFTED)
    images = scene / "images"
    cols, rows = np.meshgrid(np.arange(160) + 0.5, np.arange(120) + 0.5)
    rays = np.stack([cols, rows, np.ones_like(cols)], axis=-1)
    ray_lengths = np.linalg.norm(rays @ np.linalg.inv(K_SHIFTED).T, axis=-1)
    for i, frame in enumerate(frames):
        stem = f"frame.{i:04d}"
        _write_hdf5(images / "scene_cam_00_final_hdf5" / f"{stem}.color.hdf5",
                    (frame.image.astype(np.float32) / 255) ** 2.2)  # linear HDR values
        distance = frame.depth * ray_lengths  # metres along each pixel's ray
        distance[:4, :4] = np.nan  # no surface (a window to the sky)
        _write_hdf5(images / "scene_cam_00_geometry_hdf5" / f"{stem}.depth_meters.hdf5", distance.astype(np.float16))
        _write_hdf5(images / "scene_cam_00_geometry_hdf5" / f"{stem}.semantic_instance.hdf5",
                    np.where(frame.instances > 0, frame.instances, -1).astype(np.int16))
    # Camera: OpenGL axes (y up, z backwards), camera-to-world rotation; positions in asset units. A third keyframe
    # has no published image.
    orientations = [frame.pose[:3, :3] @ np.diag([1.0, -1, -1]) for frame in frames] + [np.eye(3)]
    positions = [frame.pose[:3, 3] / METRES_PER_ASSET_UNIT for frame in frames] + [np.zeros(3)]
    _write_hdf5(detail / "cam_00" / "camera_keyframe_orientations.hdf5", orientations)
    _write_hdf5(detail / "cam_00" / "camera_keyframe_positions.hdf5", positions)
    return root


def test_hypersim_adapter_hand_worked_box_camera_depth_and_intrinsics(tmp_path):
    root = write_hypersim_fixture(tmp_path)
    adapter = HypersimAdapter()
    assert adapter.list_scenes(root) == [HYPERSIM_SCENE]
    scene = adapter.load_scene(root, HYPERSIM_SCENE, ScanConfig())
    chair, table = scene.objects  # the wall instance is structure, not an object
    assert (chair.category, table.category, chair.instance_id) == ("chair", "table", 2)
    assert scene.metadata["dropped"]["objects"] == {"structural_class": 1}
    # Asset units x 0.025: centre (2, 2.5, 0.45), extents (0.6, 0.4, 0.9) with the 0.6 m side along world y, so
    # x spans 2 -+ 0.2 and y spans 2.5 -+ 0.3.
    np.testing.assert_allclose(chair.box.extents, [0.6, 0.4, 0.9], atol=1e-9)
    np.testing.assert_allclose(chair.box.corners().min(axis=0), [1.8, 2.2, 0.0], atol=1e-9)
    np.testing.assert_allclose(chair.box.corners().max(axis=0), [2.2, 2.8, 0.9], atol=1e-9)
    # K from M_proj: fx = 80 * 1.25, cx = 80 * (1 + 0.05), fy = 60 * 5/3, cy = 60 * (1 - 1/12).
    np.testing.assert_allclose(scene.frames[0].intrinsics, K_SHIFTED, atol=1e-9)
    # Camera: position 40 units per metre back to (3, 0.5, 1.4); OpenGL axes flipped into OpenCV ones.
    assert len(scene.frames) == 2 and scene.frames[1].frame_id == "cam_00_0001"
    np.testing.assert_allclose(scene.frames[0].pose[:3, 3], [3.0, 0.5, 1.4], atol=1e-9)
    np.testing.assert_allclose(scene.frames[1].pose, CAMERAS[1], atol=1e-9)
    # Ray distances became planar depth (float16 storage: 1e-3 relative); no surface became 0 (unknown).
    frame = scene.frames[0]
    assert np.all(frame.depth[:4, :4] == 0)
    reference = _render([chair.box, table.box], CAMERAS[:1], intrinsics=K_SHIFTED)[0]  # the loaded boxes, re-rendered
    np.testing.assert_allclose(frame.depth[4:, 4:], reference.depth[4:, 4:], rtol=2e-3)
    # Instance maps: id + 1, -1 -> 0; the chair's pixels carry the chair's instance id.
    assert np.array_equal(frame.instances == chair.instance_id, reference.instances == 1)
    assert frame.image.dtype == np.uint8 and frame.image.shape == (120, 160, 3)
    index = build_object_frame_index(scene, IndexConfig(min_visible_pixels=30))
    assert index.records["1", 0].visible and index.records["2", 0].visible
    assert generate_scene_qa(index, QAConfig(min_visible_pixels=30), 0)


def test_hypersim_missing_camera_parameters_names_the_file(tmp_path):
    root = write_hypersim_fixture(tmp_path)
    (root / "metadata_camera_parameters.csv").unlink()
    with pytest.raises(SceneFormatError, match=r"metadata_camera_parameters\.csv: <file>: missing"):
        HypersimAdapter().load_scene(root, HYPERSIM_SCENE, ScanConfig())
    write_hypersim_fixture(tmp_path / "other")
    _write_hdf5(tmp_path / "other" / HYPERSIM_SCENE / "_detail" / "mesh" / "mesh_objects_sii.hdf5", np.array([1, 2]))
    with pytest.raises(SceneFormatError, match=r"mesh_objects_sii\.hdf5: dataset: expected shape \(4,\), got \(2,\)"):
        HypersimAdapter().load_scene(tmp_path / "other", HYPERSIM_SCENE, ScanConfig())


FIXTURE_WRITERS = {"scannet": write_scannet_fixture, "arkitscenes": write_arkitscenes_fixture,
                   "matterport3d": write_matterport_fixture, "scannetpp": write_scannetpp_fixture,
                   "hypersim": write_hypersim_fixture}  # adapter name -> writer returning the dataset root


@pytest.mark.parametrize("adapter", sorted(FIXTURE_WRITERS))
def test_reader_emits_qa_rows_from_each_adapter_fixture(tmp_path, adapter):
    root = FIXTURE_WRITERS[adapter](tmp_path)
    config = SpatialScenesConfig(adapter=adapter, source_dataset=adapter, index={"min_visible_pixels": 30},
                                 qa={"min_visible_pixels": 30})
    reader = SpatialScenesReader(config)
    rows = reader.read_items(str(root), reader.list_items(str(root))).to_pylist()
    assert rows and all(r["reject_reason"] is None and r["images"] for r in rows)
    assert {r["source_dataset"] for r in rows} == {adapter}
