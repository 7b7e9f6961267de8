"""The base of stages that keep a sample of the rows chosen over every shard at once (frequency rebalancing,
edit balancing): per row they only declare their columns (left empty); `decide_globally` fills them after the
job (`finalize_output`) and in every `redecide`, over the rows that reach the stage; decide() then rejects a row
whose kept flag is False with the stage's reason (never dropped)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pyarrow as pa

from data_engine.stage import ConfigT, Resources, Stage


class GlobalSamplingStage(Stage[ConfigT]):
    added_fields: ClassVar[tuple[pa.Field, ...]]  # every column the global decision writes
    kept_column: ClassVar[str]  # the bool column of `added_fields`: False means sampled out
    reject_reason: ClassVar[str]
    default_resources = Resources(num_cpus=0.5, batch_size=1024)

    def output_fields(self) -> tuple[pa.Field, ...]:
        return self.added_fields

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        return {field.name: [None] * batch.num_rows for field in self.added_fields}

    def global_outputs(self) -> tuple[str, ...]:
        return tuple(field.name for field in self.added_fields)

    def decide(self, scores: pa.Table) -> list[str | None]:
        return [self.reject_reason if kept is False else None for kept in scores.column(self.kept_column).to_pylist()]
