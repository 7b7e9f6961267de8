"""Our preference rewards against the published packages' own classes (`make test-reward-parity`; not in
`make test`). In the reward-parity environment (scripts/setup_reward_parity_env.sh, named by
JOYAI_REWARD_PARITY_ENV), tests/trainer/reward_parity_package.py builds each package's model class on a tiny
random configuration, saves the checkpoint in the published format and scores images and prompts with the
package's scoring code; here the converter turns that checkpoint into our directory and our reward scores the
same inputs. The scores agree to PARITY_TOLERANCE (fp32 on both sides, hpsv3 included where its yaml says bf16;
measured differences are of order 1e-7)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tests.trainer.test_reward_convert import hps_v2_state_dict, hps_v3_state_dict, image_reward_state_dict

from data_engine.model_refs import tiny_model_path
from trainer.rewards import RewardInput, build_reward
from trainer.rewards.__main__ import main as rewards_cli
from trainer.tiny_models import QWEN_CHAT_TEMPLATE

REPO = Path(__file__).resolve().parents[2]
PARITY_ENV = os.environ.get("JOYAI_REWARD_PARITY_ENV")
PARITY_TOLERANCE = 1e-4
PACKAGE_BUDGET_S = 600  # importing torch, transformers and a package's stack on a busy 2-core machine
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not PARITY_ENV, reason="JOYAI_REWARD_PARITY_ENV is not set (make test-reward-parity builds the environment)")]

# Sizes and aspect ratios that exercise each package's resizing (upscaled, downscaled, exact, odd crop offsets);
# prompts with capitals, an HTML entity, repeated spaces, accents, and one past every context length.
IMAGE_SIZES = [(48, 40), (300, 200), (224, 224), (101, 333)]
PROMPTS = ["a red square", "A Blue   Circle &amp; the GRASS at noon", "café crème on a table",
           "a very long prompt " + " ".join(["about many things"] * 30)]
BERT_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "square", "blue", "circle", "&", "the",
              "grass", "at", "noon", "cafe", "creme", "on", "table", "very", "long", "prompt", "about", "many",
              "thing", "##s"]


def write_inputs(work: Path) -> RewardInput:
    rng = np.random.default_rng(3)
    paths = []
    for number, (height, width) in enumerate(IMAGE_SIZES):
        paths.append(work / f"image{number}.png")
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(paths[-1])
    (work / "bert").mkdir()
    (work / "bert" / "vocab.txt").write_text("\n".join(BERT_WORDS) + "\n")
    (work / "parity_inputs.json").write_text(json.dumps(
        {"images": [str(p) for p in paths], "prompts": PROMPTS, "bert_tokenizer": str(work / "bert"),
         "qwen_tokenizer": str(tiny_model_path("qwen3vl")), "chat_template": QWEN_CHAT_TEMPLATE}))
    return RewardInput(prompts=PROMPTS, images=[Image.open(p) for p in paths])


def package_scores(kind: str, work: Path) -> list[float]:
    completed = subprocess.run(
        [f"{PARITY_ENV}/bin/python", str(REPO / "tests/trainer/reward_parity_package.py"), kind, "--out", str(work)],
        capture_output=True, text=True, cwd=work, env=os.environ | {"HF_HUB_OFFLINE": "1"},
        timeout=PACKAGE_BUDGET_S)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads((work / "package_scores.json").read_text())


def assert_published_layout(work: Path, fixture: dict[str, torch.Tensor]) -> None:
    """The package's checkpoint has the keys and shapes of test_reward_convert.py's fixture for the same sizes, so
    the converter tests of `make test` run on the published layout."""
    layout = json.loads((work / "layout.json").read_text())
    assert layout == {key: list(tensor.shape) for key, tensor in fixture.items()}


def assert_parity(kind: str, ours: list[float], theirs: list[float]) -> None:
    difference = max(abs(a - b) for a, b in zip(ours, theirs, strict=True))
    print(f"{kind}: max |ours - package| = {difference:.3g} over {len(ours)} image-prompt pairs")
    assert difference <= PARITY_TOLERANCE, (kind, ours, theirs)
    assert len({round(s, 4) for s in theirs}) == len(theirs)  # the inputs do move the score


def test_hps_v2_matches_the_hpsv2_package(tmp_path: Path) -> None:
    batch = write_inputs(tmp_path)
    theirs = package_scores("hps_v2", tmp_path)
    assert_published_layout(tmp_path, hps_v2_state_dict())
    # The BPE vocabulary comes from this environment's clip package (the file open_clip bundles).
    assert rewards_cli(["convert", "hps_v2", "--checkpoint", str(tmp_path / "HPS_v2_compressed.pt"),
                        "--out", str(tmp_path / "converted")]) == 0
    ours = build_reward({"name": "hps_v2", "model_path": str(tmp_path / "converted")}).score(batch).scores
    assert_parity("hps_v2", ours, theirs)


def test_image_reward_matches_the_image_reward_package(tmp_path: Path) -> None:
    batch = write_inputs(tmp_path)
    theirs = package_scores("image_reward", tmp_path)
    assert_published_layout(tmp_path, image_reward_state_dict(vocab=len(BERT_WORDS) + 2))
    assert rewards_cli(["convert", "image_reward", "--checkpoint", str(tmp_path / "ImageReward.pt"),
                        "--bert-tokenizer", str(tmp_path / "bert"), "--out", str(tmp_path / "converted")]) == 0
    ours = build_reward({"name": "image_reward", "model_path": str(tmp_path / "converted")}).score(batch).scores
    assert_parity("image_reward", ours, theirs)


def test_hps_v3_matches_the_hpsv3_package(tmp_path: Path) -> None:
    """The package side also writes the tiny Qwen2-VL base directory (its transformers' format) the converter reads,
    and where the package is installed: the instruction is copied from there."""
    batch = write_inputs(tmp_path)
    theirs = package_scores("hps_v3", tmp_path)
    vocab = json.loads((tmp_path / "layout.json").read_text())["model.embed_tokens.weight"][0]
    assert_published_layout(tmp_path, hps_v3_state_dict(vocab=vocab))
    assert rewards_cli(["convert", "hps_v3", "--checkpoint", str(tmp_path / "HPSv3.safetensors"),
                        "--base-model", str(tmp_path / "qwen2-vl-tiny"),
                        "--hpsv3-package", (tmp_path / "hpsv3_package.txt").read_text(),
                        "--out", str(tmp_path / "converted")]) == 0
    ours = build_reward({"name": "hps_v3", "model_path": str(tmp_path / "converted")}).score(batch).scores
    assert_parity("hps_v3", ours, theirs)
