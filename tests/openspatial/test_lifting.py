"""3D lifting: exact on clean data for fully observed boxes, accurate under noise, id switches rejected.

The accuracy floors sit between what the lifting reaches now and what the earlier version (per-axis MAD outlier
removal, uniform erosion, 3% percentile extents) reached on the same seeds, so a return to it fails them."""

from __future__ import annotations

import numpy as np
import pytest

from data_engine.conventions import box_from_yaw, yaw_of
from openspatial.lifting import (LiftingConfig, box_entry_depth, denoised_depth, fit_gravity_aligned_box,
                                 fuse_faces_across_views, gravity_aligned_iou, lift_tracks, trusted_pixels)
from openspatial.noise import ObservationNoise, noisy_frames
from openspatial.procedural import ProceduralConfig, generate_scene
from openspatial.projection import project_box

from tests.openspatial.conftest import hand_scene

# A video tracker's errors: the default noise model with ids kept across frames and no missed detections.
TRACKER_NOISE = ObservationNoise(shuffle_ids=False, missed_detection_rate=0.0)


def noisy_observations(frames, seed: int):
    categories = {int(i): "object" for frame in frames for i in np.unique(frame.instances) if i}
    return noisy_frames(frames, categories, TRACKER_NOISE, seed)[0]


def test_gravity_aligned_iou_hand_cases():
    a = box_from_yaw([0, 0, 0.5], [2, 2, 1], 0.0)
    assert gravity_aligned_iou(a, a) == pytest.approx(1.0)
    # Shifted by half its width along x: overlap 1 x 2 x 1 = 2 of union 4 + 4 - 2 = 6.
    assert gravity_aligned_iou(a, box_from_yaw([1, 0, 0.5], [2, 2, 1], 0.0)) == pytest.approx(1 / 3)
    # A square rotated by 90 degrees is the same box.
    assert gravity_aligned_iou(a, box_from_yaw([0, 0, 0.5], [2, 2, 1], np.pi / 2)) == pytest.approx(1.0)


def test_box_fit_recovers_a_densely_sampled_box():
    box = box_from_yaw([1, 2, 0.4], [1.2, 0.6, 0.8], 0.6)
    local = np.random.default_rng(0).uniform(-0.5, 0.5, (5000, 3)) * box.extents
    fitted = fit_gravity_aligned_box(box.center + local @ box.rotation.T, percentile=0.0)
    assert gravity_aligned_iou(fitted, box) > 0.97


def test_box_fit_keeps_a_side_seen_at_a_grazing_angle():
    """A face seen head-on gives thousands of points, the side beside it a few hundred; the side alone carries
    the box's depth, so the extent trim must not cut it away (a 3% trim by count loses half of it), and the
    L-shaped footprint must give the sides' heading (the minimum-area rectangle ties it with the diagonal's)."""
    rng = np.random.default_rng(1)
    front = np.column_stack([np.zeros(5000), rng.uniform(0, 1.0, 5000), rng.uniform(0, 0.8, 5000)])
    side = np.column_stack([rng.uniform(0, 0.5, 300), np.ones(300), rng.uniform(0, 0.8, 300)])
    fitted = fit_gravity_aligned_box(np.concatenate([front, side]), LiftingConfig().extent_percentile)
    np.testing.assert_allclose(np.sort(fitted.extents), [0.5, 0.8, 1.0], rtol=0.1)
    assert min(yaw_of(fitted.rotation) % (np.pi / 2), -yaw_of(fitted.rotation) % (np.pi / 2)) < np.radians(3)


