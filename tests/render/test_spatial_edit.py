"""Spatial edits: the eight named rotation views, the one instruction template, camera edit metadata, labels
that hold (pitch as applied and worded by what moves, no rotation a symmetric subject hides)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from render.geometry import NAMED_VIEWS, trs_matrix, yaw_of_camera
from render.multiview import camera_at
from render.preprocess import AssetRejected, prepare_asset
from render.procedural import procedural_asset
from render.client import render_views
from render.images import decode_ref
from render.scene import Material, Primitive, PrimitivesAsset, RenderSettings, RenderScene
from render.spatial_edit import SpatialEditSettings, instruction, render_edit_triplet, turn_to_view
from render.symmetry import turn_leaves_unchanged


def _asymmetric_asset() -> PrimitivesAsset:
    """No mirror symmetry: a knob on its left (+x) side and a nose at its front-right."""
    return PrimitivesAsset(name="odd", category="odd", materials={"m": Material()}, parts=(
        Primitive(shape="box", size=(0.4, 0.3, 0.5), location=(0, 0, 0.25), material="m"),
        Primitive(shape="box", size=(0.15, 0.1, 0.1), location=(0.27, 0.0, 0.4), material="m"),
        Primitive(shape="box", size=(0.1, 0.12, 0.1), location=(-0.1, -0.2, 0.1), material="m")))


@pytest.mark.parametrize("language", ["en", "zh"])
def test_one_template_for_every_spatial_edit(language):
    actions = [{"operation": "translate"}, {"operation": "scale", "factor": 1.5}, {"operation": "scale", "factor": 0.6},
               {"operation": "rotate", "target_view": "rear-left"}, {"operation": "yaw", "delta_deg": -45.0},
               {"operation": "pitch", "delta_deg": 15.0}, {"operation": "zoom", "factor": 0.7}]
    texts = [instruction(action, "chair", language) for action in actions]
    assert len(set(texts)) == len(texts)
    if language == "en":
        assert all(t.count(". Keep ") == 1 and t.endswith(".") for t in texts)
        assert texts[3] == "Rotate the chair to show its rear-left view. Keep the camera and the background unchanged."
        # -45: the azimuth falls, clockwise seen from above, so the camera moves to its own left.
        assert texts[4] == "Orbit the camera 45 degrees to the left around the chair. Keep the scene static."
        assert all(t.endswith("Keep the scene static.") for t in texts[4:])
        # A pitch says what moves: the camera goes up its orbit and so looks further down at the subject.
        assert texts[5] == ("Raise the camera 15 degrees around the chair and look down at it more steeply. "
                            "Keep the scene static.")
        assert instruction({"operation": "pitch", "delta_deg": -30.0}, "chair", language).startswith(
            "Lower the camera 30 degrees around the chair and look at it from a flatter angle.")
    else:
        assert all(t.endswith("。") and "椅子" in t for t in texts)
        assert all(t.endswith("场景保持静止。") for t in texts[4:])
        assert texts[5] == "围绕椅子将相机升高15度，更陡地向下俯视它，场景保持静止。"
        assert instruction({"operation": "pitch", "delta_deg": -30.0}, "chair", language).startswith(
            "围绕椅子将相机降低30度，以更平的角度看它")


def test_the_eight_rotation_views_turn_the_object_to_the_named_side(render_worker):
    """Turning the object to view V under a fixed front camera must look exactly like walking the camera to
    V's azimuth around the unturned object (masks compared pixel by pixel)."""
    prepared = prepare_asset(_asymmetric_asset(), render_worker, target_extent=None)
    settings = RenderSettings(samples=1, threads=1)
    front, _ = camera_at(prepared, 0.0, 15.0, 45.0, 1.3, 64, 64)
    turned_scenes, orbit_cameras = [], []
    for view, azimuth in NAMED_VIEWS.items():
        turn = turn_to_view("front", view)
        turn_pose = trs_matrix((0, 0, 0), (0, 0, math.radians(turn)))
        turned_scenes.append(RenderScene(objects=(prepared.instance(extra_pose=turn_pose),)))
        orbit_cameras.append(camera_at(prepared, azimuth, 15.0, 45.0, 1.3, 64, 64)[0])
    orbited = render_views(render_worker, RenderScene(objects=(prepared.instance(),)), orbit_cameras, settings)
    masks = {}
    for (view, _), scene, reference in zip(NAMED_VIEWS.items(), turned_scenes, orbited):
        turned = render_views(render_worker, scene, [front], settings)[0].index_mask > 0
        expected = reference.index_mask > 0
        assert (turned != expected).sum() <= 3, view
        masks[view] = turned
    # And the eight views really differ (the asset has no symmetry that would hide a wrong turn).
    assert len({mask.tobytes() for mask in masks.values()}) == 8
    assert abs(turn_to_view("left", "right")) == pytest.approx(180.0)
    assert turn_to_view("rear", "rear-left") == pytest.approx(45.0)


