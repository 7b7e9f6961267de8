"""Conventions: each converter round-trips, and hand-worked cases land where the definitions say."""

from __future__ import annotations

import numpy as np
import pytest

from openspatial.conventions import (OrientedBox, box_from_half_sizes, box_from_yaw, invert_pose, pose_from_opengl,
                                     pose_from_world_to_camera, pose_to_opengl, pose_to_z_up_world, rotation_error,
                                     rotation_from_quaternion_wxyz, rotation_z, world_transform_y_up_to_z_up, yaw_of)


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
