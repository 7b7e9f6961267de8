"""The curate job end to end on local Ray: decode, border, IQA cascade, dedup pass, redecide, inspect."""

from __future__ import annotations

import io
import json
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
    assert outcomes == {
        "flower.jpg": (None, None),
        "flower_cropped.jpg": ("dedup", "near_duplicate"),  # fewer pixels than flower.jpg
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
            for r in t.select(["id", "upstream_id", "duplicate_of", "duplicate_kind"]).to_pylist()}
    # Byte-identical and the same size: the smaller id is kept.
    pair = sorted([rows["china.jpg"], rows["copy_of_china.jpg"]], key=lambda r: r["id"])
    assert (pair[0]["duplicate_of"], pair[1]["duplicate_of"]) == (None, pair[0]["id"])
    assert rows["flower_cropped.jpg"]["duplicate_of"] == rows["flower.jpg"]["id"]
    assert rows["flower.jpg"]["duplicate_of"] is None
    manifest = json.loads((curated / "_manifest.json").read_text())
    assert manifest["rejects"]["dedup:exact_duplicate"] == 1
    assert manifest["rows_accepted"] == 2
    report = inspect_shards(curated, sample_rows=0)
    assert report["rejects"]["iqa:too_dark"] == 1


def test_pass_is_idempotent(curated):
    before = _outcomes(curated)
    dedup_output(curated)
    assert _outcomes(curated) == before


def test_redecide_reapplies_iqa_and_dedup_thresholds(curated):
    redecide(curated, {"iqa": {"dark_brightness": 0.0, "min_brightness": 0.0},
                       "dedup": {"near_duplicate_similarity": 1.0}})
    outcomes = _outcomes(curated)
    assert outcomes["flower_dark.jpg"][1] != "too_dark"
    assert outcomes["flower_cropped.jpg"] == (None, None)  # cosine 0.875 < 1.0
    assert ("dedup", "exact_duplicate") in (outcomes["china.jpg"], outcomes["copy_of_china.jpg"])
    redecide(curated, {"iqa": {"dark_brightness": 20.0, "min_brightness": 40.0},
                       "dedup": {"near_duplicate_similarity": 0.85}})
    outcomes = _outcomes(curated)
    assert outcomes["flower_dark.jpg"] == ("iqa", "too_dark")
    assert outcomes["flower_cropped.jpg"] == ("dedup", "near_duplicate")


def test_dedup_pass_errors_are_one_line(curated, tmp_path, capsys):
    assert dedup_main([str(tmp_path)]) == 2
    assert "no manifest" in capsys.readouterr().err
    with pytest.raises(JobConfigError, match="no stage named 'nope'"):
        dedup_output(curated, "nope")
    with pytest.raises(JobConfigError, match="must be the job's last stage"):
        dedup_output(curated, "iqa")