def test_edit_triplets_record_their_geometry(render_worker):
    prepared = prepare_asset(procedural_asset("sign_crate", 2), render_worker, target_extent=None)
    settings = SpatialEditSettings(width=64, height=64, render=RenderSettings(samples=2, threads=1))
    seen = set()
    for seed in range(6):
        row = render_edit_triplet(render_worker, prepared, seed, settings)
        metadata = json.loads(row["metadata"])
        seen.add(metadata["branch"])
        assert row["instruction"] == metadata["instructions"][metadata["language"]]
        assert row["edit_operation"] == f"{metadata['branch']}:{metadata['operation']}"
        source_cam, target_cam = metadata["source_camera"], metadata["target_camera"]
        target_mask = decode_ref(row["target_mask"]) > 0
        ys, xs = np.nonzero(target_mask)
        assert metadata["target_region_xyxy"] == [xs.min(), ys.min(), xs.max(), ys.max()]
        assert all(check["error_px"] < 1.0 for check in metadata["geometry_checks"])
        if metadata["branch"] == "object":
            assert source_cam == target_cam  # static camera
        elif metadata["operation"] == "yaw":
            centre = prepared.centre
            source_yaw = yaw_of_camera(np.array(source_cam["cam_to_world"])[:3, 3], centre)
            target_yaw = yaw_of_camera(np.array(target_cam["cam_to_world"])[:3, 3], centre)
            assert (target_yaw - source_yaw) % 360 == pytest.approx(metadata["delta_deg"] % 360, abs=1e-6)
            assert ("right" if metadata["delta_deg"] > 0 else "left") in metadata["instructions"]["en"]
    assert seen == {"object", "camera"}


def _elevation_and_gaze(camera_record, centre):
    """Elevation (degrees) of a recorded camera above the subject's centre, and how far down its optical axis
    points (the z of the axis, negative: looking down)."""
    pose = np.array(camera_record["cam_to_world"])
    offset = pose[:3, 3] - centre
    return math.degrees(math.asin(offset[2] / np.linalg.norm(offset))), pose[2, 2]


def test_pitch_pairs_are_labelled_with_the_move_the_cameras_make(render_worker):
    """Source elevations down to 5 degrees with a 15-degree drop asked for: the old code clamped the target at
    0 and still said 15. Measured on the stored poses, every pair moves by exactly its label, and the words
    say which way the camera went and where it then looks."""
    prepared = prepare_asset(procedural_asset("mug", 1), render_worker, target_extent=None)
    settings = SpatialEditSettings(width=32, height=32, camera_branch_fraction=1.0, camera_operations=("pitch",),
                                   pitch_steps_deg=(-15.0, 15.0), source_elevation_deg={"low": 5.0, "high": 20.0},
                                   render=RenderSettings(samples=1, threads=1))
    moves = set()
    for seed in range(4):
        metadata = json.loads(render_edit_triplet(render_worker, prepared, seed, settings)["metadata"])
        source_elevation, source_gaze = _elevation_and_gaze(metadata["source_camera"], prepared.centre)
        target_elevation, target_gaze = _elevation_and_gaze(metadata["target_camera"], prepared.centre)
        assert target_elevation - source_elevation == pytest.approx(metadata["delta_deg"], abs=1e-6)
        assert target_elevation >= 0.0
        raised = metadata["delta_deg"] > 0
        assert (target_gaze < source_gaze) == raised  # a raised camera looks further down
        english, chinese = metadata["instructions"]["en"], metadata["instructions"]["zh"]
        assert english.startswith(f"{'Raise' if raised else 'Lower'} the camera 15 degrees around the mug")
        assert ("升高" if raised else "降低") in chinese and "15度" in chinese
        moves.add(raised)
    assert moves == {True, False}


def _square_crate():
    """A square crate with four feet: 4-fold about its axis, so a quarter turn hides itself."""
    feet = [Primitive(shape="box", size=(0.06, 0.06, 0.05), location=(sx * 0.2, sy * 0.2, 0.025), material="m")
            for sx in (-1, 1) for sy in (-1, 1)]
    return PrimitivesAsset(name="crate", category="crate", materials={"m": Material(base_color=(0.5, 0.3, 0.1))},
                           parts=(Primitive(shape="box", size=(0.5, 0.5, 0.3), location=(0, 0, 0.2), material="m"),
                                  *feet))


