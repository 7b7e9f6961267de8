"""The stage contract every operator follows.

A stage says what it computes; `executor.py` decides how Ray schedules it. A stage has:
- `Config`: a pydantic model validated when the job loads (unknown keys are errors);
- `default_resources`: cpus, gpus, memory, batch size, concurrency (the job YAML may override them);
- `preflight()` on the driver before anything runs (is the model path there? the render environment?);
- `setup_on_node()` once per node (stage weights on local disk), `setup()` once per worker (load a model);
- `finalize_output()` once after the job, for passes over all shards (dedup);
- `decide_globally()` for decisions that depend on other rows (dedup): over the rows of every shard that
  reach the stage, from stored columns, so `redecide` reruns it after re-applying the thresholds before it;
- `process_batch()` over the accepted rows of an Arrow table, returning the columns it adds or replaces and,
  optionally, a per-row processing reject reason (a corrupt file, a failed request);
- `decide()` for filters: threshold decisions over stored score columns only, so `redecide` can re-apply
  new thresholds without recomputing scores. Scores are compared as stored (`stored_threshold`), so a
  boundary written "at least 0.04" holds for a float32 column too.
Stages that load models (`uses_model = True`) run as Ray actor pools, pure functions as Ray tasks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

REJECT_COLUMN = "_reject"  # optional key in process_batch output: per-row processing reject reason
REJECT_DETAIL_COLUMN = "_reject_detail"  # optional key next to it: the human-readable detail


class StageUnavailable(RuntimeError):
    """A stage cannot run here (a model path, an environment or a service is missing); found before any
    worker starts, so the job fails in one line instead of inside a Ray actor."""


class StageConfig(BaseModel):
    """Base for stage configs: strict about unknown keys so a typo is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    num_cpus: float = Field(default=1.0, ge=0)
    num_gpus: float = Field(default=0.0, ge=0)
    memory: int | None = Field(default=None, gt=0)  # bytes reserved per worker
    batch_size: int = Field(default=64, gt=0)  # rows per process_batch call
    concurrency: int | None = Field(default=None, gt=0)  # actor pool size (model stages) or max parallel tasks


ConfigT = TypeVar("ConfigT", bound=StageConfig)


class Stage(ABC, Generic[ConfigT]):
    op: ClassVar[str]
    Config: ClassVar[type[StageConfig]]
    default_resources: ClassVar[Resources] = Resources()
    uses_model: ClassVar[bool] = False
    # Reasons decide() can return; redecide resets exactly these before re-applying thresholds.
    decision_reasons: ClassVar[frozenset[str]] = frozenset()
    # Config fields read only by decide() (or decide_globally()); the only fields redecide may change.
    threshold_fields: ClassVar[frozenset[str]] = frozenset()
    # Threshold fields that bound a quality score from below ("min": raising it rejects more) or above ("max");
    # `pipelines calibrate` scales these to reach a target retention.
    score_bounds: ClassVar[Mapping[str, Literal["min", "max"]]] = {}

    def __init__(self, config: ConfigT, name: str | None = None) -> None:
        self.config = config
        self.name = name or self.op

    @abstractmethod
    def output_fields(self) -> tuple[pa.Field, ...]:
        """Columns this stage adds to the job's schema (all nullable: rejected rows hold nulls)."""

    def replaced_columns(self) -> tuple[str, ...]:
        """Existing schema columns this stage may overwrite for the rows it processes."""
        return ()

    def result_columns(self) -> tuple[str, ...]:
        """Every key process_batch may return: its output fields, the replaced columns, the reject keys."""
        return (tuple(f.name for f in self.output_fields()) + self.replaced_columns()
                + (REJECT_COLUMN, REJECT_DETAIL_COLUMN))

    def preflight(self) -> None:
        """On the driver before the job starts: raise StageUnavailable if what setup() needs is missing."""

    def finalize_output(self, out_dir: Path) -> None:
        """Once on the driver after every shard and the manifest are written: passes that need all rows at
        once (dedup across shards). Must be idempotent: a resumed job runs it again."""

    def setup_on_node(self) -> None:
        """Once per node before workers start, e.g. copy weights to local disk."""

    def setup(self) -> None:
        """Once per worker, e.g. load a model."""

    @abstractmethod
    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        """Compute columns for every row of `batch` (all of them accepted so far)."""

    def decide(self, scores: pa.Table) -> list[str | None]:
        """Threshold decisions from stored columns: a reject reason per row or None to keep it."""
        return [None] * scores.num_rows

    def processed_rows(self, table: pa.Table) -> list[bool]:
        """Which rows this stage has processed, read from its stored columns: redecide re-applies decide()
        to these and marks the others `unprocessed`. Default: any of its per-row output columns is set (a
        stage whose processed rows can all be empty overrides this)."""
        columns = [pc.is_valid(table.column(f.name)).to_pylist() for f in self.output_fields()
                   if f.name in table.column_names and f.name not in self.global_outputs()]
        return [any(flags) for flags in zip(*columns)] if columns else [True] * table.num_rows

    def global_outputs(self) -> tuple[str, ...]:
        """Output columns decided over all rows at once (dedup: `duplicate_of`, ...); empty: none."""
        return ()

    def global_inputs(self) -> tuple[str, ...]:
        """Stored columns decide_globally() reads (those the output lacks are left out)."""
        return ()

    def decide_globally(self, candidates: pa.Table) -> Mapping[str, Sequence[Any]]:
        """The `global_outputs()` columns for the rows of every shard that reach this stage and that it
        processed (`candidates`: `id` and the `global_inputs()` columns). `redecide` runs it after re-applying
        the decisions of the stages before, writes the columns (null for every other row) and then applies
        decide(); so it reads stored columns only and is deterministic."""
        raise NotImplementedError(f"stage {self.name} has no global decision")


