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
from data_engine.stage import StageConfig, register_stage
from data_engine.stages.global_sampling_base import GlobalSamplingStage


class RebalanceStageConfig(StageConfig, RebalanceConfig):
    """The RebalanceConfig fields (method, tail_threshold, segments, weak_categories, boost, seed)."""


@register_stage
class RebalanceStage(GlobalSamplingStage[RebalanceStageConfig]):
    op = "rebalance"
    Config = RebalanceStageConfig
    added_fields = ADDED_FIELDS
    kept_column = "rebalance_kept"
    reject_reason = REJECT_REASON
    decision_reasons = frozenset({REJECT_REASON})
    threshold_fields = frozenset(RebalanceConfig.model_fields)  # all read by the global decision only

    def global_inputs(self) -> tuple[str, ...]:
        return ("tags",)

    def decide_globally(self, candidates: pa.Table) -> Mapping[str, Sequence[Any]]:
        return decision_columns(candidates, self.config)

    def finalize_output(self, out_dir: Path) -> None:
        redecide(out_dir, {})  # decided over every shard, then the stats and the manifest count the rejects
        write_summary(out_dir, self.config)
