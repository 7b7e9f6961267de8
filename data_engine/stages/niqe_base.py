"""The base of stages that score NIQE (`data_engine/ops/niqe.py`): where their pristine parameters come from,
checked on the driver before the job and loaded once per worker."""

from __future__ import annotations

from pathlib import Path

import cv2

from data_engine.ops.niqe import NiqeParams, NiqeParamsMissing, load_params
from data_engine.stage import ConfigT, Stage, StageUnavailable


class NiqeStage(Stage[ConfigT]):
    """Its config has `niqe_params`: a pristine-parameter file, or None for `$JOYAI_NIQE_PARAMS`
    (scripts/ray_node.sh) or the repo cache."""

    params: NiqeParams

    def preflight(self) -> None:
        try:
            self._load_params()
        except NiqeParamsMissing as exc:
            raise StageUnavailable(f"{self.name}.niqe_params: {exc}") from None

    def setup(self) -> None:
        cv2.setNumThreads(1)  # one worker per core
        self.params = self._load_params()

    def _load_params(self) -> NiqeParams:
        niqe_params = self.config.niqe_params  # type: ignore[attr-defined]
        return load_params(Path(niqe_params) if niqe_params else None)
