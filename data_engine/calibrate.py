"""Propose thresholds that reach a target retention, from a finished job output's stored scores.

Method (one scale for every threshold, so their ratios stay those of the job): each threshold a stage
declares as a bound on a quality score (`Stage.score_bounds`: IQA cascade, aesthetic, borders) is multiplied
by k when it bounds the score from below ("at least t") and divided by k when it bounds it from above ("at
most t"), clamped to the field's allowed range and rounded to 4 significant digits. k = 1 is the output's
current thresholds, k > 1 tightens all of them, k < 1 loosens them. Retention is the share of the output's
rows accepted when the output is redecided with those thresholds (every decision, the global ones such as
dedup included, from the stored scores: `data_engine.redecide.decide_tables`); it does not grow with k, so k
is found by bisection on log k, and the proposal is the side of the boundary whose retention is nearer the
target. Thresholds that are 0 (a rule switched off) and stages with `enforce: false` are left alone.
Nothing is written: `redecide` applies the proposal (`redecide_command`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import annotated_types
import pyarrow as pa

from data_engine.job import JobConfig, JobConfigError, parse_job_config
from data_engine.redecide import apply_threshold_overrides, decide_tables, recount_stats
from data_engine.shards import MANIFEST_NAME, read_manifest, read_shard, shard_paths
from data_engine.stage import StageStats

SCALE_RANGE = (1e-3, 1e3)  # k searched in this range
BISECTION_STEPS = 30  # log k to within 1e-8: past every step of the retention
SIGNIFICANT_DIGITS = 4

Overrides = dict[str, dict[str, Any]]


class CalibrationError(JobConfigError):
    """Nothing to calibrate, or a target out of range; the message says which (a usage error of the CLI)."""


@dataclass
class Calibration:
    target: float
    scale: float
    retention: float
    rows: int
    accepted: int
    thresholds: Overrides  # stage -> field -> proposed value
    funnel: list[dict[str, Any]]  # per-stage counts under the proposed thresholds
    current_retention: float
    reached: bool  # False when the loosest or tightest thresholds cannot come nearer the target
    notes: list[str] = field(default_factory=list)


def _bounds(config_cls: Any, name: str) -> tuple[float, float]:
    low, high = -math.inf, math.inf
    for constraint in config_cls.model_fields[name].metadata:
        if isinstance(constraint, annotated_types.Ge):
            low = float(constraint.ge)
        elif isinstance(constraint, annotated_types.Le):
            high = float(constraint.le)
    return low, high


def _round(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def calibrated_fields(job: JobConfig, only: Sequence[str] = ()) -> dict[str, dict[str, tuple[float, str]]]:
    """stage -> field -> (current value, "min" | "max") for the thresholds calibration scales."""
    chosen = {}
    names = [spec.name for spec in job.stages]
    unknown = [name for name in only if name not in names]
    if unknown:
        raise JobConfigError(f"calibrate: no stage named {unknown[0]!r}; stages: {', '.join(names)}")
    for spec in job.stages:
        stage = spec.build()
        if (only and spec.name not in only) or not getattr(stage.config, "enforce", True):
            continue
        fields = {name: (float(getattr(stage.config, name)), side) for name, side in stage.score_bounds.items()
                  if getattr(stage.config, name)}
        if fields:
            chosen[spec.name] = fields
    if not chosen:
        raise CalibrationError(f"calibrate: job {job.name} has no enforced stage with score thresholds"
                               + (f" among {', '.join(only)}" if only else ""))
    return chosen


def scaled_thresholds(job: JobConfig, fields: dict[str, dict[str, tuple[float, str]]], scale: float) -> Overrides:
    configs = {spec.name: spec.build().Config for spec in job.stages}
    overrides: Overrides = {}
    for stage_name, stage_fields in fields.items():
        for name, (value, side) in stage_fields.items():
            low, high = _bounds(configs[stage_name], name)
            proposed = value * scale if side == "min" else value / scale
            overrides.setdefault(stage_name, {})[name] = _round(min(high, max(low, proposed)))
    return overrides


def _decision_columns(schema: pa.Schema, job: JobConfig) -> list[str]:
    """Every column but bulk bytes (the images), which no decision reads; stage outputs always stay."""
    outputs = {f.name for spec in job.stages for f in spec.build().output_fields()}
    return [f.name for f in schema if f.name in outputs or not (pa.types.is_binary(f.type)
                                                                or pa.types.is_large_binary(f.type))]


def load_decision_tables(shard_dir: Path, job: JobConfig) -> list[pa.Table]:
    paths = shard_paths(shard_dir)
    if not paths:
        return []
    columns = _decision_columns(read_shard(paths[0]).schema, job)
    return [read_shard(path, columns) for path in paths]


def evaluate(tables: Sequence[pa.Table], job: JobConfig, overrides: Overrides) -> tuple[int, int, list[dict[str, Any]]]:
    """(rows, accepted, funnel) of the output redecided with `overrides`."""
    stages = [spec.build() for spec in apply_threshold_overrides(job, overrides).stages]
    totals: dict[str, StageStats] = {}
    rows = accepted = 0
    for table in decide_tables(tables, stages):
        rows += table.num_rows
        accepted += table.column("reject_reason").null_count
        for entry in recount_stats(table, stages):
            totals.setdefault(entry["name"], StageStats(entry["name"])).merge(StageStats.from_json(entry))
    funnel = [{"name": s.name, "rows_in": s.rows_in, "rows_out": s.rows_out, "rejects": dict(sorted(s.rejects.items()))}
              for s in totals.values()]
    return rows, accepted, funnel


def calibrate(shard_dir: Path, target_retention: float, stages: Sequence[str] = ()) -> Calibration:
    if not 0 < target_retention <= 1:
        raise CalibrationError(f"calibrate: --target-retention must be in (0, 1], got {target_retention}")
    manifest = read_manifest(shard_dir)
    job = parse_job_config(manifest["config"], source=str(shard_dir / MANIFEST_NAME))
    fields = calibrated_fields(job, stages)
    tables = load_decision_tables(shard_dir, job)
    results: dict[float, tuple[Overrides, int, int, list[dict[str, Any]]] | None] = {}

    def retention(log_scale: float) -> float:
        """-1 when the scaled thresholds do not validate (e.g. a lower bound above its upper): too tight."""
        overrides = scaled_thresholds(job, fields, math.exp(log_scale))
        try:
            rows, accepted, funnel = evaluate(tables, job, overrides)
        except JobConfigError:
            results[log_scale] = None
            return -1.0
        results[log_scale] = (overrides, rows, accepted, funnel)
        return accepted / rows if rows else 0.0

    current = retention(0.0)
    loose, tight = math.log(SCALE_RANGE[0]), math.log(SCALE_RANGE[1])
    notes = []
    if retention(loose) < target_retention:
        best, reached = loose, False
        notes.append("even the loosest thresholds keep less than the target: other rejects (decode, dedup, "
                     "unscaled rules) bound the retention")
    elif retention(tight) >= target_retention:
        best, reached = tight, False
        notes.append("even the tightest thresholds keep more than the target")
    else:
        for _ in range(BISECTION_STEPS):  # invariant: retention(loose) >= target > retention(tight)
            middle = (loose + tight) / 2
            if retention(middle) >= target_retention:
                loose = middle
            else:
                tight = middle
        kept_side, dropped_side = retention(loose), retention(tight)
        best = tight if abs(dropped_side - target_retention) < abs(kept_side - target_retention) else loose
        reached = True
    outcome = results[best]
    if outcome is None:
        raise CalibrationError("calibrate: the scaled thresholds do not validate at any scale that reaches the target")
    overrides, rows, accepted, funnel = outcome
    return Calibration(target_retention, math.exp(best), accepted / rows if rows else 0.0, rows, accepted, overrides,
                       funnel, current, reached, notes)


def redecide_command(shard_dir: Path | str, thresholds: Overrides) -> str:
    sets = " ".join(f"--set stages.{stage}.config.{name}={value}"
                    for stage, fields in thresholds.items() for name, value in fields.items())
    return f"python -m pipelines redecide {shard_dir} {sets}"
