"""embed_images: a CLIP image embedding per row, the input of semantic dedup (SemDeDup, report 4.1.1).

The image tower is loaded only from a configured local directory (`model_path`) in the transformers layout: a
`CLIPVisionModelWithProjection` with its image processor, as `save_pretrained` writes them (`make tiny-models`
builds a tiny random one, `clip_image`). Nothing is downloaded.
Columns: `image_embedding` (the projected embedding, L2-normalised, float32) and `image_embedding_status`
(`scored`, or `not_scored` when no model is configured: the embedding stays empty and the stage warns once;
the dedup stage then skips its semantic pass for those rows and says `semantic_dedup=not_run`).
No decision here: the dedup stage decides over all rows at once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from pydantic import Field

from data_engine.stages.scorer_base import OptionalModelScorer
from data_engine.stage import Resources, StageConfig, register_stage


class ImageEmbeddingModelError(FileNotFoundError):
    """The configured image-embedding model directory is missing a part; the message names it."""


class ImageEmbeddingConfig(StageConfig):
    model_path: str | None = None
    working_side: int = Field(default=512, gt=0)  # decode size; the CLIP processor resizes to its own input


@register_stage
class ImageEmbeddingStage(OptionalModelScorer[ImageEmbeddingConfig]):
    op = "embed_images"
    Config = ImageEmbeddingConfig
    default_resources = Resources(num_cpus=1, batch_size=16)

    def score_column(self) -> str:
        return "image_embedding"

    def score_type(self) -> pa.DataType:
        return pa.list_(pa.float32())

    def load_model(self, model_dir: Path) -> None:
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        for part in ("config.json", "preprocessor_config.json"):
            if not (model_dir / part).is_file():
                raise ImageEmbeddingModelError(f"{self.name}.model_path: {model_dir / part} does not exist")
        self.processor = CLIPImageProcessor.from_pretrained(model_dir, local_files_only=True)
        self.model = CLIPVisionModelWithProjection.from_pretrained(model_dir, local_files_only=True).eval()

    def score(self, images: list[np.ndarray]) -> list[list[float]]:
        import torch

        with torch.no_grad():
            pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
            embeddings = self.model(pixel_values=pixels).image_embeds
            return torch.nn.functional.normalize(embeddings, dim=-1).tolist()
