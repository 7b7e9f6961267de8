"""redecide over a hand-labelled job output (no Ray): decisions read from stored scores only, repeatable, the
dedup decision rerun over the new decisions with the keeper chosen by quality score."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from data_engine.executor import output_schema
from data_engine.job import parse_job_config
from data_engine.output_dir import build_manifest, write_manifest
from data_engine.redecide import UNPROCESSED, recount_stats, redecide
from data_engine.shards import MANIFEST_NAME, ShardDirError, iter_shards, write_shard

JOB = {"name": "curate_test", "input": "in", "output": "out", "schema": "image_sample",
       "stages": [{"op": "decode_image", "config": {"min_side": 128}},
                  {"op": "border_detect", "name": "border", "config": {"max_border_fraction": 0.04}},
                  {"op": "aesthetic", "config": {"min_score": 4.6}},
                  {"op": "dedup", "config": {"near_duplicate_similarity": 0.9}}]}
HASH = "0123456789abcdef"
NEAR_HASH = "0123456789abcdec"  # 2 of 64 bits differ: cosine 0.9375
OTHER_HASH = "fedcba9876543210"
DECODED = {"source_format": "JPEG", "brightness": 100.0}
NO_BORDER = {"border_top": 0.0, "border_bottom": 0.0, "border_left": 0.0, "border_right": 0.0}


def scored(aesthetic: float) -> dict:
    return {"aesthetic_score": aesthetic, "aesthetic_status": "scored"}


# What the job wrote, hand-labelled: each row's scores up to the stage that rejected it, and its decision.
# The dedup keepers are the better aesthetic score although they have fewer pixels ("hq") or the larger id.
JOB_ROWS = [
    {"id": "small", "width": 100, "height": 90, **DECODED, "reject_reason": "too_small", "reject_stage": "decode_image"},
    {"id": "broken", "reject_reason": "truncated", "reject_stage": "decode_image", "reject_detail": "cut at 2000 bytes"},
    {"id": "framed", "width": 400, "height": 300, **DECODED, **NO_BORDER, "border_top": 0.1,
     "reject_reason": "border", "reject_stage": "border"},
    {"id": "ugly", "width": 400, "height": 300, **DECODED, **NO_BORDER, **scored(3.0),
     "reject_reason": "low_aesthetic", "reject_stage": "aesthetic"},
    {"id": "hq", "width": 400, "height": 300, **DECODED, **NO_BORDER, "border_left": 0.03, **scored(6.0),
     "md5": "a", "phash": HASH, "semantic_dedup": "not_run"},
    {"id": "lq", "width": 800, "height": 600, **DECODED, **NO_BORDER, **scored(5.0), "md5": "b", "phash": NEAR_HASH,
     "semantic_dedup": "not_run", "duplicate_of": "hq", "duplicate_kind": "near", "duplicate_similarity": 0.9375,
     "reject_reason": "near_duplicate", "reject_stage": "dedup"},
    {"id": "z-copy", "width": 500, "height": 500, **DECODED, **NO_BORDER, **scored(5.5), "md5": "c", "phash": OTHER_HASH,
     "semantic_dedup": "not_run"},
    {"id": "a-copy", "width": 500, "height": 500, **DECODED, **NO_BORDER, **scored(5.2), "md5": "c", "phash": OTHER_HASH,
     "semantic_dedup": "not_run", "duplicate_of": "z-copy", "duplicate_kind": "exact", "duplicate_similarity": 1.0,
     "reject_reason": "exact_duplicate", "reject_stage": "dedup"},
]


def write_output(out: Path, rows: list[dict], job_data: dict = JOB) -> Path:
    """A finished job output holding `rows` (two shards, so duplicates sit in different shards)."""
    job = parse_job_config(job_data | {"output": str(out)})
    stages = [spec.build() for spec in job.stages]
    schema = output_schema(job, stages)
    base = {"source_dataset": "test", "license": "CC0"}
    out.mkdir(parents=True)
    for shard_id in range(2):
        table = pa.Table.from_pylist([base | {"upstream_id": r["id"]} | r for r in rows[shard_id::2]], schema=schema)
        write_shard(out, shard_id, table, recount_stats(table, stages))
    write_manifest(out, build_manifest(job, out, [0, 1], items_count=len(rows), listing_hash="x"))
    return out


def outcomes(out: Path) -> dict[str, tuple]:
    return {row["id"]: (row["reject_stage"], row["reject_reason"], row["duplicate_of"])
            for _, table in iter_shards(out) for row in table.to_pylist()}


def rows(out: Path) -> dict[str, dict]:
    return {row["id"]: row for _, table in iter_shards(out) for row in table.to_pylist()}


JOB_OUTCOMES = {row["id"]: (row.get("reject_stage"), row.get("reject_reason"), row.get("duplicate_of"))
                for row in JOB_ROWS}


@pytest.fixture
def output(tmp_path: Path) -> Path:
    return write_output(tmp_path / "out", JOB_ROWS)


def test_the_jobs_thresholds_give_the_jobs_result(output):
    written = rows(output)
    redecide(output, {})
    assert outcomes(output) == JOB_OUTCOMES  # the keepers are the better aesthetic scores
    assert rows(output) == written
    manifest = json.loads((output / MANIFEST_NAME).read_text())
    assert manifest["rows_accepted"] == 2
    assert manifest["rejects"] == {"decode_image:too_small": 1, "decode_image:truncated": 1, "border:border": 1,
                                   "aesthetic:low_aesthetic": 1, "dedup:near_duplicate": 1,
                                   "dedup:exact_duplicate": 1}


def test_loosening_marks_unscored_rows_and_repeats_exactly(output):
    loose = {"decode_image": {"min_side": 64}, "border": {"max_border_fraction": 0.2}}
    redecide(output, loose)
    once = rows(output)
    assert (once["small"]["reject_stage"], once["small"]["reject_reason"]) == ("border", UNPROCESSED)
    assert "rerun the job" in once["small"]["reject_detail"]
    assert (once["framed"]["reject_stage"], once["framed"]["reject_reason"]) == ("aesthetic", UNPROCESSED)
    assert once["broken"]["reject_reason"] == "truncated"  # not a threshold's reject: stays with its detail
    redecide(output, loose)
    assert rows(output) == once
    redecide(output, {"decode_image": {"min_side": 128}, "border": {"max_border_fraction": 0.04}})
    assert outcomes(output) == JOB_OUTCOMES
    assert rows(output)["broken"]["reject_detail"] == "cut at 2000 bytes"


def test_dedup_follows_the_new_decisions(output):
    # The border floor now rejects the kept "hq" (border 0.03): its near duplicate "lq" is kept instead.
    redecide(output, {"border": {"max_border_fraction": 0.02}})
    now = outcomes(output)
    assert now["hq"] == ("border", "border", None)
    assert now["lq"] == (None, None, None)
    # An aesthetic floor between the exact pair's scores rejects the copy that was the duplicate: it is a low
    # aesthetic reject now, no longer marked as a duplicate.
    redecide(output, {"aesthetic": {"min_score": 5.3}})
    now = outcomes(output)
    assert now["z-copy"] == (None, None, None) and now["a-copy"] == ("aesthetic", "low_aesthetic", None)
    redecide(output, {"border": {"max_border_fraction": 0.04}, "aesthetic": {"min_score": 4.6}})
    assert outcomes(output) == JOB_OUTCOMES


def test_keeper_without_quality_scores_is_the_larger_then_the_smaller_id(output):
    redecide(output, {"dedup": {"keep_by": []}})
    now = outcomes(output)
    assert now["lq"] == (None, None, None) and now["hq"] == ("dedup", "near_duplicate", "lq")  # more pixels
    assert now["a-copy"] == (None, None, None) and now["z-copy"] == ("dedup", "exact_duplicate", "a-copy")


def test_repeated_row_ids_are_refused_by_the_global_decision(tmp_path):
    twice = JOB_ROWS + [dict(JOB_ROWS[-1])]
    out = write_output(tmp_path / "out", twice)
    with pytest.raises(ShardDirError, match="repeated: \\['a-copy'\\]"):
        redecide(out, {})


def test_the_redecide_command_refuses_an_output_a_run_holds(output, capsys):
    from data_engine.output_dir import output_lock
    from data_engine.storage import as_location
    from pipelines.cli import main

    written = rows(output)
    with output_lock(as_location(output)):  # a job still running on this directory
        assert main(["redecide", str(output), "--set", "stages.aesthetic.config.min_score=5.6"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {output} is in use by another run (")
    assert rows(output) == written  # nothing rewritten under the running job
    assert main(["redecide", str(output), "--set", "stages.aesthetic.config.min_score=5.6"]) == 0
    decided = outcomes(output)  # 5.6 keeps only hq (6.0); 5.5, 5.2 and 5.0 fall at aesthetic
    assert decided["hq"] == (None, None, None)
    assert {decided[name] for name in ("z-copy", "a-copy", "lq")} == {("aesthetic", "low_aesthetic", None)}
