"""Learned IQA (MUSIQ, CLIP-IQA through pyiqa): tiny random checkpoints from `make tiny-models`, loaded through
the configured path production uses, and their scores judged by the cascade's one decision."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

pytest.importorskip("pyiqa")

from data_engine.curation.learned_iqa import (ARCH_FILE, WEIGHTS_FILE, LearnedIqaModelError,  # noqa: E402
                                              load_learned_iqa)
from data_engine.job import JobConfigError, parse_job_config  # noqa: E402
from data_engine.stage import StageUnavailable  # noqa: E402
from data_engine.stage_runner import apply_stage  # noqa: E402
from data_engine.stages.iqa_cascade import IqaCascadeConfig, IqaCascadeStage, classify_iqa  # noqa: E402
from data_engine.stages.learned_iqa import LearnedIqaConfig, LearnedIqaStage  # noqa: E402
from tests.curation.images import grey, png_bytes, stage_input, with_noise  # noqa: E402
from data_engine.model_refs import tiny_model_path  # noqa: E402

METRICS = ("musiq", "clipiqa")
WORKING_SIDE = 128  # the plumbing is the same at any size; small keeps MUSIQ's ResNet stem cheap


@pytest.fixture(scope="module")
def scorers() -> dict[str, LearnedIqaStage]:
    stages = {}
    for metric in METRICS:
        config = LearnedIqaConfig(metric=metric, model_path=str(tiny_model_path(metric)), working_side=WORKING_SIDE)
        stages[metric] = LearnedIqaStage(config, name=metric)
        stages[metric].preflight()
        stages[metric].setup()
    return stages


@pytest.fixture(scope="module")
def images(photos) -> list:
    return [photos["china"], photos["flower"], with_noise(photos["flower"], 40), grey(photos["china"])]


@pytest.mark.parametrize("metric", METRICS)
def test_scores_through_the_configured_path(scorers, images, metric):
    table = stage_input(image_bytes=[png_bytes(image) for image in images])
    out, stats = apply_stage(scorers[metric], table, batch_size=3)
    scores = out.column(metric).to_pylist()
    assert out.column(f"{metric}_status").to_pylist() == ["scored"] * len(images)
    assert all(score is not None for score in scores) and len(set(scores)) > 1
    assert out.column("reject_reason").to_pylist() == [None] * len(images)  # the cascade decides, not this stage
    assert stats.rows_out == len(images)
    again, _ = apply_stage(scorers[metric], stage_input(image_bytes=[png_bytes(images[1])]), batch_size=1)
    assert again.column(metric)[0].as_py() == pytest.approx(scores[1], rel=1e-5)


def test_without_a_model_nothing_is_invented(photos, caplog):
    stage = LearnedIqaStage(LearnedIqaConfig(metric="clipiqa"), name="clipiqa")
    stage.preflight()
    with caplog.at_level(logging.WARNING):
        stage.setup()
    assert "no model_path configured" in caplog.text
    out, _ = apply_stage(stage, stage_input(image_bytes=[png_bytes(photos["china"])]), batch_size=1)
    assert out.column("clipiqa").to_pylist() == [None]
    assert out.column("clipiqa_status").to_pylist() == ["not_scored"]


def test_model_directory_problems_name_the_file(tmp_path):
    with pytest.raises(StageUnavailable, match="absent is not a directory"):
        LearnedIqaStage(LearnedIqaConfig(metric="musiq", model_path=str(tmp_path / "absent"))).preflight()
    with pytest.raises(LearnedIqaModelError, match=f"{ARCH_FILE} does not exist"):
        load_learned_iqa("musiq", tmp_path)
    with pytest.raises(LearnedIqaModelError, match="holds a 'clipiqa' model, expected 'musiq'"):
        load_learned_iqa("musiq", tiny_model_path("clipiqa"))
    musiq = tmp_path / "musiq"
    shutil.copytree(tiny_model_path("musiq"), musiq)
    arch = json.loads((musiq / ARCH_FILE).read_text())
    (musiq / ARCH_FILE).write_text("{metric: musiq")
    with pytest.raises(LearnedIqaModelError, match=f"{ARCH_FILE}: not JSON"):
        load_learned_iqa("musiq", musiq)
    (musiq / ARCH_FILE).write_text(json.dumps(arch | {"kwargs": arch["kwargs"] | {"hidden_size": 64}}))
    with pytest.raises(LearnedIqaModelError, match="does not fit the architecture"):
        load_learned_iqa("musiq", musiq)
    (musiq / WEIGHTS_FILE).unlink()
    with pytest.raises(StageUnavailable, match=f"musiq.model_path: .*{WEIGHTS_FILE} does not exist"):
        LearnedIqaStage(LearnedIqaConfig(metric="musiq", model_path=str(musiq)), name="musiq").preflight()


@pytest.fixture(scope="module")
def scored(scorers, images, niqe_params):
    """The images through musiq -> clipiqa -> a non-enforcing cascade: every score of every row."""
    cascade = IqaCascadeStage(IqaCascadeConfig(enforce=False), name="iqa")
    cascade.setup()
    table = stage_input(image_bytes=[png_bytes(image) for image in images])
    for stage in (scorers["musiq"], scorers["clipiqa"], cascade):
        table, _ = apply_stage(stage, table, batch_size=4)
    return table.drop_columns(["image_bytes"])


def _statistically_clean(row: dict) -> bool:
    return classify_iqa(row | {"musiq": None, "clipiqa": None}, IqaCascadeConfig()).rule == "accept"


def _thresholds(metric: str, accept_at: float, recover_at: float, recover_min_saturation: float) -> IqaCascadeConfig:
    return IqaCascadeConfig(**{f"{metric}_min": accept_at, f"{metric}_recover_min": recover_at,
                               "recover_min_saturation": recover_min_saturation})


def test_learned_scores_join_the_perceptual_group(scored):
    """Thresholds placed around the tiny models' own scores: each learned indicator alone passes, makes
    borderline or fails a row that statistics and NIQE accept."""
    rows = scored.to_pylist()
    clean = [row for row in rows if _statistically_clean(row)]
    assert clean, "the clean photos must pass statistics and NIQE"
    for metric, other in (METRICS, METRICS[::-1]):
        for row in clean:
            score, row = row[metric], row | {other: None}  # the other indicator unscored: this one decides
            step = 1e-3  # CLIP-IQA thresholds must stay in 0..1
            cases = {"accept": (score, score - step), "recovered": (score + 2 * step, score - step),
                     "perceptual": (score + 2 * step, score + step)}
            for rule, (accept_at, recover_at) in cases.items():
                assert classify_iqa(row, _thresholds(metric, accept_at, recover_at, 0.0)).rule == rule, (metric, rule)
            # The borderline case again, now without enough saturation to recover.
            assert classify_iqa(row, _thresholds(metric, *cases["recovered"], 1.0)).rule == "perceptual"


def test_cascade_decide_reads_the_learned_columns(scored):
    musiq = scored.column("musiq").to_pylist()
    cut = sorted(musiq)[1]  # rows scoring below fail MUSIQ outright
    config = IqaCascadeConfig(musiq_min=cut, musiq_recover_min=cut, clipiqa_min=0.0, clipiqa_recover_min=0.0,
                              min_saturation=0.0, recover_min_saturation=0.0, niqe_max=9.0, niqe_recover_max=9.5)
    decisions = IqaCascadeStage(config).decide(scored)
    without_musiq = IqaCascadeStage(config).decide(scored.drop_columns(["musiq", "musiq_status"]))
    for score, decision, baseline in zip(musiq, decisions, without_musiq):
        assert decision == ("perceptual" if score < cut and baseline is None else baseline)
    assert "perceptual" in decisions


def test_presets_tighten_the_learned_thresholds():
    relaxed, strict = IqaCascadeConfig(preset="stage2_512p"), IqaCascadeConfig(preset="stage3_1024p")
    assert strict.musiq_min > relaxed.musiq_min and strict.clipiqa_min > relaxed.clipiqa_min
    assert {"musiq_min", "musiq_recover_min", "clipiqa_min", "clipiqa_recover_min"} <= IqaCascadeStage.threshold_fields


def test_bad_configs_are_one_line_errors():
    def job(stage: dict) -> dict:
        return {"name": "t", "input": "in", "output": "out", "schema": "image_sample", "stages": [stage]}

    with pytest.raises(JobConfigError, match="learned_iqa.config.metric: Input should be 'musiq' or 'clipiqa'"):
        parse_job_config(job({"op": "learned_iqa", "config": {"metric": "brisque"}}))
    with pytest.raises(JobConfigError, match="musiq_recover_min .* must not exceed musiq_min"):
        parse_job_config(job({"op": "iqa_cascade", "config": {"musiq_min": 20.0}}))
