"""Re-apply filter thresholds to a finished stage output from its stored scores, without recomputing them.

Only threshold fields (each stage's `threshold_fields`) may change. Rows that a changed threshold now lets
through but that were rejected before a later stage ran have no scores from that stage: they get the
reason `unprocessed` at that stage, and rerunning the job (into a new directory) scores them.
Each shard is replaced atomically; an interrupted redecide is finished by running it again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from data_engine.executor import ShardPlan, build_manifest, job_fingerprint
from data_engine.job import JobConfig, JobConfigError, parse_job_config
from data_engine.shards import (JOB_FINGERPRINT_NAME, MANIFEST_NAME, atomic_write_json, read_manifest,
                                read_shard, read_shard_stats, shard_paths, write_shard)
from data_engine.stage import Stage, StageStats

UNPROCESSED = "unprocessed"


def _apply_threshold_overrides(job: JobConfig, overrides: dict[str, dict[str, Any]]) -> JobConfig:
    data = job.model_dump(mode="json", by_alias=True)
    stages_by_name = {spec.name: (index, spec.build()) for index, spec in enumerate(job.stages)}
    for stage_name, fields in overrides.items():
        if stage_name not in stages_by_name:
            raise JobConfigError(f"redecide: no stage named {stage_name!r}; stages: {', '.join(stages_by_name)}")
        index, stage = stages_by_name[stage_name]
        for field_name, value in fields.items():
            if field_name not in stage.threshold_fields:
                allowed = ", ".join(sorted(stage.threshold_fields)) or "none"
                raise JobConfigError(f"redecide: stages.{stage_name}.config.{field_name} is not a threshold; "
                                     f"allowed: {allowed}")
            data["stages"][index]["config"][field_name] = value
    return parse_job_config(data, source="redecide")


def redecide_table(table: pa.Table, stages: list[Stage]) -> pa.Table:
    order = {stage.name: index for index, stage in enumerate(stages)}
    reasons = table.column("reject_reason").to_pylist()
    rejected_at = table.column("reject_stage").to_pylist()
    details = table.column("reject_detail").to_pylist()
    # Index of the stage that rejected each row when the job ran; rows rejected by a threshold are reopened.
    original_index = [order.get(stage, -1) if stage is not None else len(stages) for stage in rejected_at]
    for row, (reason, stage_name) in enumerate(zip(reasons, rejected_at)):
        if stage_name in order and reason in stages[order[stage_name]].decision_reasons:
            reasons[row] = rejected_at[row] = details[row] = None
    for index, stage in enumerate(stages):
        open_rows = [row for row, reason in enumerate(reasons) if reason is None]
        never_processed = [row for row in open_rows if original_index[row] < index]
        for row in never_processed:
            reasons[row], rejected_at[row] = UNPROCESSED, stage.name
            details[row] = "rejected upstream when this stage ran; rerun the job to score it"
        scored = [row for row in open_rows if original_index[row] >= index]
        if scored and stage.decision_reasons:
            for row, decision in zip(scored, stage.decide(table.take(scored))):
                if decision is not None:
                    reasons[row], rejected_at[row] = decision, stage.name
    for name, values in (("reject_reason", reasons), ("reject_stage", rejected_at), ("reject_detail", details)):
        table = table.set_column(table.column_names.index(name), table.schema.field(name),
                                 pa.array(values, type=pa.string()))
    return table


def _recount_stats(table: pa.Table, previous: list[dict[str, Any]], stages: list[Stage]) -> list[dict[str, Any]]:
    """Stage counts from the new decisions; timings stay those of the run that computed the scores."""
    reasons = table.column("reject_reason").to_pylist()
    rejected_at = table.column("reject_stage").to_pylist()
    names = ["read"] + [stage.name for stage in stages]
    position = {name: index for index, name in enumerate(names)}
    row_end = [position[s] if s is not None else len(names) for s in rejected_at]
    seconds = {entry["name"]: entry["seconds"] for entry in previous}
    stats = []
    for index, name in enumerate(names):
        entry = StageStats(name, seconds=seconds.get(name, 0.0))
        entry.rows_in = sum(1 for end in row_end if end >= index)
        entry.rows_out = sum(1 for end in row_end if end > index)
        entry.add_rejects([r for r, end in zip(reasons, row_end) if end == index])
        stats.append(entry.to_json())
    return stats


def redecide(shard_dir: Path, overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Rewrite every shard of `shard_dir` with decisions under the overridden thresholds; returns the manifest."""
    manifest = read_manifest(shard_dir)
    job = _apply_threshold_overrides(parse_job_config(manifest["config"], source=str(shard_dir / MANIFEST_NAME)),
                                     overrides)
    stages = [spec.build() for spec in job.stages]
    plans = []
    for path in shard_paths(shard_dir):
        shard_id = int(path.name[5:10])
        table = redecide_table(read_shard(path), stages)
        previous = read_shard_stats(shard_dir, shard_id)
        stats = _recount_stats(table, previous["stages"], stages)
        write_shard(shard_dir, shard_id, table, stats, row_group_rows=job.row_group_rows,
                    node_id=previous.get("node_id"))
        plans.append(ShardPlan(shard_id, []))
    input_info = manifest["input"]
    new_manifest = build_manifest(job, shard_dir, plans, items_count=input_info["n_items"],
                                  listing_hash=input_info["listing_hash"])
    new_manifest["timings"] = manifest.get("timings", {})
    new_manifest["redecided_from"] = manifest["config_hash"]
    fingerprint_path = shard_dir / JOB_FINGERPRINT_NAME
    atomic_write_json(fingerprint_path, job_fingerprint(job, input_info["listing_hash"]))
    atomic_write_json(shard_dir / MANIFEST_NAME, new_manifest)
    return new_manifest
