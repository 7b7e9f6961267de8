"""Spatial edits: the eight named rotation views, the one instruction template, camera edit metadata."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from render.geometry import NAMED_VIEWS, trs_matrix, yaw_of_camera
from render.multiview import camera_at
from render.preprocess import prepare_asset
from render.procedural import procedural_asset
from render.client import render_views
from render.images import decode_ref
from render.scene import Material, Primitive, PrimitivesAsset, RenderSettings, RenderScene
from render.spatial_edit import SpatialEditSettings, instruction, render_edit_triplet, turn_to_view


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
    else:
        assert all(t.endswith("。") and "椅子" in t for t in texts)
        assert all(t.endswith("场景保持静止。") for t in texts[4:])


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