def test_trusted_pixels_drop_mask_edges_and_the_far_side_of_depth_jumps():
    # A 6 x 6 object at 2 m in front of a wall at 3 m; its mask grew by one pixel onto the wall on the left.
    depth = np.full((12, 12), 3.0, np.float32)
    depth[3:9, 3:9] = 2.0
    instances = np.zeros((12, 12), np.int32)
    instances[3:9, 2:9] = 7
    trusted = trusted_pixels(depth, instances, LiftingConfig(mask_edge_pixels=0, depth_edge_pixels=2))
    assert not trusted[5, 2] and not trusted[5, 1]  # the wall caught by the grown mask (and beside it): far side
    assert trusted[5, 3] and trusted[5, 8]  # the object's own rim is the near side: kept
    assert trusted[0, 0]  # wall with nothing nearer around it
    trusted = trusted_pixels(depth, instances, LiftingConfig(mask_edge_pixels=1, depth_edge_pixels=0))
    assert not trusted[5, 8] and not trusted[5, 2] and trusted[5, 5]  # one pixel off every mask edge
    # Median filtering stays inside the mask: a noisy rim keeps its own depth, the interior is smoothed.
    depth[5, 3], depth[5, 6] = 2.2, 2.2
    smoothed = denoised_depth(depth, instances, 5)
    assert smoothed[5, 3] == pytest.approx(2.2) and smoothed[5, 6] == pytest.approx(2.0)


def _scene_views():
    # Three objects seen from four cameras around them, so every box is observed from several sides.
    objects = [("cabinet", [0, 0, 0.5], [0.8, 0.5, 1.0], 0.3, False), ("table", [1.6, 0.4, 0.375], [1.0, 0.7, 0.75], -0.4, False),
               ("lamp", [-1.2, 1.0, 0.7], [0.3, 0.3, 1.4], 0.0, False)]
    cameras = [([x, y, 1.6], [0.2, 0.4, 0.5]) for x, y in ((3.5, -2.5), (-3.0, -2.5), (-2.5, 3.0), (3.5, 3.0))]
    return hand_scene(objects, cameras, width=320, height=240)


def test_lifting_is_exact_on_clean_views_and_accurate_under_noise():
    scene = _scene_views()
    truth = {o.instance_id: o.box for o in scene.objects}
    categories = {o.instance_id: o.category for o in scene.objects}
    clean = lift_tracks(scene.frames, categories, LiftingConfig(extent_percentile=0.0))
    assert all(r.reject_reason is None for r in clean)
    # One mask-edge pixel is 4-5 cm at this resolution: the clean boxes lose about that much per side.
    assert min(gravity_aligned_iou(r.box, truth[r.track_id]) for r in clean) > 0.9
    noisy = [r for seed in range(4) for r in lift_tracks(noisy_observations(scene.frames, seed),
                                                          categories)]
    assert sum(r.reject_reason is not None for r in noisy) <= 2
    # Mean IoU was 0.63 in the first version, 0.67 after it under masks that grew into the background only;
    # 0.648 under the noise model of openspatial/noise.py (masks that grow into neighbouring objects too).
    assert np.mean([gravity_aligned_iou(r.box, truth[r.track_id]) for r in noisy]) > 0.62


def test_a_bottom_no_frame_shows_is_lowered_to_the_floor():
    """Cameras at 1.6 m looking up: a 1.4 m lamp shows only its top, cut off by the lower image border in every
    frame, so its box comes down to the floor; a box hanging at 1.85-2.15 m shows its bottom edge and stays."""
    objects = [("lamp", [0, 0, 0.7], [0.3, 0.3, 1.4], 0.0, False),
               ("box", [0.3, 0.4, 2.0], [0.3, 0.3, 0.3], 0.3, False)]
    scene = hand_scene(objects, [([x, y, 1.6], [0.0, 0.0, 2.0]) for x, y in ((1.5, -0.6), (-1.4, -0.7), (0.3, 1.5))])
    assert all(np.any(frame.instances[-1] == 1) for frame in scene.frames)  # the lamp runs out of every image
    truth = {o.instance_id: o.box for o in scene.objects}
    lifted = {r.track_id: r.box for r in lift_tracks(scene.frames, {1: "lamp", 2: "box"})}
    assert lifted[1].center[2] - lifted[1].extents[2] / 2 == pytest.approx(0.0, abs=0.02)
    assert gravity_aligned_iou(lifted[1], truth[1]) > 0.9 and gravity_aligned_iou(lifted[2], truth[2]) > 0.85
    without = {r.track_id: r.box
               for r in lift_tracks(scene.frames, {1: "lamp"}, LiftingConfig(extend_hidden_bottoms=False))}
    assert without[1].center[2] - without[1].extents[2] / 2 > 1.0  # only the visible top part