def stored_threshold(threshold: float, column_type: pa.DataType) -> float:
    """`threshold` as a score column of `column_type` stores it (map values and list items for nested types).

    decide() compares stored scores with this, not with the float64 threshold: a border band of exactly 0.04
    is stored as float32 0.0399999991, which "at least 0.04" must still reject. A score computed as exactly
    the threshold is stored as exactly this value, so each documented boundary holds in the column's type.
    """
    while pa.types.is_map(column_type) or pa.types.is_list(column_type):
        column_type = column_type.item_type if pa.types.is_map(column_type) else column_type.value_type
    if pa.types.is_floating(column_type):
        return float(np.asarray(threshold, dtype=column_type.to_pandas_dtype()))
    return threshold


@dataclass
class StageStats:
    """Counts of one stage over one shard; summed across shards for the manifest."""

    name: str
    rows_in: int = 0
    rows_out: int = 0
    seconds: float = 0.0
    rejects: dict[str, int] = field(default_factory=dict)

    def add_rejects(self, reasons: Sequence[str | None]) -> None:
        for reason in reasons:
            if reason is not None:
                self.rejects[reason] = self.rejects.get(reason, 0) + 1

    def merge(self, other: StageStats) -> None:
        self.rows_in += other.rows_in
        self.rows_out += other.rows_out
        self.seconds += other.seconds
        for reason, count in other.rejects.items():
            self.rejects[reason] = self.rejects.get(reason, 0) + count

    def to_json(self) -> dict[str, Any]:
        rate = self.rows_in / self.seconds if self.seconds > 0 else None
        return {
            "name": self.name,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "rejects": dict(sorted(self.rejects.items())),
            "seconds": round(self.seconds, 6),
            "rows_per_s": round(rate, 3) if rate is not None else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StageStats:
        return cls(data["name"], data["rows_in"], data["rows_out"], data["seconds"], dict(data["rejects"]))


STAGE_REGISTRY: dict[str, type[Stage]] = {}


def register_stage(cls: type[Stage]) -> type[Stage]:
    if cls.op in STAGE_REGISTRY and STAGE_REGISTRY[cls.op] is not cls:
        raise ValueError(f"stage op {cls.op!r} registered twice")
    STAGE_REGISTRY[cls.op] = cls
    return cls
