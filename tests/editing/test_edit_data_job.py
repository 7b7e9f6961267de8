"""The edit_data job as `make edit-data` runs it (pipelines/jobs/edit_data.yaml) on hand-written render, text and
video-pair sources, then the edit latent cache over its accepted rows: one triplet schema out, every stage's
columns stored, the balance summary written, and redecide back to the job's thresholds gives the job's rows."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from tests.editing.edit_fixtures import write_spatial_edit_shard, write_text_edit_shard, write_video_pair_shard

from data_engine.executor import run_job
from data_engine.redecide import redecide
from data_engine.shards import iter_shards
from pipelines.jobfile import JOBS_DIR, load_job


def rows_of(directory: Path) -> list[dict]:
    return [row for _, table in iter_shards(directory) for row in table.to_pylist()]


def test_edit_data_job_then_edit_latents(ray_local, tmp_path: Path) -> None:
    write_spatial_edit_shard(tmp_path / "render" / "spatial_edit")
    write_text_edit_shard(tmp_path / "text_render" / "edits")
    write_video_pair_shard(tmp_path / "video_pairs")
    out = tmp_path / "edit_data"
    manifest = run_job(load_job(JOBS_DIR / "edit_data.yaml", [f"input={tmp_path}", f"output={out}"]), progress=False)
    assert manifest["schema"] == {"name": "edit_triplet", "version": 2}
    rows = rows_of(out)
    # the unknown edit operation is rejected at read, before it has labels
    assert Counter(r["source_kind"] for r in rows) == {"spatial_render": 2, "text_render": 1, "video": 3, None: 1}
    reasons = Counter(r["reject_reason"] for r in rows)
    assert reasons["unknown_label"] == 1  # the fixture's unknown edit operation, rejected at read
    reached = [r for r in rows if r["reject_reason"] != "unknown_label"]
    assert all(r["edit_changed_fraction"] is not None and r["refine_status"] is not None for r in reached
               if r["reject_stage"] not in ("edit_change",))
    assert all(r["intent_status"] == "not_checked" for r in reached if r["intent_status"] is not None)
    summary = json.loads((out / "balance_report.json").read_text())
    kept = [r for r in rows if r["reject_reason"] is None]
    assert summary["rows_after"] == len(kept) > 0
    assert all(r["balance_kept"] for r in kept)
    before = [(r["id"], r["reject_reason"]) for r in rows]
    redecide(out, {})
    assert [(r["id"], r["reject_reason"]) for r in rows_of(out)] == before

    latents = tmp_path / "edit_latents"
    cached = run_job(load_job(JOBS_DIR / "cache_edit_latents.yaml", [f"input={out}", f"output={latents}"]),
                     progress=False)
    assert cached["rows_accepted"] == len(kept)
    assert all(r["source_latent"] is not None and r["task_category"] for r in rows_of(latents))
