"""The scene description, procedural assets, camera maths and captions: all without Blender."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from data_engine.conventions import project_points
from data_engine.readers import InputError
from render.assets import UnsupportedAssetError, asset_bounds, asset_convex_pieces, file_asset
from render.checks import (SilhouetteRays, SubjectVisibility, predicted_silhouette, reprojection_check,
                           silhouette_rays, subject_visibility)
from render.geometry import (NAMED_VIEWS, blender_camera_parameters, look_at_pose, named_view, orbit_eye,
                             yaw_of_camera)
from render.multiview import MultiviewSettings, ViewPlan, camera_at, planned_azimuths, reading_order, structured_caption
from render.pipeline_stages import MultiviewAssetReader, MultiviewAssetsConfig
from render.preprocess import PreparedAsset, prepare_asset
from render.procedural import GENERATORS, UnknownCategoryError, procedural_asset, procedural_room
from render.scene import Camera, Material, Primitive, PrimitivesAsset, RenderScene, matrix_tuple
from render.spatial_edit import SpatialEditSettings, camera_move
from render.symmetry import measure_symmetry, turn_leaves_unchanged


@pytest.mark.parametrize("category", sorted(GENERATORS))
def test_procedural_assets_are_deterministic_grounded_and_centred(category):
    first, again, other = (procedural_asset(category, seed) for seed in (7, 7, 8))
    assert first == again and first != other
    low, high = asset_bounds(first)
    assert low[2] == pytest.approx(0.0, abs=1e-9)  # resting on the floor
    assert abs(low[0] + high[0]) < 0.05 * (high[0] - low[0]) + 0.03  # roughly centred on the z axis
    assert json.loads(first.model_dump_json())["parts"]  # travels to the worker as JSON


def test_some_assets_carry_text_and_unknown_categories_are_named():
    assert any(part.text for part in procedural_asset("sign_crate", 1).parts)
    with pytest.raises(UnknownCategoryError, match="sofa"):
        procedural_asset("sofa", 1)


def test_scene_validation_errors_name_the_problem():
    with pytest.raises(ValidationError, match="undefined materials"):
        PrimitivesAsset(name="a", category="x", parts=(Primitive(shape="box", size=(1, 1, 1), material="m"),),
                        materials={})
    with pytest.raises(ValidationError, match="square pixels"):
        Camera(width=4, height=4, fx=2, fy=3, cx=1.5, cy=1.5, cam_to_world=matrix_tuple(np.eye(4)))
    with pytest.raises(UnsupportedAssetError, match="fbx"):
        file_asset(Path("/x/model.fbx"))


def test_procedural_room_places_furniture_without_overlap():
    objects = procedural_room(3, n_furniture=4)
    names = [o.name for o in objects]
    assert names[:4] == ["floor", "back_wall", "left_wall", "right_wall"]
    furniture = [o for o in objects if o.name.startswith("furniture_")]
    assert furniture and len({o.pass_index for o in objects}) == len(objects)
    RenderScene(objects=tuple(objects))  # unique names


def test_look_at_pose_is_opencv_and_orbit_is_inverted_by_yaw():
    target = np.array([0.2, -0.1, 0.5])
    for azimuth in (0.0, 45.0, 170.0, 300.0):
        eye = orbit_eye(target, azimuth, 20.0, 3.0)
        pose = look_at_pose(eye, target)
        assert np.allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3))
        assert np.allclose(pose[:3, 2], (target - eye) / 3.0)  # +z looks at the target
        assert pose[2, 1] < 0  # image y (down) points away from world up
        assert yaw_of_camera(eye, target) == pytest.approx(azimuth)
        pixels, depth = project_points(target[None], np.array([[100, 0, 63.5], [0, 100, 47.5], [0, 0, 1]]), pose)
        assert np.allclose(pixels, [[63.5, 47.5]]) and depth[0] == pytest.approx(3.0)


def test_eight_named_views_and_which_side_each_camera_sees():
    assert list(NAMED_VIEWS) == ["front", "front-left", "left", "rear-left", "rear", "rear-right", "right",
                                 "front-right"]
    for name, azimuth in NAMED_VIEWS.items():
        assert named_view(azimuth + 10) == name
    # The object faces -y; its own left side is +x, and the camera at azimuth 90 stands on +x.
    assert orbit_eye((0, 0, 0), NAMED_VIEWS["left"], 0, 1)[0] == pytest.approx(1.0)
    assert orbit_eye((0, 0, 0), NAMED_VIEWS["front"], 0, 1)[1] == pytest.approx(-1.0)


def test_blender_camera_parameters_map_the_principal_point_to_shifts():
    centred = blender_camera_parameters(128, 96, 100.0, 63.5, 47.5)
    assert centred["shift_x"] == centred["shift_y"] == 0.0
    assert centred["lens"] == pytest.approx(100.0 * 36.0 / 128)
    shifted = blender_camera_parameters(128, 96, 100.0, 63.5 - 12.8, 47.5 + 6.4)
    assert shifted["shift_x"] == pytest.approx(0.1) and shifted["shift_y"] == pytest.approx(0.05)


def _prepared_box(size=(0.6, 0.4, 0.8)) -> PreparedAsset:
    asset = PrimitivesAsset(name="box", category="box", materials={"m": Material(color_name="red")},
                            parts=(Primitive(shape="box", size=size, location=(0, 0, size[2] / 2), material="m"),))
    return PreparedAsset(asset=asset, object_to_world=np.eye(4), pieces=asset_convex_pieces(asset),
                         extent=np.array(size), symmetry="none" if size[0] != size[1] else "4-fold")


def test_camera_distance_scales_with_extent_and_keeps_the_bounding_sphere_in_frame():
    prepared = _prepared_box()
    for fov in (30.0, 60.0):
        camera, distance = camera_at(prepared, 30.0, 20.0, fov, 1.0, 128, 96)
        narrow_half = math.atan(48 / camera.fx)
        assert distance == pytest.approx(prepared.radius / math.sin(narrow_half))
        pixels, depth = project_points(prepared.points(), camera.intrinsics(), camera.pose())
        assert (depth > 0).all()
        assert pixels.min() >= -0.5 and pixels[:, 0].max() <= 127.5 and pixels[:, 1].max() <= 95.5
    bigger = _prepared_box((1.2, 0.8, 1.6))
    distances = [camera_at(asset, 0, 0, 40, 1.2, 64, 64)[1] for asset in (prepared, bigger)]
    assert distances[1] == pytest.approx(2 * distances[0])


def test_structured_caption_has_the_five_fields_computed_from_the_cameras():
    prepared = _prepared_box()
    settings = MultiviewSettings(n_views=3)
    azimuths = planned_azimuths(random.Random(0), settings)
    assert abs(((azimuths[0] + 180) % 360) - 180) <= settings.main_azimuth_jitter_deg
    plans = [ViewPlan(camera_at(prepared, a, 15, 45, 1.2, 64, 64)[0], a, 15.0, 2.0, 45.0, 1.0) for a in (0, 120, 240)]
    ordered, main_index = reading_order(plans, random.Random(3))
    assert ordered[main_index] is plans[0]
    caption = structured_caption(prepared, ordered, main_index, settings)
    assert set(caption) == {"subject_summary", "rotation_logic", "main_view_index", "view_details",
                            "layout_description"}
    assert caption["main_view_index"] == main_index
    assert [d["role"] for d in caption["view_details"]].count("Main") == 1
    assert caption["view_details"][main_index]["named_view"] == "front"
    assert {d["named_view"] for d in caption["view_details"]} == {"front", "rear-left", "rear-right"}
    assert "red box" in caption["subject_summary"] and "0.80 m tall" in caption["subject_summary"]
    assert "2x2 grid of 3 sub-images" in caption["layout_description"]
    assert "1 blank slot" in caption["layout_description"]
    assert "+120 deg" in caption["rotation_logic"] or "-120 deg" in caption["rotation_logic"]


def test_visibility_reasons_name_the_cause():
    def visibility(first_hits, reaches, in_frame):
        rays = SilhouetteRays(np.zeros(3), np.zeros((len(first_hits), 3)), np.array(in_frame))
        return subject_visibility(rays, np.array(first_hits), np.array(reaches), 1)

    names = {7: "pillar"}
    clear = visibility([1, 1, 1, 0], [True, True, True, False], [True] * 4)  # one sliver ray misses: not counted
    assert clear.visible_fraction == 1.0 and clear.reject_reason(min_visible_fraction=0.8) is None
    partly = visibility([7, 1, 1, 1], [True] * 4, [True] * 4)
    assert partly.visible_fraction == 0.75 and partly.blockers == {7: 1}
    assert partly.reject_reason(min_visible_fraction=0.8) == "too_little_visible"
    assert partly.describe(names, min_visible_fraction=0.8) == \
        "75% of the subject's silhouette seen (min 80%): 25% hidden behind pillar"
    hidden = visibility([7, 7, 7], [True] * 3, [True] * 3)
    assert hidden.reject_reason(min_visible_fraction=0.8) == "obstructed"
    assert "100% hidden behind pillar" in hidden.describe(names, min_visible_fraction=0.8)
    cut = visibility([1, 1, 1, 1], [True] * 4, [True, False, False, True])  # half of it outside the frame
    assert cut.reject_reason(min_visible_fraction=0.8) == "off_target"
    assert "50% outside the frame" in cut.describe(names, min_visible_fraction=0.8)
    away = visibility([0, 0], [False, False], [True, True])
    assert away.reject_reason(min_visible_fraction=0.8) == "off_target"
    assert SubjectVisibility(0, 0, 0, {}).reject_reason(min_visible_fraction=0.0) == "off_target"


def test_silhouette_rays_sample_a_thin_subject_on_its_own_pixels():
    """A pole 1.5 px wide: every ray passes through its projected outline, and the count stays capped."""
    pole = _prepared_box(size=(0.02, 0.02, 1.0))
    camera, distance = camera_at(pole, 0.0, 0.0, 40.0, 1.2, 96, 96)
    rays = silhouette_rays(pole.convex_pieces(), camera, max_rays=50)
    assert 10 <= len(rays.directions) <= 50 and rays.in_frame.all()
    # Where each ray crosses the plane of the pole's front face (y = -0.01), it is on the face.
    along = (-0.01 - rays.origin[1]) / rays.directions[:, 1]
    hits = rays.origin + along[:, None] * rays.directions
    assert np.all(np.abs(hits[:, 0]) <= 0.01 + 0.5 * distance / camera.fx)
    assert np.all((hits[:, 2] >= -1e-6 - distance / camera.fx) & (hits[:, 2] <= 1.0 + distance / camera.fx))
    # A camera looking past the subject: its silhouette lies beside the frame, every ray marked outside.
    aside = camera.model_copy(update={"cx": camera.cx + 90.0})
    assert not silhouette_rays(pole.convex_pieces(), aside, max_rays=50).in_frame.any()


def _asset(parts, materials=None) -> PrimitivesAsset:
    return PrimitivesAsset(name="a", category="a", parts=tuple(parts),
                           materials=materials or {"m": Material(color_name="red")})


def _legs(half_x, half_y, height=0.6, material="m"):
    return [Primitive(shape="box", size=(0.05, 0.05, height), location=(sx * half_x, sy * half_y, height / 2),
                      material=material) for sx in (-1, 1) for sy in (-1, 1)]


@pytest.mark.parametrize(("category", "expected"), [
    ("table", "2-fold"), ("chair", "none"), ("shelf", "none"), ("lamp", "continuous"), ("mug", "none"),
    ("bottle", "continuous"), ("sign_crate", "none"), ("ball", "continuous")])
def test_procedural_assets_carry_their_symmetry(category, expected):
    """Hand-labelled: what each generator makes, for several seeds."""
    for seed in range(4):
        assert prepare_asset(procedural_asset(category, seed), None, target_extent=None).symmetry == expected


def test_symmetry_comes_from_shape_material_and_text():
    red, blue = Material(color_name="red"), Material(base_color=(0.1, 0.1, 0.8), color_name="blue")
    top = Primitive(shape="box", size=(1.0, 1.0, 0.05), location=(0, 0, 0.6), material="m")
    square = _asset([top] + _legs(0.45, 0.45))
    oblong = _asset([top.model_copy(update={"size": (1.2, 0.8, 0.05)})] + _legs(0.55, 0.35))
    one_blue_leg = _asset([top] + _legs(0.45, 0.45)[:3] + [_legs(0.45, 0.45, material="b")[3]],
                          {"m": red, "b": blue})
    crate = [Primitive(shape="box", size=(0.5, 0.5, 0.4), location=(0, 0, 0.2), material="m")]
    labelled = crate + [Primitive(shape="text", size=(0.4, 0.002, 0.1), location=(0, -0.252, 0.2), material="m",
                                  text="OPEN")]
    off_axis_drum = [Primitive(shape="cylinder", size=(0.3, 0.3, 0.4), location=(0.1, 0, 0.2), material="m")]
    kinds = {name: prepare_asset(asset, None, target_extent=None).symmetry for name, asset in (
        ("square", square), ("oblong", oblong), ("one_blue_leg", one_blue_leg), ("crate", _asset(crate)),
        ("labelled", _asset(labelled)), ("drum", _asset(off_axis_drum)))}
    # The drum is centred by preparation (resting on the z axis), so it turns about its own axis.
    assert kinds == {"square": "4-fold", "oblong": "2-fold", "one_blue_leg": "none", "crate": "4-fold",
                     "labelled": "none", "drum": "continuous"}


def test_measured_symmetry_and_the_turns_it_hides():
    angles = np.radians(np.arange(0, 360, 7.5))
    ring = np.stack([np.cos(angles), np.sin(angles), np.zeros_like(angles)], axis=1)
    rectangle = np.array([[x, y, z] for x in (-2, 2) for y in (-1, 1) for z in (0, 1)], float)
    plus_knob = np.vstack([rectangle, [[2.5, 0.0, 0.5]]])
    unlabelled = np.zeros
    assert measure_symmetry(ring, unlabelled(len(ring)), 1e-6) == "continuous"
    assert measure_symmetry(rectangle, unlabelled(8), 1e-6) == "2-fold"
    four_knobs = np.vstack([rectangle * [0.5, 1, 1], [[1.5, 0, 0.5], [-1.5, 0, 0.5], [0, 1.5, 0.5], [0, -1.5, 0.5]]])
    assert measure_symmetry(four_knobs, unlabelled(12), 1e-6) == "4-fold"
    assert measure_symmetry(four_knobs, np.arange(12) == 8, 1e-6) == "none"  # one knob painted differently
    assert measure_symmetry(plus_knob, unlabelled(9), 1e-6) == "none"
    assert measure_symmetry(rectangle * [1, 2, 1], unlabelled(8), 1e-6) == "4-fold"
    assert turn_leaves_unchanged("2-fold", 180.0) and turn_leaves_unchanged("2-fold", -180.0)
    assert not turn_leaves_unchanged("2-fold", 90.0) and not turn_leaves_unchanged("4-fold", 45.0)
    assert turn_leaves_unchanged("4-fold", 270.0) and turn_leaves_unchanged("continuous", 135.0)
    assert turn_leaves_unchanged("none", 360.0) and not turn_leaves_unchanged("none", 180.0)


def test_a_pitch_step_is_the_elevation_change_the_cameras_make():
    """Never clamped: every drawn step fits between the source elevation and the limits."""
    settings = SpatialEditSettings(camera_operations=("pitch",), pitch_steps_deg=(-15.0, 15.0, 30.0),
                                   source_elevation_deg={"low": 5.0, "high": 50.0},
                                   elevation_limits_deg={"low": 0.0, "high": 60.0})
    steps = set()
    for seed in range(300):
        action, source, target = camera_move(random.Random(seed), settings)
        steps.add(action["delta_deg"])
        assert target[1] - source[1] == pytest.approx(action["delta_deg"], abs=1e-9)
        assert 5.0 <= source[1] <= 50.0 and 0.0 <= target[1] <= 60.0
        assert (source[0], source[2]) == (target[0], target[2])
    assert steps == {-15.0, 15.0, 30.0}
    with pytest.raises(ValidationError, match="pitch step -40"):
        SpatialEditSettings(pitch_steps_deg=(-40.0,), source_elevation_deg={"low": 10.0, "high": 35.0})


def test_reprojection_check_measures_a_silhouette_shift():
    prepared = _prepared_box()
    camera, _ = camera_at(prepared, 30.0, 20.0, 45.0, 1.3, 64, 64)
    predicted = predicted_silhouette(prepared.convex_pieces(), camera)
    pixels, _ = project_points(prepared.points(), camera.intrinsics(), camera.pose())
    ys, xs = np.nonzero(predicted)
    assert abs(xs.min() - pixels[:, 0].min()) <= 1 and abs(xs.max() - pixels[:, 0].max()) <= 1
    index_mask = predicted.astype(np.uint8)
    exact = reprojection_check(prepared.convex_pieces(), camera, index_mask, 1)
    assert exact.error_px == 0.0 and exact.iou == 1.0
    shifted = reprojection_check(prepared.convex_pieces(), camera, np.roll(index_mask, 3, axis=1), 1)
    assert shifted.error_px == pytest.approx(3.0) and shifted.iou < 0.9
    # Pixels of another object are left out of the comparison: an occluder does not count as an error.
    occluded = index_mask.copy()
    occluded[:, : int(xs.mean())][occluded[:, : int(xs.mean())] == 1] = 7
    assert reprojection_check(prepared.convex_pieces(), camera, occluded, 1).error_px < 0.5


def test_asset_reader_lists_procedural_keys_and_asset_files(tmp_path):
    reader = MultiviewAssetReader(MultiviewAssetsConfig(count=3, categories=("mug", "ball")))
    assert reader.list_items("procedural") == ["procedural:ball:00001", "procedural:mug:00000", "procedural:mug:00002"]
    rows = reader.read_items("procedural", ["procedural:mug:00000"]).to_pylist()
    assert rows[0]["upstream_id"] == "procedural:mug:00000" and rows[0]["views"] is None
    (tmp_path / "a").mkdir()
    for name in ("a/chair.glb", "b.obj", "c.ply", "d.blend", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert reader.list_items(str(tmp_path)) == ["a/chair.glb", "b.obj", "c.ply", "d.blend"]
    with pytest.raises(InputError, match="unknown"):
        MultiviewAssetReader(MultiviewAssetsConfig(categories=("sofa",))).list_items("procedural")
