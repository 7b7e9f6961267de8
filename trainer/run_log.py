"""Training logs written by rank 0: `train_log.jsonl` (one JSON object per event), TensorBoard scalars under
`tensorboard/`, and a progress bar on stderr. Other ranks get a logger that writes nothing."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

JSONL_NAME = "train_log.jsonl"


class RunLog:
    def __init__(self, out_dir: Path, *, enabled: bool, total_steps: int, start_step: int, progress: bool,
                 tensorboard: bool) -> None:
        self.enabled = enabled
        self._jsonl = None
        self._writer = None
        self._bar = None
        if not enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = (out_dir / JSONL_NAME).open("a")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(out_dir / "tensorboard"))
        if progress:
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", file=sys.stderr,
                             dynamic_ncols=True)

    def event(self, kind: str, **fields: Any) -> None:
        if self._jsonl is None:
            return
        self._jsonl.write(json.dumps({"event": kind, "time": round(time.time(), 3), **fields}) + "\n")
        self._jsonl.flush()

    def step(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.event("step", step=step, **metrics)
        if self._writer is not None:
            for key, value in metrics.items():
                self._writer.add_scalar(f"train/{key}", value, step)
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix(loss=f"{metrics.get('loss', float('nan')):.4f}")

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.close()
        if self._jsonl is not None:
            self._jsonl.close()
