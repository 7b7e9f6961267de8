"""rebalance: the global Rebalance step of the rebalance job (report 4.1.3), after embed_captions and tag_captions.

A row's decision needs the tag counts of every row, which no per-shard stage can see: per row this stage only
declares its columns (left empty), and decides them globally (`decide_globally`, the same contract as dedup):
after the job (`finalize_output`) and in every `redecide`, over the rows that reach it. decide() then rejects
a downsampled row with `rebalance_downsampled` (never dropped); the summary the report draws is written last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from data_engine.rebalance.run import ADDED_FIELDS, REJECT_REASON, decision_columns, write_summary
from data_engine.rebalance.sampling import RebalanceConfig
from data_engine.redecide import redecide
from data_engine.stage import Resources, Stage, StageConfig, register_stage


class RebalanceStageConfig(StageConfig, RebalanceConfig):
    """The RebalanceConfig fields (method, tail_threshold, segments, weak_categories, boost, seed)."""


@register_stage
class RebalanceStage(Stage[RebalanceStageConfig]):
    op = "rebalance"
    Config = RebalanceStageConfig
    default_resources = Resources(num_cpus=0.5, batch_size=1024)
    decision_reasons = frozenset({REJECT_REASON})
    threshold_fields = frozenset(RebalanceConfig.model_fields)  # all read by the global decision only

    def output_fields(self) -> tuple[pa.Field, ...]:
        return ADDED_FIELDS

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        return {field.name: [None] * batch.num_rows for field in ADDED_FIELDS}

    def global_outputs(self) -> tuple[str, ...]:
        return tuple(field.name for field in ADDED_FIELDS)

    def global_inputs(self) -> tuple[str, ...]:
        return ("tags",)

    def decide_globally(self, candidates: pa.Table) -> Mapping[str, Sequence[Any]]:
        return decision_columns(candidates, self.config)

    def decide(self, scores: pa.Table) -> list[str | None]:
        return [REJECT_REASON if kept is False else None for kept in scores.column("rebalance_kept").to_pylist()]

    def finalize_output(self, out_dir: Path) -> None:
        redecide(out_dir, {})  # decided over every shard, then the stats and the manifest count the rejects
        write_summary(out_dir, self.config)
