"""Stage-overhead benchmarks: the same work done by calling a model directly and through its stage (the stage
runner: Arrow columns in and out, per-row bookkeeping), in one process, interleaved by the harness.

overhead_fraction = stage seconds / direct seconds - 1, round by round (median, min, max); both throughputs
are written beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from benchmarks.common import interleaved, rate_spread, spread, write_result
from data_engine.stage import Stage
from data_engine.stage_runner import apply_stage


def write_stage_overhead(name: str, stage: Stage, table: pa.Table, direct: Callable[[], object], *, batch_size: int,
                         unit: str, repeats: int, baseline: str, command: str,
                         goal: float | None = None, notes: dict[str, Any] | None = None) -> Path:
    """Time `direct` and the stage over `table` (one item per row), warmed up and interleaved; write the result."""
    seconds = interleaved({"direct": direct, "stage": lambda: apply_stage(stage, table, batch_size)},
                          repeats=repeats)
    metrics = {"overhead_fraction": spread([s / d - 1 for s, d in zip(seconds["stage"], seconds["direct"])]),
               f"direct_{unit}_per_s": rate_spread(table.num_rows, seconds["direct"]),
               f"stage_{unit}_per_s": rate_spread(table.num_rows, seconds["stage"])}
    return write_result(name, metrics, baseline=baseline, command=command,
                        goals={"overhead_fraction": ("<=", goal)} if goal is not None else None,
                        notes={"rows": table.num_rows, "runner_batch_size": batch_size, "repeats": repeats,
                               "seconds": seconds, **(notes or {})})
