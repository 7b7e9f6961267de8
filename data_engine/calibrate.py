"""Propose thresholds that reach a target retention, from a finished job output's stored scores.

Method (one scale for every threshold, so their ratios stay those of the job): each threshold a stage
declares as a bound on a quality score (`Stage.score_bounds`: IQA cascade, aesthetic, borders) is multiplied
by k when it bounds the score from below ("at least t") and divided by k when it bounds it from above ("at
most t"), clamped to the field's allowed range and rounded to 4 significant digits. k = 1 is the output's
current thresholds, k > 1 tightens all of them, k < 1 loosens them. Retention is the share of the output's
rows accepted when the output is redecided with those thresholds (every decision, the global ones such as
dedup included, from the stored scores: `data_engine.redecide.decide_tables`); it does not grow with k, so k
is found by bisection on log k, and the proposal is the side of the boundary whose retention is nearer the
target. Thresholds that are 0 (a rule switched off) are left alone; a stage with `enforce: false` (stored
scores, no decision: Table 4's stage1_208p) is switched on, so an output that scored every row without
rejecting on quality is the natural start. Rows a stage never scored (the job rejected them earlier) stay
`unprocessed` under looser thresholds, so loosening below the job's own thresholds cannot reach them: the
result says how many, and rerunning the job with the proposal scores them.
Nothing is written: `redecide` applies the proposal (`redecide_command`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import annotated_types
import pyarrow as pa

from data_engine.job import JobConfig, JobConfigError, parse_job_config
from data_engine.redecide import UNPROCESSED, apply_threshold_overrides, decide_tables, recount_stats
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
    current_retention: float  # of the output as it is
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
        if only and spec.name not in only:
            continue
        fields = {name: (float(getattr(stage.config, name)), side) for name, side in stage.score_bounds.items()
                  if getattr(stage.config, name)}
        if fields:
            chosen[spec.name] = fields
    if not chosen:
        raise CalibrationError(f"calibrate: job {job.name} has no stage with score thresholds"
                               + (f" among {', '.join(only)}" if only else ""))
    return chosen


def scaled_thresholds(job: JobConfig, fields: dict[str, dict[str, tuple[float, str]]], scale: float) -> Overrides:
    configs = {spec.name: spec.build().config for spec in job.stages}
    overrides: Overrides = {}
    for stage_name, stage_fields in fields.items():
        if getattr(configs[stage_name], "enforce", True) is False:
            overrides[stage_name] = {"enforce": True}
        for name, (value, side) in stage_fields.items():
            low, high = _bounds(type(configs[stage_name]), name)
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


def _boundary(retention: Callable[[float], float], wanted: float, loose: float, tight: float) -> tuple[float, float]:
    """Bisection on log k from retention(loose) >= wanted > retention(tight) to a bracket of width ~1e-8."""
    for _ in range(BISECTION_STEPS):
        middle = (loose + tight) / 2
        if retention(middle) >= wanted:
            loose = middle
        else:
            tight = middle
    return loose, tight


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
        if log_scale not in results:
            overrides = scaled_thresholds(job, fields, math.exp(log_scale))
            try:
                results[log_scale] = (overrides, *evaluate(tables, job, overrides))
            except JobConfigError:
                results[log_scale] = None
        outcome = results[log_scale]
        return -1.0 if outcome is None else outcome[2] / outcome[1] if outcome[1] else 0.0

    at_current_scale = retention(0.0)  # differs from the output's own retention where a stage is switched on
    loosest, tightest = math.log(SCALE_RANGE[0]), math.log(SCALE_RANGE[1])
    most = retention(loosest)
    notes = []
    if retention(tightest) >= target_retention:
        best, reached = tightest, False
        notes.append("even the tightest thresholds keep more than the target")
    elif most < target_retention:
        reached = False
        notes.append(f"no thresholds keep the target: at most {most:.3f}, bounded by the other rejects "
                     "(decode, dedup, unscaled rules, rows never scored)")
        # The least loosening that keeps the most: the output's own thresholds when they already do.
        best = 0.0 if at_current_scale >= most else _boundary(retention, most, loosest, 0.0)[0]
    else:
        reached = True
        kept_side, dropped_side = _boundary(retention, target_retention, loosest, tightest)
        best = min((kept_side, dropped_side), key=lambda side: abs(retention(side) - target_retention))
    overrides, rows, accepted, funnel = results[best]  # a side whose retention is >= 0, so valid
    unprocessed = sum(entry["rejects"].get(UNPROCESSED, 0) for entry in funnel)
    if unprocessed:
        notes.append(f"{unprocessed} rows were never scored by a stage these thresholds let them reach "
                     f"({UNPROCESSED}): rerun the job with them to score those rows")
    current = sum(table.column("reject_reason").null_count for table in tables) / rows if rows else 0.0
    return Calibration(target_retention, math.exp(best), accepted / rows if rows else 0.0, rows, accepted, overrides,
                       funnel, current, reached, notes)


def redecide_command(shard_dir: Path | str, thresholds: Overrides) -> str:
    sets = " ".join(f"--set stages.{stage}.config.{name}={value}"
                    for stage, fields in thresholds.items() for name, value in fields.items())
    return f"python -m pipelines redecide {shard_dir} {sets}"
