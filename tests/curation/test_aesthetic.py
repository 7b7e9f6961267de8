"""The aesthetic scorer slot: the tiny random CLIP + LAION-style head loaded through the configured path."""

from __future__ import annotations

import logging

import pyarrow as pa
import pytest

from data_engine.stage_runner import apply_stage
from data_engine.stages.aesthetic import HEAD_FILE, AestheticConfig, AestheticModelError, AestheticStage
from tests.curation.images import png_bytes, stage_input
from data_engine.model_refs import tiny_model_path


@pytest.fixture(scope="module")
def tiny_model_dir():
    """The random CLIP + LAION head that `make tiny-models` writes, in the layout a real model uses."""
    return tiny_model_path("aesthetic")


def _rows(images) -> pa.Table:
    return stage_input(image_bytes=[png_bytes(im) for im in images])


def test_scores_through_the_configured_path(tiny_model_dir, photos):
    stage = AestheticStage(AestheticConfig(model_path=str(tiny_model_dir), preset="stage1_208p"))
    stage.setup()
    out, _ = apply_stage(stage, _rows([photos["china"], photos["flower"]]), batch_size=2)
    scores = out.column("aesthetic_score").to_pylist()
    assert out.column("aesthetic_status").to_pylist() == ["scored", "scored"]
    assert all(score is not None for score in scores) and scores[0] != scores[1]
    again, _ = apply_stage(stage, _rows([photos["china"]]), batch_size=1)
    assert again.column("aesthetic_score")[0].as_py() == pytest.approx(scores[0], rel=1e-5)
    cut = sorted(scores)[1]
    assert AestheticStage(AestheticConfig(min_score=cut)).decide(out) == [
        None if s >= cut else "low_aesthetic" for s in scores]


def test_without_a_model_nothing_is_invented(photos, caplog):
    stage = AestheticStage(AestheticConfig(preset="stage2_512p"))
    with caplog.at_level(logging.WARNING):
        stage.setup()
    assert "no model_path configured" in caplog.text
    out, _ = apply_stage(stage, _rows([photos["china"]]), batch_size=1)
    assert out.column("aesthetic_score").to_pylist() == [None]
    assert out.column("aesthetic_status").to_pylist() == ["not_scored"]
    assert out.column("reject_reason").to_pylist() == [None]


def test_incomplete_model_dir_names_the_missing_file(tiny_model_dir, tmp_path):
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "config.json").write_text((tiny_model_dir / "clip" / "config.json").read_text())
    with pytest.raises(AestheticModelError, match=HEAD_FILE):
        AestheticStage(AestheticConfig(model_path=str(tmp_path))).setup()


def test_presets():
    assert AestheticConfig(preset="stage1_208p").min_score == 3.0
    assert AestheticConfig(preset="stage3_1024p").min_score == 4.6