def test_an_id_switch_fails_cycle_consistency():
    scene = _scene_views()
    # The tracker swaps the cabinet's and the table's ids in two of the four frames.
    for frame in scene.frames[2:]:
        cabinet, table = frame.instances == 1, frame.instances == 2
        frame.instances[cabinet], frame.instances[table] = 2, 1
    results = {r.track_id: r for r in lift_tracks(scene.frames, {1: "cabinet", 2: "table", 3: "lamp"})}
    assert results[1].reject_reason == "cycle_inconsistent" and results[2].reject_reason == "cycle_inconsistent"
    assert "views with mask IoU" in results[1].reject_detail
    assert results[3].reject_reason is None


def test_lifting_on_procedural_scenes_under_noise():
    """Ordinary camera paths see most objects from one side only; the partial boxes still overlap the truth."""
    ious = []
    for number in range(4):
        scene = generate_scene(21, number, ProceduralConfig(width=320, height=240, frames=6, steep_view_fraction=0))
        frames = noisy_observations(scene.frames, seed=number)
        truth = {o.instance_id: o.box for o in scene.objects}
        for result in lift_tracks(frames, {o.instance_id: o.category for o in scene.objects}):
            if result.reject_reason is None:
                ious.append(gravity_aligned_iou(result.box, truth[result.track_id]))
    # Mean / median were 0.37 / 0.40 in the first version, 0.53 / 0.49 after it under masks that grew into the
    # background only; masks that grow into NEIGHBOURING objects (the noise model of openspatial/noise.py) take
    # them to 0.41 / 0.39 (0.53 / 0.63 with exact mask boundaries on the same paths).
    assert len(ious) >= 10 and np.mean(ious) > 0.38 and np.median(ious) > 0.35


def test_box_entry_depth_matches_the_rendered_depth():
    """The renderer ray-casts the same boxes: every object pixel's depth is where its pixel ray enters the box."""
    scene = _scene_views()
    for frame in scene.frames:
        for obj in scene.objects:
            rows, cols = np.nonzero(frame.instances == obj.instance_id)
            np.testing.assert_allclose(box_entry_depth(frame, obj.box, rows, cols), frame.depth[rows, cols], atol=1e-3)
    frame = scene.frames[0]
    assert np.all(np.isinf(box_entry_depth(frame, scene.objects[0].box, np.array([0]), np.array([0]))))  # misses


def test_view_agreement_leaves_out_what_an_occluder_hides():
    """In the first view the lamp stands behind the cabinet: its true box projects onto the cabinet as well,
    where the mask cannot show it (the whole footprint agrees with the mask at IoU 0.35 there). Left out, every
    view of every box lifted from exact masks agrees at 0.9 or more."""
    scene = _scene_views()
    lamp = scene.objects[2]
    frame = scene.frames[0]
    footprint = project_box(frame, lamp.box, 0.05).mask
    mask = frame.instances == lamp.instance_id
    assert np.count_nonzero(footprint & mask) / np.count_nonzero(footprint | mask) < 0.5  # really occluded
    lifted = lift_tracks(scene.frames, {o.instance_id: o.category for o in scene.objects},
                         LiftingConfig(extent_percentile=0.0))
    assert min(iou for r in lifted for iou in r.view_ious.values()) >= 0.9, [r.view_ious for r in lifted]


