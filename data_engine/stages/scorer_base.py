"""The shape every learned image scorer of the curation job shares (aesthetic, MUSIQ, CLIP-IQA, image embeddings).

A scorer's model comes only from a configured local directory (`model_path`). Without one the stage still
runs: it warns once per worker and writes an empty score with status `not_scored`, so a job without the
model finishes and says what it did not measure; a score is never invented. With one, the images are decoded
at `working_side` on their long side and scored by the subclass.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from data_engine.curation.pixels import working_rgb
from data_engine.stage import ConfigT, Stage

_log = logging.getLogger(__name__)
SCORED, NOT_SCORED = "scored", "not_scored"


class OptionalModelScorer(Stage[ConfigT]):
    """Config fields read here: `model_path: str | None` and `working_side: int`."""

    uses_model = True

    @abstractmethod
    def score_column(self) -> str:
        """The float score column."""

    @abstractmethod
    def load_model(self, model_dir: Path) -> None:
        """Load the model from the configured directory (once per worker)."""

    @abstractmethod
    def score(self, images: list[np.ndarray]) -> list[Any]:
        """One score (of `score_type()`) per HxWx3 uint8 RGB image."""

    def status_column(self) -> str:
        """`scored` / `not_scored` per row."""
        return f"{self.score_column()}_status"

    def score_type(self) -> pa.DataType:
        """The score column's type: one float, or a vector for an embedding."""
        return pa.float32()

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (pa.field(self.score_column(), self.score_type()), pa.field(self.status_column(), pa.string()))

    def setup(self) -> None:
        self.loaded = self.config.model_path is not None
        if not self.loaded:
            _log.warning("%s: no model_path configured; %s stays empty (%s)", self.name, self.score_column(),
                         NOT_SCORED)
            return
        import torch

        torch.set_num_threads(1)  # one worker per core
        self.load_model(Path(self.config.model_path))

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        if not self.loaded:
            return {self.score_column(): [None] * batch.num_rows, self.status_column(): [NOT_SCORED] * batch.num_rows}
        images = [working_rgb(data, self.config.working_side) for data in batch.column("image_bytes").to_pylist()]
        return {self.score_column(): self.score(images), self.status_column(): [SCORED] * batch.num_rows}
