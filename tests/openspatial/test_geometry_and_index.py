"""Box distances, projection, visibility and the object-frame index against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from data_engine.conventions import OrientedBox, box_from_yaw
from openspatial.frame_index import IndexConfig, build_object_frame_index, index_table
from openspatial.geometry import box_box_distance, boxes_overlap, point_box_distance
from openspatial.projection import decode_rle, encode_rle, project_box

from tests.openspatial.conftest import hand_scene


def test_box_distances_hand_cases():
    a = OrientedBox(np.zeros(3), np.array([2.0, 2, 2]), np.eye(3))
    assert box_box_distance(a, OrientedBox(np.array([4.0, 0, 0]), np.array([2.0, 2, 2]), np.eye(3))) == pytest.approx(2.0)
    # Corner-to-corner along the diagonal: gap of 1 on each axis -> sqrt(3).
    assert box_box_distance(a, OrientedBox(np.array([3.0, 3, 3]), np.array([2.0, 2, 2]), np.eye(3))) == pytest.approx(np.sqrt(3))
    # A 45-degree rotated box whose corner points at a's face: centre 3 away, half-diagonal sqrt(2) -> 2 - sqrt(2).
    rotated = box_from_yaw([3.0, 0, 0], [2, 2, 2], np.pi / 4)
    assert box_box_distance(a, rotated) == pytest.approx(2 - np.sqrt(2))
    # Edge-edge: two boxes crossing like a plus sign, one lifted 1 m above the other -> 1 m (no vertex is closest).
    long_x = OrientedBox(np.zeros(3), np.array([4.0, 0.2, 0.2]), np.eye(3))
    long_y = OrientedBox(np.array([0.0, 0, 1.2]), np.array([0.2, 4.0, 0.2]), np.eye(3))
    assert box_box_distance(long_x, long_y) == pytest.approx(1.0)
    assert boxes_overlap(a, OrientedBox(np.array([1.5, 0, 0]), np.ones(3), np.eye(3)))
    assert point_box_distance(np.array([[0.0, 0, 4]]), a)[0] == pytest.approx(3.0)


def test_rle_round_trip():
    mask = np.random.default_rng(0).random((13, 7)) > 0.6
    mask[0, 0] = True
    assert np.array_equal(decode_rle(encode_rle(mask)), mask)
    assert sum(encode_rle(mask)["counts"]) == mask.size


def test_projection_of_a_box_straight_ahead():
    # A 1 m cube 4 m ahead of a camera with f = 100 px: it spans 100/4.5 .. 100/3.5 px either side of centre.
    scene = hand_scene([("box", [0, 4, 1], [1, 1, 1], 0.0, False)], [([0, 0, 1], [0, 4, 1])])
    footprint = project_box(scene.frames[0], scene.objects[0].box, near=0.05)
    half = 0.5 * 100 / 3.5
    assert footprint.in_view and footprint.truncation == pytest.approx(0.0)
    np.testing.assert_allclose(footprint.bbox, [80 - half, 60 - half, 80 + half, 60 + half], atol=1e-3)


def test_index_occlusion_truncation_and_points():
    scene = hand_scene([("cabinet", [0, 3, 1], [1, 0.4, 2], 0.0, False),     # in front, hides half of the sofa
                        ("sofa", [0.9, 5, 1], [1, 1, 2], 0.0, False),
                        ("lamp", [3.5, 4, 1], [0.5, 0.5, 2], 0.0, False)],   # at the right edge of the image
                       [([0, 0, 1], [0, 4, 1])])
    index = build_object_frame_index(scene, IndexConfig(min_visible_pixels=20, max_truncation=0.6))
    cabinet, sofa, lamp = (index.records[str(i), 0] for i in (1, 2, 3))
    assert cabinet.visible and cabinet.occlusion < 0.05 and cabinet.truncation == pytest.approx(0.0)
    assert 0.3 < sofa.occlusion < 0.7
    assert lamp.truncation > 0.2
    # Depth statistics and the partial point cloud of the cabinet's visible face at y = 2.8.
    assert cabinet.depth_stats[0] == pytest.approx(2.8, abs=1e-3)
    assert cabinet.points_centroid[1] == pytest.approx(2.8, abs=1e-3)
    np.testing.assert_allclose(cabinet.center_camera, [0, 0, 3], atol=1e-9)
    assert index_table(index).num_rows == 3


def test_depth_only_refinement_matches_instance_masks():
    scene = hand_scene([("cabinet", [0, 3, 1], [1, 0.4, 2], 0.0, False), ("sofa", [0.5, 5, 1], [1, 1, 2], 0.0, False)],
                       [([0, 0, 1], [0, 4, 1])])
    with_masks = build_object_frame_index(scene)
    scene.frames[0].instances = None
    depth_only = build_object_frame_index(scene)
    for key, record in with_masks.records.items():
        assert abs(depth_only.records[key].visible_pixels - record.visible_pixels) <= 0.02 * record.visible_pixels + 5


def test_back_projection_inverts_a_skewed_pinhole():
    """Tilt-shift cameras (Hypersim) give K a skew term; back-projection must undo K exactly, skew included."""
    from openspatial.projection import back_project_pixels, camera_to_pixels
    from openspatial.scene import Frame

    pose = np.eye(4)
    pose[:3, 3] = [1.0, 2.0, 3.0]
    frame = Frame("f", 64, 48, np.array([[50.0, 3.0, 30.0], [0, 55.0, 20.0], [0, 0, 1]]), pose)
    frame.depth = np.full((48, 64), 2.5, np.float32)
    rows, cols = np.array([0, 10, 47]), np.array([5, 40, 63])
    world = back_project_pixels(frame, rows, cols)
    camera = world - pose[:3, 3]
    np.testing.assert_allclose(camera[:, 2], 2.5)
    np.testing.assert_allclose(camera_to_pixels(frame, camera), np.column_stack([cols, rows]) + 0.5, atol=1e-9)
