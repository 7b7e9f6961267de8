"""The curate job end to end on local Ray: decode, border, IQA cascade, dedup pass, redecide, inspect."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from data_engine.curation.dedup import dedup_output, main as dedup_main
from data_engine.executor import run_job
from data_engine.job import JobConfigError
from data_engine.redecide import redecide
from data_engine.shards import iter_shards
from pipelines.cli import inspect_shards
from pipelines.jobfile import JOBS_DIR, load_job
from tests.curation.images import with_noise


def _jpeg(rgb: np.ndarray, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, photos) -> Path:
    """Files labelled by construction: (name -> expected reject reason at its stage, None = kept)."""
    root = tmp_path_factory.mktemp("curate_corpus")
    china, flower = photos["china"], photos["flower"]
    letterbox = np.zeros((640, 640, 3), np.uint8)
    letterbox[106:106 + 427] = china
    files = {
        "china.jpg": _jpeg(china),
        "copy_of_china.jpg": _jpeg(china),  # byte-identical: exact duplicate
        "flower.jpg": _jpeg(flower),
        "flower_cropped.jpg": _jpeg(flower[8:-8, 12:-12], 70),  # near duplicate (pHash cosine 0.875)
        "china_letterbox.jpg": _jpeg(letterbox),
        "flower_dark.jpg": _jpeg((flower * 0.06).astype(np.uint8)),
        "china_blurred.jpg": _jpeg(cv2.GaussianBlur(china, (0, 0), 4)),
        "flower_tiny.jpg": _jpeg(cv2.resize(flower, (200, 134))),
        "noise_texture.png": None,
        "broken.jpg": _jpeg(china)[:2000],
    }
    noise = with_noise(np.full((300, 400, 3), 128, np.uint8), 90)
    for name, data in files.items():
        if data is None:
            Image.fromarray(noise).save(root / name)
        else:
            (root / name).write_bytes(data)
    return root


@pytest.fixture(scope="module")
def curated(ray_local, corpus, tmp_path_factory, niqe_params) -> Path:
    out = tmp_path_factory.mktemp("curated") / "out"
    job = load_job(JOBS_DIR / "curate_images.yaml", [f"input={corpus}", f"output={out}", "reader.shard_rows=4"])
    run_job(job, progress=False)
    dedup_output(out)
    return out


def _outcomes(shard_dir: Path) -> dict[str, tuple[str | None, str | None]]:
    outcomes = {}
    for _, table in iter_shards(shard_dir):
        for row in table.select(["upstream_id", "reject_stage", "reject_reason"]).to_pylist():
            outcomes[row["upstream_id"]] = (row["reject_stage"], row["reject_reason"])
    return outcomes


def test_every_file_gets_its_outcome(curated):
    outcomes = _outcomes(curated)
    china_pair = sorted([outcomes.pop("china.jpg"), outcomes.pop("copy_of_china.jpg")], key=str)
    assert china_pair == [("dedup", "exact_duplicate"), (None, None)]
    flower_pair = sorted([outcomes.pop("flower.jpg"), outcomes.pop("flower_cropped.jpg")], key=str)
    assert flower_pair == [("dedup", "near_duplicate"), (None, None)]
    assert outcomes == {
        "china_letterbox.jpg": ("border", "border"),
        "flower_dark.jpg": ("iqa", "too_dark"),
        "china_blurred.jpg": ("iqa", "blurry"),
        "flower_tiny.jpg": ("decode_image", "too_small"),
        "noise_texture.png": ("iqa", "niqe_very_high"),
        "broken.jpg": ("decode_image", "truncated"),
    }


def test_learned_indicators_without_a_model_are_not_scored(curated):
    for _, table in iter_shards(curated):
        for row in table.select(["reject_stage", "musiq", "musiq_status", "clipiqa", "clipiqa_status"]).to_pylist():
            if row["reject_stage"] != "decode_image":
                assert row == {"reject_stage": row["reject_stage"], "musiq": None, "musiq_status": "not_scored",
                               "clipiqa": None, "clipiqa_status": "not_scored"}


def test_duplicates_point_at_the_kept_row_and_the_manifest_counts_them(curated):
    rows = {r["upstream_id"]: r for _, t in iter_shards(curated)
            for r in t.select(["id", "upstream_id", "duplicate_of", "duplicate_kind", "niqe"]).to_pylist()}
    # Byte-identical, so the same scores and size: the smaller id is kept.
    pair = sorted([rows["china.jpg"], rows["copy_of_china.jpg"]], key=lambda r: r["id"])
    assert (pair[0]["duplicate_of"], pair[1]["duplicate_of"]) == (None, pair[0]["id"])
    # Without learned scores the keeper is the copy with the lower (better) NIQE, whatever its size.
    kept, dropped = sorted([rows["flower.jpg"], rows["flower_cropped.jpg"]], key=lambda r: r["niqe"])
    assert (kept["duplicate_of"], dropped["duplicate_of"]) == (None, kept["id"])
    manifest = json.loads((curated / "_manifest.json").read_text())
    assert manifest["rejects"]["dedup:exact_duplicate"] == 1
    assert manifest["rows_accepted"] == 2
    report = inspect_shards(curated, sample_rows=0)
    assert report["rejects"]["iqa:too_dark"] == 1


def test_pass_is_idempotent(curated):
    before = _outcomes(curated)
    dedup_output(curated)
    assert _outcomes(curated) == before


def _rows(shard_dir: Path) -> dict[str, dict]:
    return {row["id"]: row for _, table in iter_shards(shard_dir) for row in table.to_pylist()}


def test_redecide_reapplies_iqa_and_dedup_thresholds(curated):
    job_result = _outcomes(curated)
    redecide(curated, {"iqa": {"dark_brightness": 0.0, "min_brightness": 0.0},
                       "dedup": {"near_duplicate_similarity": 1.0}})
    outcomes = _outcomes(curated)
    assert outcomes["flower_dark.jpg"][1] != "too_dark"
    assert outcomes["flower_cropped.jpg"] == outcomes["flower.jpg"] == (None, None)  # cosine 0.875 < 1.0
    assert ("dedup", "exact_duplicate") in (outcomes["china.jpg"], outcomes["copy_of_china.jpg"])
    redecide(curated, {"iqa": {"dark_brightness": 20.0, "min_brightness": 40.0},
                       "dedup": {"near_duplicate_similarity": 0.85}})
    assert _outcomes(curated) == job_result


def test_redecide_repeated_and_back_gives_the_jobs_result(curated, tmp_path):
    """Tighten, tighten again, return: every row and the manifest's counts are the job's again."""
    copy = tmp_path / "copy"
    shutil.copytree(curated, copy)
    job_rows, job_manifest = _rows(copy), json.loads((copy / "_manifest.json").read_text())
    tight = {"decode_image": {"min_side": 420}, "iqa": {"min_sharpness": 1000.0}}
    redecide(copy, tight)
    once = _rows(copy)
    assert sum(row["reject_reason"] is None for row in once.values()) == 1  # china.jpg (sharp, 640 x 427)
    redecide(copy, tight)
    assert _rows(copy) == once
    redecide(copy, {"decode_image": {"min_side": 256}, "iqa": {"min_sharpness": 40.0}})
    assert _rows(copy) == job_rows
    manifest = json.loads((copy / "_manifest.json").read_text())
    assert (manifest["rejects"], manifest["rows_accepted"]) == (job_manifest["rejects"], job_manifest["rows_accepted"])
    assert manifest["config_hash"] == job_manifest["config_hash"]


def test_dedup_follows_redecide(curated, tmp_path):
    """When the new thresholds reject the kept copy, the other copy is kept instead; and back again."""
    copy = tmp_path / "copy"
    shutil.copytree(curated, copy)
    rows = {row["upstream_id"]: row for row in _rows(copy).values()}
    kept, dropped = sorted([rows["flower.jpg"], rows["flower_cropped.jpg"]], key=lambda r: r["reject_reason"] or "")
    assert kept["reject_reason"] is None and dropped["duplicate_of"] == kept["id"]
    # A sharpness floor between the two copies' stored sharpness rejects the kept one only.
    floor = (kept["iqa_sharpness"] + dropped["iqa_sharpness"]) / 2
    assert kept["iqa_sharpness"] < floor < dropped["iqa_sharpness"]
    redecide(copy, {"iqa": {"min_sharpness": floor}})
    after = _rows(copy)
    assert (after[kept["id"]]["reject_stage"], after[kept["id"]]["reject_reason"]) == ("iqa", "statistics")
    assert (after[dropped["id"]]["reject_reason"], after[dropped["id"]]["duplicate_of"]) == (None, None)
    redecide(copy, {"iqa": {"min_sharpness": 40.0}})
    assert _outcomes(copy) == _outcomes(curated)


def test_dedup_pass_errors_are_one_line(curated, tmp_path, capsys):
    assert dedup_main([str(tmp_path)]) == 2
    assert "no manifest" in capsys.readouterr().err
    with pytest.raises(JobConfigError, match="no stage named 'nope'"):
        dedup_output(curated, "nope")
    with pytest.raises(JobConfigError, match="must be the job's last stage"):
        dedup_output(curated, "iqa")
