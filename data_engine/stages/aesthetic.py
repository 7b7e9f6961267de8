"""aesthetic: a pluggable aesthetic scorer (Table 4: score >= 3.0 at 208p, >= 4.6 at 512p and 1024p).

The default architecture is the LAION aesthetic predictor: a CLIP image embedding (L2-normalised) fed to an
MLP head (1024-128-64-16-1). The model is loaded only from a local directory (`model_path`), laid out as
`save_aesthetic_model` writes it: `clip/` (a transformers `CLIPVisionModelWithProjection` with its image
processor) and `head.safetensors`. Nothing is downloaded.
Columns: `aesthetic_score` and `aesthetic_status` (`scored`, or `not_scored` when no model is configured:
the score stays empty and the stage warns once; a score is never invented).
Decision: reason `low_aesthetic` when a scored row is below `min_score` (compared as float32, the column's
type, so a score of exactly 4.6 passes ">= 4.6"), `aesthetic_nan` when the model returned NaN; unscored rows
are kept.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field

from data_engine.curation.presets import PresetConfig
from data_engine.stage import Resources, register_stage, stored_threshold
from data_engine.stages.scorer_base import OptionalModelScorer

HEAD_HIDDEN = (1024, 128, 64, 16)
HEAD_FILE = "head.safetensors"
CLIP_DIR = "clip"


class AestheticModelError(FileNotFoundError):
    """The configured aesthetic model directory is missing a part; the message names it."""


def aesthetic_head(embedding_dim: int):
    """The LAION predictor's MLP (dropout layers kept so state-dict keys match the published weights)."""
    from torch import nn

    sizes = (embedding_dim, *HEAD_HIDDEN)
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(width_in, width_out))
        if index < 3:
            layers.append(nn.Dropout(0.2 if index < 2 else 0.1))
    layers.append(nn.Linear(sizes[-1], 1))
    return nn.Sequential(*layers)


def save_aesthetic_model(clip_model: Any, processor: Any, head: Any, out_dir: Path) -> Path:
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    clip_model.save_pretrained(out_dir / CLIP_DIR)
    processor.save_pretrained(out_dir / CLIP_DIR)
    save_file({name: tensor.contiguous() for name, tensor in head.state_dict().items()}, out_dir / HEAD_FILE)
    return out_dir


class AestheticConfig(PresetConfig):
    preset_op = "aesthetic"

    model_path: str | None = None
    working_side: int = Field(default=512, gt=0)  # decode size; the CLIP processor resizes to its own input
    # Threshold (decide() only).
    min_score: float = Field(default=4.6, ge=0)


@register_stage
class AestheticStage(OptionalModelScorer[AestheticConfig]):
    op = "aesthetic"
    Config = AestheticConfig
    default_resources = Resources(num_cpus=1, batch_size=16)
    decision_reasons = frozenset({"low_aesthetic", "aesthetic_nan"})
    threshold_fields = frozenset({"min_score"})
    score_bounds = {"min_score": "min"}

    def score_column(self) -> str:
        return "aesthetic_score"

    def status_column(self) -> str:
        return "aesthetic_status"

    def load_model(self, model_dir: Path) -> None:
        from safetensors.torch import load_file
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        for part in (model_dir / CLIP_DIR / "config.json", model_dir / HEAD_FILE):
            if not part.is_file():
                raise AestheticModelError(f"{self.name}.model_path: {part} does not exist")
        self.processor = CLIPImageProcessor.from_pretrained(model_dir / CLIP_DIR, local_files_only=True)
        self.model = CLIPVisionModelWithProjection.from_pretrained(model_dir / CLIP_DIR, local_files_only=True).eval()
        self.head = aesthetic_head(self.model.config.projection_dim)
        self.head.load_state_dict(load_file(model_dir / HEAD_FILE))
        self.head.eval()

    def score(self, images: list[np.ndarray]) -> list[float]:
        import torch

        with torch.no_grad():
            pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
            embeddings = self.model(pixel_values=pixels).image_embeds
            return self.head(torch.nn.functional.normalize(embeddings, dim=-1)).squeeze(-1).tolist()

    def decide(self, scores: pa.Table) -> list[str | None]:
        threshold = stored_threshold(self.config.min_score, scores.schema.field("aesthetic_score").type)
        return [None if score is None else "aesthetic_nan" if math.isnan(score)
                else "low_aesthetic" if score < threshold else None
                for score in scores.column("aesthetic_score").to_pylist()]
