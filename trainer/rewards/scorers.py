"""The built-in rewards: aesthetic, CLIP-score alignment, OCR text accuracy and a latent linear probe."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from data_engine.text_distance import normalised_edit_distance
from trainer.core import TrainerError
from trainer.rewards import Reward, RewardInput, RewardOutput, register_reward


def resolve_path(path: str) -> Path:
    from data_engine.model_refs import resolve_model_path

    return Path(resolve_model_path(path))


@register_reward("aesthetic")
class AestheticReward(Reward):
    """The curation aesthetic predictor (CLIP image embedding + LAION MLP head) at `model_path`
    (`tiny:aesthetic` for the tiny random one); the score is the predictor's raw output."""

    def __init__(self, model_path: str = "tiny:aesthetic") -> None:
        from data_engine.stages.aesthetic import AestheticConfig, AestheticStage

        self.stage = AestheticStage(AestheticConfig(model_path=str(resolve_path(model_path))))
        self.stage.load_model(resolve_path(model_path))

    def score(self, batch: RewardInput) -> RewardOutput:
        scores = self.stage.score([np.asarray(image.convert("RGB")) for image in batch.images])
        return RewardOutput([float(s) for s in scores], [{} for _ in scores])


@register_reward("clip_score")
class ClipScoreReward(Reward):
    """Text-image alignment: cosine similarity of the CLIP image and prompt embeddings (transformers
    `CLIPModel`, tokenizer and image processor in one directory at `model_path`)."""

    def __init__(self, model_path: str) -> None:
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        path = resolve_path(model_path)
        if not (path / "config.json").is_file():
            raise TrainerError(f"rewards.clip_score.model_path: {path} has no config.json")
        self.model = CLIPModel.from_pretrained(path, local_files_only=True).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.processor = CLIPImageProcessor.from_pretrained(path, local_files_only=True)

    @torch.no_grad()
    def score(self, batch: RewardInput) -> RewardOutput:
        limit = self.model.config.text_config.max_position_embeddings
        tokens = self.tokenizer(batch.prompts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        pixels = self.processor(images=[image.convert("RGB") for image in batch.images], return_tensors="pt")
        text = self.model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        image = self.model.get_image_features(pixel_values=pixels["pixel_values"])
        text, image = (getattr(x, "pooler_output", x) for x in (text, image))
        cosine = torch.nn.functional.cosine_similarity(image, text, dim=-1)
        return RewardOutput(cosine.tolist(), [{} for _ in batch.prompts])


QUOTED = re.compile(r"[\"“”'‘’]([^\"“”'‘’]+)[\"“”'‘’]")


def quoted_text(prompt: str) -> str:
    """What the prompt asks to be written: its quoted strings, joined by spaces."""
    return " ".join(match.strip() for match in QUOTED.findall(prompt))


def text_accuracy(expected: str, read: str) -> float:
    """1 - edit distance / max length, case and whitespace insensitive; 1 when nothing was asked and read."""
    expected, read = (" ".join(s.lower().split()) for s in (expected, read))
    return 1.0 - normalised_edit_distance(expected, read)


@register_reward("ocr")
class OcrReward(Reward):
    """1 - normalised edit distance between the prompt's quoted strings and the text OCR reads back
    (the captioning OCR engines: `rapidocr` or `tesseract`)."""

    def __init__(self, engine: str = "tesseract", languages: tuple[str, ...] = ("eng",)) -> None:
        from data_engine.captioning.ocr_engines import TesseractConfig, make_ocr_engine

        self.engine = make_ocr_engine(engine, TesseractConfig(languages=tuple(languages), page_segmentation_mode=7))

    def score(self, batch: RewardInput) -> RewardOutput:
        lines = self.engine.read_lines(batch.images)
        scores, details = [], []
        for prompt, image_lines in zip(batch.prompts, lines):
            read = " ".join(line["text"] for line in image_lines)
            expected = quoted_text(prompt)
            scores.append(text_accuracy(expected, read))
            details.append({"expected": expected, "read": read})
        return RewardOutput(scores, details)


@register_reward("latent_probe")
class LatentProbeReward(Reward):
    """A closed-form reward on latents: the mean of a fixed random linear probe (seeded) of each latent
    channel vector. Its optimum is known, so learning tests can measure how much of the gap a run closes."""

    needs_images = False

    def __init__(self, channels: int = 16, seed: int = 0) -> None:
        self.probe = torch.randn(channels, generator=torch.Generator().manual_seed(seed)) / channels**0.5

    def values(self, latents: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bc...,c->b...", latents.float(), self.probe.to(latents.device)).flatten(1).mean(dim=1)

    def score(self, batch: RewardInput) -> RewardOutput:
        values = self.values(batch.latents).tolist()
        return RewardOutput(values, [{} for _ in values])
