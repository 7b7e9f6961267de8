"""learned_iqa: a learned perceptual indicator of the IQA cascade (report 4.1.1), `metric: musiq | clipiqa`.

The model is pyiqa's architecture loaded from `model_path` (layout: `data_engine.curation.learned_iqa`); one
stage per metric, named after it in the job. Columns: the score (`musiq` or `clipiqa`) and its status
(`musiq_status`: `scored`, or `not_scored` when no model is configured; see `OptionalModelScorer`).
The stage makes no decision of its own: `iqa_cascade` judges these scores with NIQE as the perceptual group
(`classify_iqa`), so put the learned stages before it in the job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from data_engine.curation.learned_iqa import (LearnedIqaMetric, LearnedIqaModelError, check_model_dir, load_learned_iqa,
                                              pyiqa_available, score_images)
from data_engine.stages.scorer_base import OptionalModelScorer
from data_engine.stage import Resources, StageConfig, StageUnavailable, register_stage


class LearnedIqaConfig(StageConfig):
    metric: LearnedIqaMetric
    model_path: str | None = None
    # Long side the model sees. MUSIQ scores the native resolution plus two resized copies, CLIP-IQA the
    # whole image, so the cost grows with this; both were trained on images of about 500-1000 px.
    working_side: int = Field(default=512, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when the worker has a GPU


@register_stage
class LearnedIqaStage(OptionalModelScorer[LearnedIqaConfig]):
    op = "learned_iqa"
    Config = LearnedIqaConfig
    default_resources = Resources(num_cpus=1, batch_size=8)

    def score_column(self) -> str:
        return self.config.metric

    def preflight(self) -> None:
        if self.config.model_path is None:
            return
        if not Path(self.config.model_path).is_dir():
            raise StageUnavailable(f"{self.name}.model_path: {self.config.model_path} is not a directory")
        try:
            check_model_dir(self.config.metric, Path(self.config.model_path))
        except LearnedIqaModelError as exc:
            raise StageUnavailable(f"{self.name}.model_path: {exc}") from None
        problem = pyiqa_available()
        if problem is not None:
            raise StageUnavailable(f"{self.name}: {problem}")

    def load_model(self, model_dir: Path) -> None:
        import torch

        wants_cuda = self.config.device == "cuda" or (self.config.device == "auto" and torch.cuda.is_available())
        self.device = "cuda" if wants_cuda else "cpu"
        self.model = load_learned_iqa(self.config.metric, model_dir).to(self.device)

    def score(self, images: list[np.ndarray]) -> list[float]:
        return score_images(self.model, images, self.device)
