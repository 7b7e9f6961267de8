"""Tiny random-initialised checkpoints of the curation scorers (`make tiny-models`): MUSIQ, CLIP-IQA, aesthetic,
and the CLIP image tower of semantic dedup.

Each is the real architecture (pyiqa's MUSIQ, pyiqa's CLIP-IQA around pyiqa's OpenAI-CLIP, a transformers CLIP
vision tower with the LAION head) at a small width, written in the layout production models use, so tests load
them through the same configured-path code (`learned_iqa.load_learned_iqa`, the aesthetic stage's setup).
Their scores mean nothing; the plumbing is real. `trainer.tiny_models` builds, hashes and caches them with the
other tiny models; the recipes below are what its hash covers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

from data_engine.curation.learned_iqa import save_learned_iqa

SEED = 0  # the same seed trainer.tiny_models gives its models

# A one-layer transformer over pyiqa's fixed ResNet stem; three scales like MUSIQ-KonIQ (native + two resized
# copies), the resized ones smaller (64 / 96 px instead of 224 / 384) because the stem costs the same per patch.
MUSIQ_RECIPE: dict[str, Any] = {"hidden_size": 32, "mlp_dim": 64, "num_heads": 2, "num_layers": 1,
                                "longer_side_lengths": [64, 96]}
# pyiqa's CLIP class: a one-block-per-stage ResNet (the RN50 family CLIP-IQA uses) and a one-layer text
# encoder. The text side keeps CLIP's real tokenizer sizes (77 positions, 49,408 tokens) because CLIP-IQA
# tokenises its prompts with the real BPE; width 64 is the smallest with a whole 64-wide attention head.
CLIP_RECIPE: dict[str, Any] = {
    "embed_dim": 32, "image_resolution": 64, "vision_layers": [1, 1, 1, 1], "vision_width": 8,
    "vision_patch_size": None, "context_length": 77, "vocab_size": 49408, "transformer_width": 64,
    "transformer_heads": 1, "transformer_layers": 1,
}
CLIPIQA_RECIPE: dict[str, Any] = {"clip": CLIP_RECIPE, "kwargs": {"model_type": "clipiqa"}}
AESTHETIC_RECIPE: dict[str, Any] = {
    "vision": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
               "image_size": 64, "patch_size": 16, "projection_dim": 16},
    "processor": {"size": {"shortest_edge": 64}, "crop_size": {"height": 64, "width": 64}},
    # Random heads score near 0; this output bias centres the scores on Table 4's thresholds (3.0 / 4.6).
    "head_output_bias": 4.0,
}


# The image tower of semantic dedup (embed_images): the aesthetic predictor's tiny CLIP, saved on its own.
CLIP_IMAGE_RECIPE: dict[str, Any] = {"vision": AESTHETIC_RECIPE["vision"], "processor": AESTHETIC_RECIPE["processor"]}


def _seed() -> None:
    import torch

    torch.manual_seed(SEED)


def _parameters(model: Any) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def build_tiny_musiq(recipe: dict[str, Any], out_dir: Path, _tokenizers: Any = None) -> int:
    """Random MUSIQ saved as a model directory; returns its parameter count. (The unused third argument is
    `trainer.tiny_models`' tokenizer source: these models bring their own tokenizers.)"""
    from pyiqa.archs.musiq_arch import MUSIQ

    _seed()
    model = MUSIQ(**recipe, pretrained=False)
    save_learned_iqa("musiq", out_dir, recipe, weights=model.state_dict())
    return _parameters(model)


def build_tiny_clipiqa(recipe: dict[str, Any], out_dir: Path, _tokenizers: Any = None) -> int:
    """Random CLIP for CLIP-IQA, written as a TorchScript archive in a fresh interpreter: TorchScript names the
    classes it writes with a per-process counter (`___torch_mangle_N`), so a CLIP traced after other
    TorchScript work in the same process (building the other tiny models does some) serialises to other bytes."""
    command = [sys.executable, "-m", "data_engine.curation.tiny_scorers", json.dumps(recipe), str(out_dir)]
    result = subprocess.run(command, cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"tiny CLIP-IQA build failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    return int(result.stdout.split()[-1])


def _trace_tiny_clipiqa(recipe: dict[str, Any], out_dir: Path) -> int:
    from pyiqa.archs.clip_model import CLIP

    _seed()
    clip = CLIP(**recipe["clip"])
    save_learned_iqa("clipiqa", out_dir, recipe["kwargs"], clip=clip)
    return _parameters(clip)


def build_tiny_aesthetic(recipe: dict[str, Any], out_dir: Path, _tokenizers: Any = None) -> int:
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from data_engine.stages.aesthetic import aesthetic_head, save_aesthetic_model

    config = CLIPVisionConfig(**recipe["vision"])
    _seed()
    clip = CLIPVisionModelWithProjection(config).eval()
    head = aesthetic_head(config.projection_dim)
    with torch.no_grad():
        head[-1].bias.fill_(recipe["head_output_bias"])
    save_aesthetic_model(clip, CLIPImageProcessor(**recipe["processor"]), head, out_dir)
    return _parameters(clip) + _parameters(head)


def build_tiny_clip_image(recipe: dict[str, Any], out_dir: Path, _tokenizers: Any = None) -> int:
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    _seed()
    clip = CLIPVisionModelWithProjection(CLIPVisionConfig(**recipe["vision"])).eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    clip.save_pretrained(out_dir)
    CLIPImageProcessor(**recipe["processor"]).save_pretrained(out_dir)
    return _parameters(clip)


# name -> the fields of trainer.tiny_models.TinyModelSpec, which builds, hashes and caches these models.
TINY_SCORERS: dict[str, dict[str, Any]] = {
    "musiq": {"model_class": "pyiqa.archs.musiq_arch.MUSIQ", "recipe": MUSIQ_RECIPE,
              "libraries": ("torch", "pyiqa"), "build": build_tiny_musiq},
    "clipiqa": {"model_class": "pyiqa.archs.clipiqa_arch.CLIPIQA", "recipe": CLIPIQA_RECIPE,
                "libraries": ("torch", "pyiqa", "openai-clip"), "build": build_tiny_clipiqa},
    "aesthetic": {"model_class": "transformers.CLIPVisionModelWithProjection", "recipe": AESTHETIC_RECIPE,
                  "libraries": ("torch", "safetensors", "transformers"), "build": build_tiny_aesthetic},
    "clip_image": {"model_class": "transformers.CLIPVisionModelWithProjection", "recipe": CLIP_IMAGE_RECIPE,
                   "libraries": ("torch", "transformers"), "build": build_tiny_clip_image},
}


if __name__ == "__main__":  # the fresh interpreter of build_tiny_clipiqa: RECIPE_JSON OUT_DIR
    with warnings.catch_warnings():  # tracing is how OpenAI-format CLIP archives are made; nothing to act on
        warnings.simplefilter("ignore")
        print(_trace_tiny_clipiqa(json.loads(sys.argv[1]), Path(sys.argv[2])))
