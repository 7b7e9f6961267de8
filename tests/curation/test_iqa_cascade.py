"""The IQA cascade: one generated image per decision rule, presets, config errors, bad bytes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from data_engine.job import JobConfigError, parse_job_config
from data_engine.stage_runner import apply_stage
from data_engine.stages.iqa_cascade import IqaCascadeConfig, IqaCascadeStage, classify_iqa
from tests.curation.images import grey, jpeg_roundtrip, png_bytes, stage_input, with_noise


@pytest.fixture(scope="module")
def stage(niqe_params) -> IqaCascadeStage:
    stage = IqaCascadeStage(IqaCascadeConfig())
    stage.setup()
    return stage


def _verdict(stage: IqaCascadeStage, rgb: np.ndarray):
    return classify_iqa(stage._scores(png_bytes(rgb)), stage.config)


# (rule, how the image is made from the photos); each image is labelled by construction.
RULE_IMAGES = {
    "accept": lambda p: p["china"],
    "too_dark": lambda p: (p["china"] * 0.06).astype(np.uint8),
    "overexposed": lambda p: np.clip(p["china"].astype(int) + 200, 0, 255).astype(np.uint8),
    "low_entropy": lambda p: np.full_like(p["china"], 128),
    "blurry": lambda p: cv2.GaussianBlur(p["china"], (0, 0), 4),
    "niqe_very_high": lambda p: jpeg_roundtrip(p["china"], 2),
    "oversharpened": lambda p: with_noise(p["china"], 80),
    "niqe_undefined": lambda p: p["china"][:150, :150],  # one 96 px block only
    "statistics": lambda p: grey(p["china"]),  # desaturated to zero
    "perceptual": lambda p: jpeg_roundtrip(p["china"], 5),  # borderline NIQE, saturation too low to recover
    "recovered": lambda p: with_noise(p["flower"], 40),  # borderline NIQE, saturated colours
}


@pytest.mark.parametrize("rule", sorted(RULE_IMAGES))
def test_each_rule_has_an_image_that_takes_it(stage, photos, rule):
    assert _verdict(stage, RULE_IMAGES[rule](photos)).rule == rule


def test_recovery_needs_saturation(stage, photos):
    noisy = with_noise(photos["flower"], 40)
    washed = cv2.addWeighted(noisy, 0.1, grey(noisy), 0.9, 0)  # saturation about 0.11
    scores = stage._scores(png_bytes(washed))
    assert stage.config.niqe_max < scores["niqe"] <= stage.config.niqe_recover_max
    assert classify_iqa(scores, stage.config).rule == "perceptual"


def test_scores_are_columns_and_decide_reads_only_them(stage, photos):
    images = [RULE_IMAGES[rule](photos) for rule in ("accept", "too_dark", "recovered", "statistics")]
    table = stage_input(id=[str(i) for i in range(4)], image_bytes=[png_bytes(im) for im in images])
    out, stats = apply_stage(stage, table, batch_size=2)
    assert out.column("reject_reason").to_pylist() == [None, "too_dark", None, "statistics"]
    assert out.column("niqe").null_count == 0
    relaxed = IqaCascadeStage(stage.config.model_copy(update={"min_saturation": 0.0}))
    assert relaxed.decide(out.drop_columns(["image_bytes"])) == [None, "too_dark", None, None]
    assert stats.rejects == {"too_dark": 1, "statistics": 1}


def test_not_enforced_keeps_scores_and_rejects_nothing(photos, niqe_params):
    stage = IqaCascadeStage(IqaCascadeConfig(preset="stage1_208p"))
    stage.setup()
    table = stage_input(image_bytes=[png_bytes(RULE_IMAGES["too_dark"](photos))])
    out, _ = apply_stage(stage, table, batch_size=1)
    assert out.column("reject_reason").to_pylist() == [None]
    assert out.column("iqa_brightness")[0].as_py() < stage.config.dark_brightness


def test_undecodable_bytes_become_an_error_row(stage):
    table = stage_input(image_bytes=[b"<html>not an image</html>"])
    out, _ = apply_stage(stage, table, batch_size=1)
    assert out.column("reject_reason").to_pylist() == ["error:UnidentifiedImageError"]


def test_presets_fill_unset_fields_and_explicit_values_win():
    assert IqaCascadeConfig(preset="stage1_208p").enforce is False
    strict = IqaCascadeConfig(preset="stage3_1024p")
    assert strict.niqe_max < IqaCascadeConfig(preset="stage2_512p").niqe_max
    assert IqaCascadeConfig(preset="stage3_1024p", niqe_max=5.0).niqe_max == 5.0


def _job(config: dict) -> dict:
    return {"name": "t", "input": "in", "output": "out", "schema": "image_sample",
            "stages": [{"op": "iqa_cascade", "config": config}]}


def test_bad_configs_are_one_line_errors():
    with pytest.raises(JobConfigError, match="iqa_cascade.config.preset: Input should be 'stage1_208p'"):
        parse_job_config(_job({"preset": "stage9"}))
    with pytest.raises(JobConfigError, match="niqe_max .* must not exceed niqe_recover_max"):
        parse_job_config(_job({"niqe_max": 9.0}))
    with pytest.raises(JobConfigError, match="iqa_cascade.config.nique_max: Extra inputs"):
        parse_job_config(_job({"nique_max": 9.0}))


def test_missing_params_fail_at_setup_naming_the_file(tmp_path):
    stage = IqaCascadeStage(IqaCascadeConfig(niqe_params=str(tmp_path / "absent.npz")))
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        stage.setup()
