"""aesthetic: a pluggable aesthetic scorer (Table 4: score >= 3.0 at 208p, >= 4.6 at 512p and 1024p).

The default architecture is the LAION aesthetic predictor: a CLIP image embedding (L2-normalised) fed to an
MLP head (1024-128-64-16-1). The model is loaded only from a local directory (`model_path`), laid out as
`save_aesthetic_model` writes it: `clip/` (a transformers `CLIPVisionModelWithProjection` with its image
processor) and `head.safetensors`. Nothing is downloaded.
Columns: `aesthetic_score` and `aesthetic_status` (`scored`, or `not_scored` when no model is configured:
the score stays empty and the stage warns once; a score is never invented).
Decision: reason `low_aesthetic` when a scored row is below `min_score`; unscored rows are kept.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import Field

from data_engine.curation.pixels import working_rgb
from data_engine.curation.presets import PresetConfig
from data_engine.stage import Resources, Stage, register_stage

HEAD_HIDDEN = (1024, 128, 64, 16)
HEAD_FILE = "head.safetensors"
CLIP_DIR = "clip"
_log = logging.getLogger(__name__)


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
class AestheticStage(Stage[AestheticConfig]):
    op = "aesthetic"
    Config = AestheticConfig
    uses_model = True
    default_resources = Resources(num_cpus=1, batch_size=16)
    decision_reasons = frozenset({"low_aesthetic"})
    threshold_fields = frozenset({"min_score"})

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (pa.field("aesthetic_score", pa.float32()), pa.field("aesthetic_status", pa.string()))

    def setup(self) -> None:
        self.model = None
        if self.config.model_path is None:
            _log.warning("%s: no model_path configured; aesthetic_score stays empty (not_scored)", self.name)
            return
        import torch
        from safetensors.torch import load_file
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        root = Path(self.config.model_path)
        for part in (root / CLIP_DIR / "config.json", root / HEAD_FILE):
            if not part.is_file():
                raise AestheticModelError(f"{self.name}.model_path: {part} does not exist")
        torch.set_num_threads(1)
        self.processor = CLIPImageProcessor.from_pretrained(root / CLIP_DIR, local_files_only=True)
        self.model = CLIPVisionModelWithProjection.from_pretrained(root / CLIP_DIR, local_files_only=True).eval()
        self.head = aesthetic_head(self.model.config.projection_dim)
        self.head.load_state_dict(load_file(root / HEAD_FILE))
        self.head.eval()

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        if self.model is None:
            return {"aesthetic_score": [None] * batch.num_rows, "aesthetic_status": ["not_scored"] * batch.num_rows}
        import torch

        images = [working_rgb(data, self.config.working_side) for data in batch.column("image_bytes").to_pylist()]
        with torch.no_grad():
            pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
            embeddings = self.model(pixel_values=pixels).image_embeds
            scores = self.head(torch.nn.functional.normalize(embeddings, dim=-1)).squeeze(-1)
        return {"aesthetic_score": scores.tolist(), "aesthetic_status": ["scored"] * batch.num_rows}

    def decide(self, scores: pa.Table) -> list[str | None]:
        return ["low_aesthetic" if score is not None and score < self.config.min_score else None
                for score in scores.column("aesthetic_score").to_pylist()]
