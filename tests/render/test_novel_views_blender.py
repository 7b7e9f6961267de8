"""Thinking with Novel Views end to end on procedural scenes: the ball asked about is hidden from the first
view (checked on Blender's index mask, not by the reasoner), Blender renders the planned move exactly, and the
scripted reasoner that answers only what it sees goes from chance to 100%."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from data_engine.camera_move import CameraMove
from pipelines.novel_views import (BlenderEditor, OrbitView, hidden_ball_scene, moved, orbit_camera,
                                   run_hidden_ball_benchmark, seen_colours)
from render.client import render_views
from render.scene import RenderSettings

BALL_PASS_INDEX = 3


def test_the_ball_is_hidden_first_and_seen_after_the_move(render_worker) -> None:
    scene, first = hidden_ball_scene("green"), OrbitView(azimuth_deg=10.0, elevation_deg=10.0, distance=4.0)
    after = moved(first, CameraMove("ball", yaw_deg=135.0, zoom="in"))
    assert (after.azimuth_deg, after.distance) == (145.0, 4.0 * 0.7)
    views = render_views(render_worker, scene, [orbit_camera(first), orbit_camera(after)], RenderSettings())
    assert (views[0].index_mask == BALL_PASS_INDEX).sum() == 0
    assert (views[1].index_mask == BALL_PASS_INDEX).sum() > 100
    editor = BlenderEditor(render_worker, {}, RenderSettings())
    novel = editor.render(scene, after)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(novel))), views[1].rgba[..., :3])  # an exact editor
    assert max(seen_colours(novel), key=seen_colours(novel).get) == "green"


def test_accuracy_rises_from_chance_to_all_correct(render_worker, tmp_path: Path) -> None:
    summary = run_hidden_ball_benchmark(tmp_path, scenes=8, seed=3, worker=render_worker)
    assert summary["baseline"]["Overall"]["accuracy"] <= 0.5
    assert summary["novel_views"]["Overall"]["accuracy"] == 1.0
    baseline = summary["baseline"]["Overall"]["accuracy"]
    assert summary["relative_gain"]["Overall"] == (1.0 - baseline) / baseline
    rows = pq.read_table(tmp_path / "steps.parquet").to_pylist()
    assert len(rows) == 8 and all(row["camera_move"] and row["novel_view"] for row in rows)
