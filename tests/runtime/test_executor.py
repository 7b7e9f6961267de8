"""run_job end to end on local Ray over the generated demo corpus, checked against its ground-truth labels."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_engine.demo_corpus import generate_demo_corpus
from data_engine.executor import run_job
from data_engine.redecide import redecide
from data_engine.shards import ShardDirError, iter_shards, read_manifest
from pipelines.jobfile import JOBS_DIR, load_job


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    generate_demo_corpus(root, n_procedural=12, seed=3)
    return root


def demo_job(corpus: Path, out: Path, *overrides: str):
    return load_job(JOBS_DIR / "demo.yaml", [f"input={corpus}", f"output={out}", "reader.shard_rows=8", *overrides])


def all_rows(out: Path) -> dict[str, dict]:
    rows = {}
    for _, table in iter_shards(out):
        for row in table.to_pylist():
            assert row["id"] not in rows, "duplicated row"
            rows[row["id"]] = row
    return rows


@pytest.fixture(scope="module")
def demo_run(ray_local, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "images"
    manifest = run_job(demo_job(corpus, out), progress=False)
    return out, manifest


def test_every_input_file_is_one_row_with_the_labelled_outcome(corpus, demo_run):
    out, manifest = demo_run
    labels = json.loads((corpus / "labels.json").read_text())
    rows = {row["upstream_id"]: row for row in all_rows(out).values()}
    assert set(rows) == {entry["path"] for entry in labels["files"]}
    for entry in labels["files"]:
        row = rows[entry["path"]]
        if entry["expected"] == "ok":
            assert row["reject_stage"] in (None, "decode_image"), (entry, row["reject_reason"])
            assert row["reject_reason"] in (None, "too_small", "aspect_ratio", "too_dark"), entry
            assert row["width"] and row["height"] and len(row["sha256"]) == 64
        else:
            assert (row["reject_stage"], row["reject_reason"]) == ("decode_image", entry["expected"]), entry
            assert row["image_bytes"] is None
    assert manifest["rows_in"] == manifest["rows_written"] == len(labels["files"])


def test_thresholds_follow_the_scores(demo_run):
    out, _ = demo_run
    for row in all_rows(out).values():
        if row["reject_stage"] == "read" or row["width"] is None:
            continue
        too_small = min(row["width"], row["height"]) <= 128
        assert (row["reject_reason"] == "too_small") == too_small, row["upstream_id"]
        if not too_small and row["reject_reason"] is None:
            assert row["brightness"] >= 12.0


def test_manifest_counts_agree_with_shards(demo_run):
    out, manifest = demo_run
    rows = all_rows(out)
    rejected = [r for r in rows.values() if r["reject_reason"] is not None]
    assert manifest["rows_accepted"] == len(rows) - len(rejected)
    assert sum(manifest["rejects"].values()) == len(rejected)
    assert [s["name"] for s in manifest["stages"]] == ["read", "decode_image"]
    assert manifest["stages"][1]["rows_in"] == manifest["stages"][0]["rows_out"]
    assert manifest["schema"] == {"name": "image_sample", "version": 1}
    assert len(manifest["config_hash"]) == 64 and manifest["timings"]["wall_seconds"] > 0
    for shard in manifest["shards"]:
        metadata = pq.read_schema(out / shard["file"]).metadata
        assert metadata[b"joyai.schema"] == b"image_sample"


def test_rerun_skips_complete_shards_and_refuses_a_different_job(corpus, demo_run):
    out, manifest = demo_run
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    again = run_job(demo_job(corpus, out), progress=False)
    assert again["timings"]["shards_run"] == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")} == mtimes
    assert again["rejects"] == manifest["rejects"]
    with pytest.raises(ShardDirError, match="config_hash"):
        run_job(demo_job(corpus, out, "stages.0.config.min_side=300"), progress=False)


def test_redecide_reapplies_thresholds_without_rescoring(corpus, demo_run, tmp_path):
    out, _ = demo_run
    copy = tmp_path / "copy"
    run_job(demo_job(corpus, copy), progress=False)
    before = all_rows(copy)
    manifest = redecide(copy, {"decode_image": {"min_side": 400}})
    after = all_rows(copy)
    for row_id, row in after.items():
        old = before[row_id]
        assert row["sharpness"] == old["sharpness"] and row["image_bytes"] == old["image_bytes"]
        if old["reject_reason"] not in ("too_small", "aspect_ratio", "too_dark", None):
            assert row["reject_reason"] == old["reject_reason"]  # read and decode failures are not thresholds
        elif row["width"] is not None and min(row["width"], row["height"]) <= 400:
            assert row["reject_reason"] == "too_small"
    assert manifest["config"]["stages"][0]["config"]["min_side"] == 400
    redecide(copy, {"decode_image": {"min_side": 128}})
    restored = all_rows(copy)
    assert {k: r["reject_reason"] for k, r in restored.items()} == {k: r["reject_reason"] for k, r in before.items()}
    assert read_manifest(copy)["rejects"] == read_manifest(out)["rejects"]


def test_hostile_and_unreadable_inputs_become_rows(ray_local, tmp_path):
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "empty.jpg").write_bytes(b"")
    (root / "notes.png").write_text("<html>not an image</html>")
    secret = tmp_path / "outside.jpg"
    secret.write_bytes(b"\xff\xd8\xff secret")
    os.symlink(secret, root / "escape.jpg")
    (root / "dir.jpg").mkdir()
    out = tmp_path / "out"
    run_job(demo_job(root, out), progress=False)
    reasons = {r["upstream_id"]: (r["reject_stage"], r["reject_reason"]) for r in all_rows(out).values()}
    assert reasons == {
        "sub/empty.jpg": ("decode_image", "empty_file"),
        "notes.png": ("decode_image", "not_an_image"),
        "escape.jpg": ("read", "outside_input_root"),
    }
