"""Re-apply the decisions of a finished job output to its stored scores, without recomputing them.

Only threshold fields (each stage's `threshold_fields`) may change. Each row is decided again from what is
stored, never from the decision a previous run wrote over it:
- a reject recorded while processing (a corrupt file, `error:...`) stays: no threshold made it;
- any other row goes through the stages in order. A stage that processed it (its stored columns say so,
  `Stage.processed_rows`) applies its decide() with the new thresholds; a stage that never saw it (the job
  rejected it earlier) marks it `unprocessed`, and rerunning the job (into a new directory) scores it;
- a stage with a global decision (dedup) first decides over every row that reaches it under the new
  decisions, from stored columns (hashes, quality scores), so a kept photo is never left marked as the
  duplicate of a copy the new thresholds reject.
So the result is a function of the stored scores and the thresholds alone: redecide twice with the same
thresholds gives the result of once, and redecide back to the job's thresholds gives the job's result (the
job itself ends with `redecide(out, {})` when a stage has a global decision).
Each shard is replaced atomically; an interrupted redecide is finished by running it again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from data_engine.job import JobConfig, JobConfigError, parse_job_config
from data_engine.output_dir import build_manifest, job_fingerprint, replace_fingerprint, write_manifest
from data_engine.shards import (MANIFEST_NAME, ShardDirError, read_manifest, read_shard, read_shard_stats, shard_paths,
                                write_shard)
from data_engine.stage import Stage, StageStats

UNPROCESSED = "unprocessed"
UNPROCESSED_DETAIL = "rejected upstream when this stage ran; rerun the job to score it"
DECISION_COLUMNS = ("reject_reason", "reject_stage", "reject_detail")
# stage name -> row id -> the stage's globally decided columns for that row (rows absent: null)
GlobalDecisions = dict[str, dict[str, dict[str, Any]]]


def apply_threshold_overrides(job: JobConfig, overrides: dict[str, dict[str, Any]]) -> JobConfig:
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


def _take(table: pa.Table, rows: list[int]) -> pa.Table:
    return table.take(pa.array(rows, pa.int64()))  # typed: an empty list of rows has no type of its own


def _with_global_columns(table: pa.Table, stage: Stage, decided: dict[str, dict[str, Any]]) -> pa.Table:
    ids = table.column("id").to_pylist()
    for field in stage.output_fields():
        if field.name in stage.global_outputs():
            values = [decided[row_id][field.name] if row_id in decided else None for row_id in ids]
            table = table.set_column(table.column_names.index(field.name), table.schema.field(field.name),
                                     pa.array(values, type=table.schema.field(field.name).type))
    return table


def redecide_table(table: pa.Table, stages: Sequence[Stage], global_decisions: GlobalDecisions | None = None, *,
                   until: int | None = None) -> pa.Table:
    """`table` with its decision columns (and the global stages' decided columns) recomputed by `stages[:until]`."""
    global_decisions = global_decisions or {}
    order = {stage.name: index for index, stage in enumerate(stages)}
    reasons = table.column("reject_reason").to_pylist()
    rejected_at = table.column("reject_stage").to_pylist()
    details = table.column("reject_detail").to_pylist()
    # Decisions (and `unprocessed`) are reopened; a reject made while processing stays where it is.
    for row, (reason, stage_name) in enumerate(zip(reasons, rejected_at)):
        if stage_name in order and (reason == UNPROCESSED or reason in stages[order[stage_name]].decision_reasons):
            reasons[row] = rejected_at[row] = details[row] = None
    for stage in stages[:until]:
        if stage.global_outputs():
            if stage.name not in global_decisions:
                raise ValueError(f"redecide: stage {stage.name} decides globally; pass its global decisions")
            table = _with_global_columns(table, stage, global_decisions[stage.name])
        open_rows = [row for row, reason in enumerate(reasons) if reason is None]
        if not open_rows:
            continue
        reached = _take(table, open_rows)
        processed = stage.processed_rows(reached)
        scored = [row for row, seen in zip(open_rows, processed) if seen]
        for row, seen in zip(open_rows, processed):
            if not seen:
                reasons[row], rejected_at[row], details[row] = UNPROCESSED, stage.name, UNPROCESSED_DETAIL
        if scored and stage.decision_reasons:
            for row, decision in zip(scored, stage.decide(_take(table, scored))):
                if decision is not None:
                    reasons[row], rejected_at[row] = decision, stage.name
    for name, values in zip(DECISION_COLUMNS, (reasons, rejected_at, details)):
        table = table.set_column(table.column_names.index(name), table.schema.field(name),
                                 pa.array(values, type=pa.string()))
    return table


def global_decisions(read_tables: Callable[[], Iterable[pa.Table]], stages: Sequence[Stage]) -> GlobalDecisions:
    """Run each global decision, in stage order, over the rows that reach it; `read_tables` yields every shard's
    table (called once per global stage)."""
    decided: GlobalDecisions = {}
    for index, stage in enumerate(stages):
        if not stage.global_outputs():
            continue
        parts = []
        for table in read_tables():
            table = redecide_table(table, stages, decided, until=index)
            open_rows = [row for row, reason in enumerate(table.column("reject_reason").to_pylist()) if reason is None]
            reached = _take(table, open_rows)
            processed = pa.array(stage.processed_rows(reached), pa.bool_())
            names = ["id"] + [name for name in stage.global_inputs() if name in table.column_names and name != "id"]
            parts.append(reached.filter(processed).select(names))
        candidates = pa.concat_tables(parts) if parts else None
        if candidates is None or candidates.num_rows == 0:
            decided[stage.name] = {}
            continue
        ids = candidates.column("id").to_pylist()
        if len(set(ids)) != len(ids):
            repeated = sorted({row_id for row_id in ids if ids.count(row_id) > 1})[:5]
            raise ShardDirError(f"redecide: row ids must be unique for {stage.name}'s global decision; "
                                f"repeated: {repeated}")
        columns = stage.decide_globally(candidates)
        decided[stage.name] = {row_id: {name: values[position] for name, values in columns.items()}
                               for position, row_id in enumerate(ids)}
    return decided


def decide_tables(tables: Sequence[pa.Table], stages: Sequence[Stage]) -> list[pa.Table]:
    """Every table redecided under `stages`, global decisions included (all tables in memory)."""
    decided = global_decisions(lambda: tables, stages)
    return [redecide_table(table, stages, decided) for table in tables]


def recount_stats(table: pa.Table, stages: Sequence[Stage],
                  previous: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
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
    job = apply_threshold_overrides(parse_job_config(manifest["config"], source=str(shard_dir / MANIFEST_NAME)),
                                    overrides)
    stages = [spec.build() for spec in job.stages]
    paths = shard_paths(shard_dir)
    decided = global_decisions(lambda: (read_shard(path) for path in paths), stages)
    shard_ids = []
    for path in paths:
        shard_id = int(path.name[5:10])
        table = redecide_table(read_shard(path), stages, decided)
        previous = read_shard_stats(shard_dir, shard_id)
        write_shard(shard_dir, shard_id, table, recount_stats(table, stages, previous["stages"]),
                    row_group_rows=job.row_group_rows, node_id=previous.get("node_id"))
        shard_ids.append(shard_id)
    input_info = manifest["input"]
    new_manifest = build_manifest(job, shard_dir, shard_ids, items_count=input_info["n_items"],
                                  listing_hash=input_info["listing_hash"])
    new_manifest["timings"] = manifest.get("timings", {})
    # The configuration that computed the scores: the job's, however many redecides came after it.
    new_manifest["redecided_from"] = manifest.get("redecided_from", manifest["config_hash"])
    replace_fingerprint(shard_dir, job_fingerprint(job, input_info["listing_hash"]))
    write_manifest(shard_dir, new_manifest)
    return new_manifest
