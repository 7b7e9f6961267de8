"""Rewards: registry, the tiny aesthetic and CLIP models through the configured-path code, OCR accuracy on
rendered text, the instruction-following gate for every consistency value, per-reward group advantages."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from trainer.core import TrainerError
from trainer.rewards import RewardInput, build_reward, build_reward_mixer
from trainer.rewards.mixing import GateConfig, RewardMixer, WeightedReward, gated_scores
from trainer.rewards.scorers import LatentProbeReward, quoted_text, text_accuracy


def images(count: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(count)]


def test_unknown_reward_is_one_line_error() -> None:
    with pytest.raises(TrainerError, match="unknown reward 'nope'"):
        build_reward({"name": "nope"})


def test_aesthetic_reward_matches_curation_predictor() -> None:
    from data_engine.stages.aesthetic import AestheticConfig, AestheticStage
    from data_engine.model_refs import tiny_model_path

    reward = build_reward({"name": "aesthetic", "model_path": "tiny:aesthetic"})
    batch = images(3)
    scores = reward.score(RewardInput(prompts=["a"] * 3, images=batch)).scores
    stage = AestheticStage(AestheticConfig(model_path=str(tiny_model_path("aesthetic"))))
    stage.load_model(tiny_model_path("aesthetic"))
    assert scores == pytest.approx(stage.score([np.asarray(image) for image in batch]), abs=1e-6)
    assert len(set(scores)) == 3


def test_clip_score_is_cosine_of_embeddings(tiny_clip: Path) -> None:
    from transformers import AutoTokenizer, CLIPModel

    reward = build_reward({"name": "clip_score", "model_path": str(tiny_clip)})
    batch, prompts = images(2), ["a red square", "a blue circle on the grass"]
    scores = reward.score(RewardInput(prompts=prompts, images=batch)).scores
    model, tokenizer = CLIPModel.from_pretrained(tiny_clip), AutoTokenizer.from_pretrained(tiny_clip)
    with torch.no_grad():  # one prompt and one image at a time: padding must not change the score
        for n in range(2):
            text = model.get_text_features(**tokenizer([prompts[n]], return_tensors="pt"))
            pixels = reward.processor(images=[batch[n]], return_tensors="pt")["pixel_values"]
            image = model.get_image_features(pixel_values=pixels)
            text, image = (getattr(x, "pooler_output", x) for x in (text, image))
            expected = float((text @ image.T).squeeze() / (text.norm() * image.norm()))
            assert scores[n] == pytest.approx(expected, abs=1e-5)


def test_clip_score_missing_path() -> None:
    with pytest.raises(TrainerError, match="clip_score.model_path"):
        build_reward({"name": "clip_score", "model_path": "/nonexistent"})


def test_quoted_text_and_accuracy() -> None:
    assert quoted_text('a sign that says "OPEN" and \u201cSALE 50%\u201d') == "OPEN SALE 50%"
    assert text_accuracy("OPEN", "open") == 1.0
    assert text_accuracy("OPEN", "OPFN") == pytest.approx(0.75)
    assert text_accuracy("", "") == 1.0


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract not installed")
def test_ocr_reward_reads_rendered_text() -> None:
    canvas = Image.new("RGB", (360, 90), "white")
    font = ImageFont.load_default(size=48)
    ImageDraw.Draw(canvas).text((20, 15), "HELLO", fill="black", font=font)
    reward = build_reward({"name": "ocr", "engine": "tesseract", "languages": ["eng"]})
    blank = Image.new("RGB", (360, 90), "white")
    out = reward.score(RewardInput(prompts=['a sign "HELLO"', 'a sign "HELLO"'], images=[canvas, blank]))
    assert out.scores[0] == 1.0, out.details
    assert out.scores[1] == 0.0


def test_gate_holds_for_every_consistency_value() -> None:
    """Property: with instruction following at or below the floor the total is the instruction term alone,
    for every consistency in [0, 1]; and it never reaches a sample that follows the instruction (IF at the
    threshold) with zero consistency."""
    gate = GateConfig(floor=0.3, threshold=0.7)
    roles = {"if": "instruction", "cons": "consistency"}
    weights = {"if": 1.0, "cons": 2.0}
    consistency = torch.linspace(0, 1, 1001)
    for instruction_value in torch.linspace(0, 1, 101).tolist():
        instruction = torch.full_like(consistency, instruction_value)
        scores = gated_scores({"if": instruction, "cons": consistency}, roles, gate)
        total = sum(weights[k] * v for k, v in scores.items())
        if instruction_value <= gate.floor:
            assert torch.equal(total, weights["if"] * instruction)
            assert bool((total < weights["if"] * gate.threshold).all())
        else:  # above the floor consistency counts, in proportion to the gate, monotonically
            assert bool((total[1:] >= total[:-1]).all())
        if instruction_value >= gate.threshold:
            assert torch.allclose(scores["cons"], consistency)


def test_mixer_sums_per_reward_group_advantages() -> None:
    probe_a, probe_b = LatentProbeReward(seed=1), LatentProbeReward(seed=2)
    mixer = RewardMixer({"a": WeightedReward(probe_a, 1.0, None), "b": WeightedReward(probe_b, 0.5, None)})
    latents = torch.randn(6, 16, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    advantage = mixer.group_advantage(latents, ["p"] * 6, group_size=3)
    expected = []
    for probe, weight in ((probe_a, 1.0), (probe_b, 0.5)):
        values = probe.values(latents).view(2, 3).double()
        expected.append(weight * ((values - values.mean(1, keepdim=True)) / values.std(1, unbiased=False, keepdim=True)))
    assert torch.allclose(advantage.double(), sum(expected).flatten(), atol=1e-5)
    # and the scale of a reward does not change its share: a tenfold reward gives the same advantages
    mixer10 = RewardMixer({"a": WeightedReward(probe_a, 1.0, None), "b": WeightedReward(probe_b, 0.5, None)})
    probe_b10 = LatentProbeReward(seed=2)
    probe_b10.probe = probe_b10.probe * 10
    mixer10.rewards["b"] = WeightedReward(probe_b10, 0.5, None)
    assert torch.allclose(mixer10.group_advantage(latents, ["p"] * 6, 3), advantage, atol=1e-4)


def test_mixer_from_specs_rejects_bad_roles() -> None:
    with pytest.raises(TrainerError, match="rewards.latent_probe.role: 'judge' is not one of instruction"):
        build_reward_mixer([{"name": "latent_probe", "role": "judge"}])
