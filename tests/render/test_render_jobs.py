"""The multiview and spatial-edit jobs on the runtime (local Ray), checked from the shards they write."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data_engine.executor import run_job
from data_engine.shards import iter_shards
from pipelines.jobfile import JOBS_DIR, load_job
from render.checks import VISIBILITY_REASONS, reprojection_check
from render.client import RenderWorker
from render.images import decode_ref, depth_from_png, grid_shape
from render.multiview import MultiviewSettings, render_multiview_sample
from render.preprocess import SUBJECT_PASS_INDEX, asset_for_item, prepare_asset
from render.procedural import GENERATORS, procedural_item_key
from render.scene import Camera, RenderSettings


def _rows(out):
    return [row for _, table in iter_shards(out) for row in table.to_pylist()]


@pytest.fixture(scope="module")
def multiview_run(render_env_python, ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("multiview") / "shards"
    job = load_job(JOBS_DIR / "multiview.yaml", [
        f"output={out}", "reader.count=3", "reader.shard_rows=2", "stages.render_multiview.config.multiview.width=64",
        "stages.render_multiview.config.multiview.height=64", "stages.render_multiview.config.multiview.n_views=3",
        "stages.render_multiview.config.multiview.render.samples=4",
        # The dense caption from the tiny random Qwen3-VL (noise text, real plumbing); recognisability stays
        # unconfigured, as in the demo job.
        'stages.dense_caption.config.backend={kind: transformers, model: "tiny:qwen3vl", temperature: 1.0, '
        'torch_threads: 1}', "stages.dense_caption.config.max_new_tokens=6"])
    return out, run_job(job, progress=False)


def test_multiview_rows_carry_views_cameras_masks_depth_and_caption(multiview_run, render_worker):
    out, manifest = multiview_run
    rows = _rows(out)
    assert manifest["schema"]["name"] == "multiview_sample" and manifest["rows_written"] == len(rows) == 3
    accepted = [row for row in rows if row["reject_reason"] is None]
    assert accepted, [row["reject_detail"] for row in rows]
    for row in rows:
        if row["reject_reason"] is not None:
            assert row["reject_stage"] == "render_multiview" and row["reject_detail"]
    for row in accepted:
        cameras = json.loads(row["cameras"])
        assert len(row["views"]) == len(cameras) == len(row["masks"]) == len(row["depths"]) == 3
        assert 0 <= row["main_view_index"] < 3
        assert row["asset_category"] == row["upstream_id"].split(":")[1]
        assert row["recognisability"] == "not_checked" and row["recognisability_answer"] is None
        assert row["dense_caption"] and row["dense_caption_error"] is None
        assert row["dense_caption_prompts"].startswith("caption/v1@")
        caption = json.loads(row["structured_caption"])
        assert caption["main_view_index"] == row["main_view_index"]
        assert [d["role"] for d in caption["view_details"]][row["main_view_index"]] == "Main"
        rows_grid, cols_grid = grid_shape(3)
        assert (row["collage"]["width"], row["collage"]["height"]) == (cols_grid * 64 + (cols_grid + 1) * 4,
                                                                        rows_grid * 64 + (rows_grid + 1) * 4)
        # Re-check the geometry from the shard alone: regenerate the asset, reproject with stored cameras.
        prepared = prepare_asset(asset_for_item(row["upstream_id"], None), render_worker, target_extent=None)
        for record, mask_ref, depth_ref in zip(cameras, row["masks"], row["depths"]):
            camera = Camera(**{k: record[k] for k in ("width", "height", "fx", "fy", "cx", "cy")},
                            cam_to_world=tuple(tuple(r) for r in record["cam_to_world"]))
            mask = decode_ref(mask_ref) > 0
            depth = depth_from_png(decode_ref(depth_ref))
            assert np.array_equal(mask, depth > 0)
            # Every surface point lies within the bounding sphere around the point the camera aims at.
            assert record["distance_m"] - prepared.radius - 1e-3 <= depth[mask].min()
            assert depth[mask].max() <= record["distance_m"] + prepared.radius + 1e-3
            index_mask = np.where(mask, SUBJECT_PASS_INDEX, 0).astype(np.uint8)
            check = reprojection_check(prepared.convex_pieces(), camera, index_mask, SUBJECT_PASS_INDEX)
            assert check is not None and check.error_px < 1.0
        for rejection in json.loads(row["rejected_cameras"]):
            assert rejection["reason"] in VISIBILITY_REASONS
            assert "of the subject's silhouette seen" in rejection["detail"]


def test_a_multiview_row_is_the_same_from_another_render_process(render_worker, render_env_python):
    """A rerun, a resume or another node must write the same row: nothing in it may depend on the run (a wall
    time once did, so a submitted job never matched its local run)."""
    settings = MultiviewSettings(n_views=2, width=48, height=48, render=RenderSettings(samples=2))
    asset = asset_for_item(procedural_item_key(next(iter(GENERATORS)), 0), None)
    rows = []
    with RenderWorker(render_env_python) as fresh:
        for worker in (render_worker, fresh):
            prepared = prepare_asset(asset, worker, target_extent=None)
            rows.append(render_multiview_sample(worker, prepared, seed=3, settings=settings))
    assert rows[0] == rows[1]


@pytest.fixture(scope="module")
def edit_run(render_env_python, ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("edit") / "shards"
    job = load_job(JOBS_DIR / "spatial_edit.yaml", [
        f"output={out}", "reader.count=4", "stages.render_spatial_edit.config.spatial_edit.width=64",
        "stages.render_spatial_edit.config.spatial_edit.height=64",
        "stages.render_spatial_edit.config.spatial_edit.render.samples=4"])
    return out, run_job(job, progress=False)


def test_spatial_edit_job_writes_edit_triplets(edit_run):
    out, manifest = edit_run
    rows = _rows(out)
    assert manifest["schema"]["name"] == "edit_triplet" and len(rows) == 4
    accepted = [row for row in rows if row["reject_reason"] is None]
    assert accepted, [row["reject_detail"] for row in rows]
    for row in accepted:
        metadata = json.loads(row["metadata"])
        assert row["instruction"] and row["reference_images"] == []
        assert decode_ref(row["source_image"]).shape == decode_ref(row["target_image"]).shape == (64, 64, 3)
        assert metadata["branch"] in ("object", "camera") and metadata["source_camera"]["fx"] > 0
        assert row["edit_operation"] == f"{metadata['branch']}:{metadata['operation']}"
        assert row["recognisability"] == "not_checked"
        assert row["subject_symmetry"] == metadata["subject_symmetry"] in ("none", "2-fold", "4-fold", "continuous")
    for row in rows:
        if row["reject_reason"] in VISIBILITY_REASONS:  # the cause in words, never a guess
            assert "of the subject's silhouette seen" in row["reject_detail"]