@pytest.fixture(scope="module")
def symmetric_subjects(render_worker):
    assets = {"ball": procedural_asset("ball", 0), "bottle": procedural_asset("bottle", 0),
              "table": procedural_asset("table", 3), "crate": _square_crate(), "chair": procedural_asset("chair", 0)}
    return {name: prepare_asset(asset, render_worker, target_extent=None) for name, asset in assets.items()}


def test_the_symmetry_an_asset_carries_is_what_its_renders_show(render_worker, symmetric_subjects):
    """Independent of the measurement: a turn the symmetry says is hidden renders the same image, the next
    45-degree turn a different one."""
    settings = RenderSettings(samples=1, threads=1)
    expected = {"ball": "continuous", "bottle": "continuous", "table": "2-fold", "crate": "4-fold", "chair": "none"}
    for name, prepared in symmetric_subjects.items():
        assert prepared.symmetry == expected[name]
        camera, _ = camera_at(prepared, 20.0, 20.0, 45.0, 1.3, 48, 48)
        hidden = {"continuous": 45.0, "4-fold": 90.0, "2-fold": 180.0, "none": 360.0}[prepared.symmetry]
        shown = [turn for turn in (45.0, 90.0, 135.0, 180.0) if not turn_leaves_unchanged(prepared.symmetry, turn)]
        turns = [0.0, hidden] + shown[:1]
        scenes = [RenderScene(objects=(prepared.instance(extra_pose=trs_matrix((0, 0, 0), (0, 0, math.radians(t)))),))
                  for t in turns]
        views = [render_views(render_worker, scene, [camera], settings)[0] for scene in scenes]
        assert (views[1].index_mask != views[0].index_mask).sum() <= 2, name
        assert np.abs(views[1].rgba.astype(int) - views[0].rgba.astype(int)).max() <= 8, name
        if shown:
            assert (views[2].index_mask != views[0].index_mask).sum() > 10, name


def test_a_rotation_is_emitted_only_where_it_changes_the_render(render_worker, symmetric_subjects):
    """Rotate-only object edits: a subject symmetric under every turn is refused with its reason; for the
    others every emitted target differs from its source (mask and pixels), and the turn is not one the
    subject's symmetry hides."""
    settings = SpatialEditSettings(width=32, height=32, camera_branch_fraction=0.0, object_operations=("rotate",),
                                   render=RenderSettings(samples=1, threads=1))
    for name in ("ball", "bottle"):
        with pytest.raises(AssetRejected, match="continuous symmetry looks the same after every turn") as caught:
            render_edit_triplet(render_worker, symmetric_subjects[name], 0, settings)
        assert caught.value.reason == "symmetric_subject"
    for name in ("table", "crate", "chair"):
        prepared = symmetric_subjects[name]
        for seed in range(5):
            row = render_edit_triplet(render_worker, prepared, seed, settings)
            metadata = json.loads(row["metadata"])
            assert metadata["subject_symmetry"] == row["subject_symmetry"] == prepared.symmetry
            assert not turn_leaves_unchanged(prepared.symmetry, metadata["turn_deg"]), (name, metadata["turn_deg"])
            source_mask, target_mask = decode_ref(row["source_mask"]), decode_ref(row["target_mask"])
            source, target = decode_ref(row["source_image"]), decode_ref(row["target_image"])
            changed = np.abs(source.astype(int) - target.astype(int)).max(axis=2) > 12
            assert (source_mask != target_mask).sum() + changed.sum() >= 8, (name, seed, metadata["instructions"]["en"])
    # A mixed run never turns a ball: its object edits are translations and scalings only.
    mixed = settings.model_copy(update={"object_operations": ("translate", "scale", "rotate")})
    operations = {json.loads(render_edit_triplet(render_worker, symmetric_subjects["ball"], seed, mixed)["metadata"])
                  ["operation"] for seed in range(4)}
    assert operations <= {"translate", "scale"}


def test_thin_subjects_in_a_room_are_judged_on_themselves(render_worker):
    """Procedural lamps as the focus of camera edits: the old central ray grid passed beside the pole of the
    first one and dropped it after six pairs "blocked"; judged on their own pixels all four are kept."""
    settings = SpatialEditSettings(width=64, height=64, camera_branch_fraction=1.0,
                                   render=RenderSettings(samples=1, threads=1))
    for seed in range(4):
        prepared = prepare_asset(procedural_asset("lamp", seed), render_worker, target_extent=None)
        row = render_edit_triplet(render_worker, prepared, seed, settings)
        metadata = json.loads(row["metadata"])
        assert min(metadata["visible_fraction"]) >= settings.min_visible_fraction
        assert metadata["subject_symmetry"] == row["subject_symmetry"] == "continuous"
