"""Stage-overhead benchmarks: the same work done by calling a model directly and through its stage (the stage
runner: Arrow columns in and out, per-row bookkeeping), in one process.

overhead_fraction = stage seconds / direct seconds - 1; both throughputs are written beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from benchmarks.common import median_seconds, write_result
from data_engine.stage import Stage
from data_engine.stage_runner import apply_stage


def write_stage_overhead(name: str, stage: Stage, table: pa.Table, direct: Callable[[], object], *, batch_size: int,
                         unit: str, repeats: int, baseline: str, command: str) -> Path:
    """Time `direct` and the stage over `table` (one item per row), medians of `repeats`; write the result."""
    direct_s = median_seconds(direct, repeats)
    stage_s = median_seconds(lambda: apply_stage(stage, table, batch_size), repeats)
    metrics = {"overhead_fraction": round(stage_s / direct_s - 1, 4),
               f"direct_{unit}_per_s": round(table.num_rows / direct_s, 2),
               f"stage_{unit}_per_s": round(table.num_rows / stage_s, 2)}
    return write_result(name, metrics, baseline=baseline, command=command)
