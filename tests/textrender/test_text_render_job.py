"""The text-rendering jobs as `make text-render` runs them (pipelines/jobs/text_render.yaml and
text_edit.yaml) on local Ray, and layout blueprints from prompts through a captioning backend."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from data_engine.captioning.ocr_check import quoted_spans
from data_engine.executor import run_job
from data_engine.job import StageSpec
from data_engine.readers import row_id
from data_engine.schemas import CAPTION
from data_engine.shards import iter_shards
from data_engine.stage_runner import apply_stage
from data_engine.textrender.chromium import CHROMIUM_PATH
from pipelines.jobfile import JOBS_DIR, load_job

pytestmark = pytest.mark.skipif(not Path(CHROMIUM_PATH).exists(), reason=f"{CHROMIUM_PATH} missing (make system-deps)")


def _rows(directory: Path) -> list[dict]:
    return [row for _, table in iter_shards(directory) for row in table.to_pylist()]


def test_text_render_and_edit_jobs(ray_local, tmp_path):
    manifest = run_job(load_job(JOBS_DIR / "text_render.yaml", ["input=procedural://4?seed=3",
                                                                 f"output={tmp_path / 'images'}"]), progress=False)
    assert manifest["schema"]["name"] == "caption" and manifest["rows_written"] == 4
    rows = _rows(tmp_path / "images")
    assert {r["reject_reason"] for r in rows} <= {None, "ocr_mismatch", "blank_block", "text_overflow", "missing_glyphs"}
    assert any(r["reject_reason"] is None for r in rows)
    for row in rows:
        if row["reject_stage"] not in (None, "verify_rendered_text"):
            continue
        assert row["sha256"] == hashlib.sha256(row["image_bytes"]).hexdigest() and row["image_format"] == "png"
        blocks = json.loads(row["text_blocks"])
        captions = dict(row["captions"])
        assert sorted(quoted_spans(captions["long/en"])) == sorted(b["text"] for b in blocks)
        assert len(row["block_cer"]) == len(blocks) == len(row["ocr_block_texts"]) == len(row["block_ink"])
        # The decision, recomputed from the stored scores and the job's thresholds.
        misread = any(b["size_px"] >= 32 and rate > 0.05 for b, rate in zip(blocks, row["block_cer"]))
        blank = any(ink < 0.01 for ink in row["block_ink"])
        assert row["reject_reason"] == ("blank_block" if blank else "ocr_mismatch" if misread else None)

    edits = run_job(load_job(JOBS_DIR / "text_edit.yaml", ["input=procedural://2?seed=3",
                                                           f"output={tmp_path / 'edits'}"]), progress=False)
    assert edits["schema"]["name"] == "edit_triplet" and edits["rows_accepted"] == 2
    for row in _rows(tmp_path / "edits"):
        metadata = json.loads(row["metadata"])
        assert row["instruction"] == f'Replace "{metadata["old_text"]}" with "{metadata["new_text"]}"'
        assert row["source_image"]["sha256"] != row["target_image"]["sha256"]


def test_blueprints_from_prompts_record_invalid_model_output(tmp_path):
    """The tiny random model cannot write a layout: every row says layout_invalid with what it wrote; a row
    without the prompt caption says layout_source_missing."""
    rows = [{"id": row_id("t", str(i)), "source_dataset": "t", "upstream_id": str(i), "license": "CC0",
             "captions": [("short/en", "A coffee shop poster that says OPEN")] if i else []} for i in range(3)]
    table = pa.Table.from_pylist(rows, schema=CAPTION.arrow())
    spec = StageSpec(op="generate_text_blueprint", config={"backend": {"kind": "transformers", "model": "tiny:qwen3vl",
                                                                       "temperature": 1.0}, "max_new_tokens": 16})
    stage = spec.build()
    stage.preflight()
    stage.setup()
    out, stats = apply_stage(stage, table, batch_size=4)
    reasons = out.column("reject_reason").to_pylist()
    assert reasons == ["layout_source_missing", "layout_invalid", "layout_invalid"]
    assert all(detail for detail in out.column("reject_detail").to_pylist())
    assert pc.all(pc.is_null(out.column("blueprint"))).as_py()
    assert "Do not add text the description does not ask for" in stage.prompt("x")
    with pytest.raises(ValueError, match="source: 'short' must end in /<language>"):
        StageSpec(op="generate_text_blueprint", config={"source": "short"})