def _views_of_box(box, cameras, offsets, keep=lambda local: np.ones(len(local), bool)):
    """Per view: points on the faces the camera sees (front-facing), shifted by that view's offset (its pose
    and depth error); `keep` (on box-local coordinates) cuts a view down to a partial one."""
    grid = np.linspace(-0.5, 0.5, 15)
    u, v = (a.ravel() for a in np.meshgrid(grid, grid))
    clouds = []
    for camera, offset in zip(cameras, offsets):
        local_camera = (camera - box.center) @ box.rotation
        faces = []
        for axis in range(3):
            for side in (-0.5, 0.5):
                if (local_camera[axis] - side * box.extents[axis]) * side <= 0:
                    continue  # back-facing
                local = np.zeros((u.size, 3))
                local[:, axis] = side
                local[:, [a for a in range(3) if a != axis]] = np.column_stack([u, v])
                faces.append(local * box.extents)
        local = np.concatenate(faces)
        clouds.append(box.center + local[keep(local)] @ box.rotation.T + offset)
    return clouds


def test_sides_move_to_the_median_view_not_the_worst():
    """A 16 x 18 cm vase seen from eight cameras around it, every view shifted by its own error (3 cm per
    horizontal axis: the default noise's pose and depth-scale errors at 2.5 m): the merged cloud's extremes come
    from the views that erred outwards (boxes over twice the volume); the per-view medians put the sides back."""
    box = box_from_yaw([0.5, -0.2, 0.95], [0.16, 0.18, 0.3], 0.3)
    angles = np.radians(np.arange(0, 360, 45) + 10)
    cameras = np.column_stack([0.5 + 2.5 * np.cos(angles), -0.2 + 2.5 * np.sin(angles), np.full(8, 1.5)])
    merged_ious, fused_ious, merged_volumes, fused_volumes = [], [], [], []
    for seed in range(10):
        clouds = _views_of_box(box, cameras, np.random.default_rng(seed).normal(0, 0.03, (8, 3)) * [1, 1, 0.3])
        merged = fit_gravity_aligned_box(np.concatenate(clouds), 0.5)
        fused = fuse_faces_across_views(merged, clouds, cameras, 2.0, 20, 0.1)
        assert np.all(fused.extents <= merged.extents + 1e-9)
        merged_ious.append(gravity_aligned_iou(merged, box))
        fused_ious.append(gravity_aligned_iou(fused, box))
        merged_volumes.append(merged.volume / box.volume)
        fused_volumes.append(fused.volume / box.volume)
    assert np.mean(merged_ious) < 0.5 and np.mean(merged_volumes) > 2.0
    assert np.mean(fused_ious) > 0.65 and np.mean(fused_volumes) < 1.3
    assert all(f > m for f, m in zip(fused_ious, merged_ious))


def test_views_that_saw_a_side_only_partly_do_not_pull_it_in():
    """A cabinet whose +x side only one view shows whole: two views facing that side are cut off half way (an
    image border), so their extremes lie 40 cm inside; the band keeps them out of the median."""
    box = box_from_yaw([0.0, 0.0, 0.5], [0.8, 0.5, 1.0], 0.0)
    cameras = np.array([[3.0, 0.0, 1.5], [2.5, 1.5, 1.5], [2.5, -1.5, 1.5], [-3.0, 0.5, 1.5], [0.0, 3.0, 1.5]])
    clouds = [*_views_of_box(box, cameras[:1], np.zeros((1, 3))),
              *_views_of_box(box, cameras[1:3], np.zeros((2, 3)), keep=lambda local: local[:, 0] < 0.0),
              *_views_of_box(box, cameras[3:], np.zeros((2, 3)))]
    merged = fit_gravity_aligned_box(np.concatenate(clouds), 0.5)
    fused = fuse_faces_across_views(merged, clouds, cameras, 2.0, 20, 0.1)
    assert gravity_aligned_iou(fused, box) > 0.95
    assert gravity_aligned_iou(fuse_faces_across_views(merged, clouds, cameras, 2.0, 20, 1.0), box) < 0.8
