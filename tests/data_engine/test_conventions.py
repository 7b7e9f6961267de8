"""Conventions: each converter round-trips, and hand-worked cases land where the definitions say."""

from __future__ import annotations

import numpy as np
import pytest

from data_engine.conventions import (OrientedBox, box_from_half_sizes, box_from_yaw, camera_from_gl_projection,
                                     intrinsics_from_bottom_left_origin, intrinsics_from_integer_pixel_centres,
                                     intrinsics_matrix, invert_pose, pixel_rays, planar_depth_from_ray_distance,
                                     pose_from_opengl, pose_from_world_to_camera, pose_to_opengl, pose_to_z_up_world,
                                     project_points, rotate_camera_clockwise, rotation_error,
                                     rotation_from_quaternion_wxyz, rotation_z, scale_intrinsics, transform_points,
                                     world_transform_y_up_to_z_up, yaw_of)


def random_pose(rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = q, rng.normal(size=3)
    return pose


def test_opengl_camera_round_trip_and_axes():
    pose = random_pose(np.random.default_rng(0))
    np.testing.assert_allclose(pose_from_opengl(pose_to_opengl(pose)), pose, atol=1e-12)
    # An OpenGL camera at the origin with identity pose looks down -Z with +Y up: in OpenCV terms forward is
    # world -Z and image-down is world -Y.
    cv = pose_from_opengl(np.eye(4))
    np.testing.assert_allclose(cv[:3, 2], [0, 0, -1])
    np.testing.assert_allclose(cv[:3, 1], [0, -1, 0])
    assert rotation_error(cv[:3, :3]) < 1e-12


def test_extrinsics_round_trip():
    pose = random_pose(np.random.default_rng(1))
    np.testing.assert_allclose(pose_from_world_to_camera(invert_pose(pose)), pose, atol=1e-12)
    np.testing.assert_allclose(invert_pose(pose) @ pose, np.eye(4), atol=1e-12)


def test_y_up_world_to_z_up():
    # A point 2 m up in a Y-up world is 2 m up (+Z) in ours; Y-up +Z (towards the viewer) becomes our -Y.
    transform = world_transform_y_up_to_z_up()
    np.testing.assert_allclose(transform[:3, :3] @ [0, 2, 0], [0, 0, 2])
    np.testing.assert_allclose(transform[:3, :3] @ [0, 0, 1], [0, -1, 0])
    pose = random_pose(np.random.default_rng(2))
    back = invert_pose(world_transform_y_up_to_z_up()) @ pose_to_z_up_world(pose)
    np.testing.assert_allclose(back, pose, atol=1e-12)


def test_half_sizes_become_full_extents_and_corners():
    box = box_from_half_sizes([1, 2, 3], [0.5, 1.0, 1.5], np.eye(3))
    np.testing.assert_allclose(box.extents, [1, 2, 3])
    corners = box.corners()
    np.testing.assert_allclose(corners.min(axis=0), [0.5, 1.0, 1.5])
    np.testing.assert_allclose(corners.max(axis=0), [1.5, 3.0, 4.5])


@pytest.mark.parametrize("yaw", [-2.5, 0.0, 0.7, np.pi / 2])
def test_yaw_round_trip_and_front_axis(yaw):
    box = box_from_yaw([0, 0, 0], [2, 1, 1], yaw)
    assert yaw_of(box.rotation) == pytest.approx(yaw)
    np.testing.assert_allclose(box.rotation[:, 0], [np.cos(yaw), np.sin(yaw), 0], atol=1e-12)


def test_rigid_transform_moves_box_and_keeps_extents():
    transform = np.eye(4)
    transform[:3, :3], transform[:3, 3] = rotation_z(np.pi / 2), [1, 0, 0]
    moved = OrientedBox(np.array([1.0, 0, 0]), np.array([2.0, 1, 1]), np.eye(3)).transformed(transform)
    np.testing.assert_allclose(moved.center, [1, 1, 0], atol=1e-12)
    np.testing.assert_allclose(moved.extents, [2, 1, 1])
    np.testing.assert_allclose(np.sort(np.ptp(moved.corners(), axis=0)), [1, 1, 2], atol=1e-12)


def test_colmap_quaternion_hand_case_and_round_trip():
    # A quarter turn about +Z: (w, x, y, z) = (cos 45, 0, 0, sin 45) maps x to y.
    half = np.sqrt(0.5)
    np.testing.assert_allclose(rotation_from_quaternion_wxyz(half, 0, 0, half) @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    from scipy.spatial.transform import Rotation

    rotation = random_pose(np.random.default_rng(3))[:3, :3]
    x, y, z, w = Rotation.from_matrix(rotation).as_quat()
    np.testing.assert_allclose(rotation_from_quaternion_wxyz(w, x, y, z), rotation, atol=1e-12)


# Hypersim's default camera (ai_001_001: 60 degree horizontal field of view, 1024 x 768) and a tilt-shift scene's
# M_proj (ai_021_002, rows as published in ml-hypersim's metadata_camera_parameters.csv).
GL_PROJECTION_60_DEG = np.array([[1.7320507492870254, 0, 0, 0], [0, 2.309400999049367, 0, 0],
                                 [0, 0, -1.002002002002002, -2.002002002002002], [0, 0, -1, 0]])
GL_PROJECTION_TILT_SHIFT = np.array([[1.6888752825391975, 0.004093252636162593, -0.057090042380612493, 0.0],
                                     [0.0, 2.203037491520368, 0.761200839191837, 0.0],
                                     [0.0, 0.06835745713015638, -0.953405633972824, -2.002002002002002],
                                     [0.0, 0.068220878794232, -0.9515007276112399, 0.0]])


def test_gl_projection_plain_perspective_is_the_pinhole_k():
    intrinsics, tilt = camera_from_gl_projection(GL_PROJECTION_60_DEG, 1024, 768)
    focal = 512 / np.tan(np.radians(30))  # half width over tan(half field of view)
    np.testing.assert_allclose(intrinsics, [[focal, 0, 512], [0, focal, 384], [0, 0, 1]], atol=1e-6)
    np.testing.assert_allclose(tilt, np.eye(3), atol=1e-12)


@pytest.mark.parametrize("projection", [GL_PROJECTION_60_DEG, GL_PROJECTION_TILT_SHIFT])
def test_gl_projection_agrees_with_ndc_projection(projection):
    """Independent route: OpenGL clip space -> NDC -> pixels with the top-left origin, vs K @ tilt @ p."""
    width, height = 1024, 768
    intrinsics, tilt = camera_from_gl_projection(projection, width, height)
    assert rotation_error(tilt) < 1e-9 and intrinsics[1, 0] == 0 and intrinsics[2, 2] == 1
    rng = np.random.default_rng(4)
    opencv_points = np.column_stack([rng.uniform(-1, 1, 50), rng.uniform(-1, 1, 50), rng.uniform(1, 5, 50)])
    clip = np.column_stack([opencv_points * [1, -1, -1], np.ones(50)]) @ projection.T  # OpenGL camera: y, z flipped
    ndc = clip[:, :2] / clip[:, 3:4]
    expected = np.column_stack([(ndc[:, 0] + 1) * width / 2, (1 - ndc[:, 1]) * height / 2])
    homogeneous = opencv_points @ (intrinsics @ tilt).T
    assert np.all(homogeneous[:, 2] > 0)  # in front of the virtual camera too
    np.testing.assert_allclose(homogeneous[:, :2] / homogeneous[:, 2:3], expected, atol=1e-6)


def test_gl_projection_rejects_non_central_matrices():
    shifted = GL_PROJECTION_60_DEG.copy()
    shifted[0, 3] = 0.5
    with pytest.raises(ValueError, match="not a central projection"):
        camera_from_gl_projection(shifted, 1024, 768)


def test_ray_distance_to_planar_depth_hand_cases():
    intrinsics = np.array([[2.0, 0, 1.5], [0, 2.0, 1.5], [0, 0, 1]])  # 3 x 3 image, principal point at its centre
    distance = np.full((3, 3), 6.0)
    distance[0, 0] = np.nan
    depth = planar_depth_from_ray_distance(distance, intrinsics)
    assert depth[1, 1] == pytest.approx(6.0)  # the central ray is the optical axis
    # Pixel (row 1, col 2): ray (0.5, 0, 1), length sqrt(1.25); a corner ray (0.5, 0.5, 1) has length sqrt(1.5).
    assert depth[1, 2] == pytest.approx(6.0 / np.sqrt(1.25))
    assert depth[2, 2] == pytest.approx(6.0 / np.sqrt(1.5))
    assert depth[0, 0] == 0.0  # no surface -> unknown


def test_projection_hand_case_and_rays_through_projected_pixels():
    # Camera at the origin looking along world +X (OpenCV: x right = world -Y, y down = world -Z).
    pose = np.eye(4)
    pose[:3, :3] = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    intrinsics = intrinsics_matrix(100.0, 100.0, 64.0, 48.0)
    # 2 m ahead, 0.5 m to the left (world +Y) and 0.2 m up: u = 64 - 100 * 0.25, v = 48 - 100 * 0.1.
    pixels, depth = project_points(np.array([[2.0, 0.5, 0.2]]), intrinsics, pose)
    np.testing.assert_allclose(pixels, [[39.0, 38.0]])
    np.testing.assert_allclose(depth, [2.0])
    rng = np.random.default_rng(5)
    pose = random_pose(rng)
    points = transform_points(pose, rng.uniform([-1, -1, 1], [1, 1, 4], size=(20, 3)))  # in front of the camera
    pixels, depth = project_points(points, intrinsics, pose)
    origin, directions = pixel_rays(pixels, intrinsics, pose)
    np.testing.assert_allclose(origin, pose[:3, 3])
    along = np.einsum("ij,ij->i", points - origin, directions)  # the point lies on its pixel's ray
    np.testing.assert_allclose(origin + along[:, None] * directions, points, atol=1e-9)
    np.testing.assert_allclose(along * (directions @ pose[:3, 2]), depth, atol=1e-9)  # planar depth


def test_pixel_convention_hand_cases():
    # ScanNet's centred 640 x 480 depth camera: cx = 319.5, cy = 239.5 with centres on whole numbers.
    scannet = intrinsics_matrix(577.6, 577.6, 319.5, 239.5)
    np.testing.assert_allclose(intrinsics_from_integer_pixel_centres(scannet),
                               intrinsics_matrix(577.6, 577.6, 320, 240))
    # Matterport3D: cy = 65 counted up from the bottom edge of a 120-row image is 55 down from the top edge.
    np.testing.assert_allclose(intrinsics_from_bottom_left_origin(intrinsics_matrix(100, 100, 80, 65), 120),
                               intrinsics_matrix(100, 100, 80, 55))
    # Halving an image halves fx, fy and (edge-based) cx, cy: the centred camera stays centred.
    np.testing.assert_allclose(scale_intrinsics(intrinsics_matrix(100, 90, 80, 60), 0.5, 0.5),
                               intrinsics_matrix(50, 45, 40, 30))


def test_clockwise_quarter_turn_moves_projections_with_the_image():
    rng = np.random.default_rng(3)
    intrinsics, pose, width, height = intrinsics_matrix(100, 90, 70, 50), random_pose(rng), 160, 120
    points = transform_points(pose, np.column_stack([rng.uniform(-1, 1, (50, 2)), rng.uniform(1, 4, 50)]))
    pixels, depth = project_points(points, intrinsics, pose)
    turned_k, turned_pose = rotate_camera_clockwise(intrinsics, pose, height)
    turned_pixels, turned_depth = project_points(points, turned_k, turned_pose)
    # np.rot90(image, -1) sends the pixel whose edge-based coordinates are (u, v) to (height - v, u).
    np.testing.assert_allclose(turned_pixels, np.column_stack([height - pixels[:, 1], pixels[:, 0]]), atol=1e-9)
    np.testing.assert_allclose(turned_depth, depth, atol=1e-12)
    assert turned_k[0, 1] == 0 and turned_k[1, 0] == 0 and turned_k[0, 0] == 90 and turned_k[1, 1] == 100
    image = np.arange(height * width).reshape(height, width)
    row, col = 17, 101  # the pixel whose centre is (101.5, 17.5) lands at centre (120 - 17.5, 101.5)
    assert np.rot90(image, -1)[col, height - 1 - row] == image[row, col]
    k, turned = intrinsics, pose
    for turn in range(4):  # four quarter turns are the identity
        k, turned = rotate_camera_clockwise(k, turned, (height, width)[turn % 2])
    np.testing.assert_allclose(k, intrinsics, atol=1e-12)
    np.testing.assert_allclose(turned, pose, atol=1e-12)


@pytest.mark.parametrize("pitch_deg", [0.0, 30.0, 44.0, 46.0, 60.0, 89.0, 89.99, 90.0, -60.0])
@pytest.mark.parametrize("yaw_deg", [0.0, 100.0, -135.0])
def test_camera_heading_is_the_heading_from_level_to_straight_down(yaw_deg, pitch_deg):
    """A roll-free camera heading `yaw` keeps that heading at every pitch, straight down (where the optical
    axis has no horizontal part) and looking up included; the gravity-aligned frame has it as x, left as y."""
    from data_engine.conventions import camera_heading, gravity_aligned_camera_frame

    yaw, pitch = np.radians(yaw_deg), np.radians(pitch_deg)
    right = np.array([np.sin(yaw), -np.cos(yaw), 0.0])  # the heading turned 90 degrees clockwise
    forward = np.array([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), -np.sin(pitch)])
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, np.cross(forward, right), forward], axis=1)
    pose[:3, 3] = [1.0, 2.0, 1.5]
    expected = [np.cos(yaw), np.sin(yaw)]
    np.testing.assert_allclose(camera_heading(pose), expected, atol=1e-9)
    frame = gravity_aligned_camera_frame(pose)
    np.testing.assert_allclose(frame[:3, 2], [0, 0, 1])
    np.testing.assert_allclose(frame[:2, 1], [-expected[1], expected[0]], atol=1e-9)  # left
    np.testing.assert_allclose(frame[:3, 3], [1.0, 2.0, 1.5])
    assert rotation_error(frame[:3, :3]) < 1e-9
