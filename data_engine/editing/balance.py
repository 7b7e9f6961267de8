"""balance_edits: the global balancing pass over edit triplets (report 5.1.7), the last stage of `edit_data`.

Like the rebalance step of `rebalance.yaml`, it needs every row, so per row it only declares its columns and
decides them globally (`decide_globally`, run after the job by `finalize_output` and again by every
`redecide`); decide() then rejects an unselected row with `balance_downsampled` (never dropped).

The decision, over the rows that reach the stage:
- a cell is one combination of the five labels (`BALANCE_AXES`); each cell may give at most `max_per_cell`
  rows (its cap; default: all of them);
- `targets` gives, per axis, the share each value should have (shares sum to 1; an axis left out is not
  steered; rows with a value its axis gives no share are not selected). A target value no row carries cannot
  be met: it is left out and the other shares scaled up (the summary lists it as unreachable);
- per-cell quotas come from iterative proportional fitting under the caps: the cell weights start at the
  caps and are scaled, axis by axis, toward the target counts of a selection of N rows, then cut back to the
  caps, until every axis is within `tolerance` of its targets; N is the largest size for which that
  converges (bisection; at most `max_rows`). Quotas are the fitted weights rounded down, the rows left over
  given to the cells with the largest remainders that are under their cap;
- within a cell the rows with the smallest hash of (seed, row id) are kept, so the selection depends only on
  the rows, the config and the seed, not on order or sharding.
`balance_report.json` beside the shards holds the before/after table per axis (counts, shares, targets) and
the report draws it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from data_engine.editing.triplet import AXIS_VALUES, BALANCE_AXES
from data_engine.rebalance.sampling import uniform
from data_engine.redecide import redecide
from data_engine.report import (ReportInput, ReportOptions, SectionKind, format_number, heading, read_json_file,
                                register_section, render_manifest_summary, render_table, scan_rows)
from data_engine.shards import atomic_write_json, iter_shards
from data_engine.stage import StageConfig, register_stage
from data_engine.stages.global_sampling_base import GlobalSamplingStage

REJECT_REASON = "balance_downsampled"
SUMMARY_NAME = "balance_report.json"
ADDED_FIELDS = (pa.field("balance_cell", pa.string()),  # the row's five labels joined by "|"
                pa.field("balance_cell_quota", pa.int32()),  # rows its cell keeps
                pa.field("balance_kept", pa.bool_()))
Cell = tuple[str, ...]


class BalanceConfig(StageConfig):
    targets: dict[str, dict[str, float]] = Field(default_factory=dict)  # axis -> value -> share
    max_per_cell: int | None = Field(default=None, gt=0)
    max_rows: int | None = Field(default=None, gt=0)
    tolerance: float = Field(default=0.005, gt=0, lt=0.1)  # of the selection size, per axis value
    seed: int = 0

    @model_validator(mode="after")
    def _targets(self) -> BalanceConfig:
        for axis, shares in self.targets.items():
            if axis not in BALANCE_AXES:
                raise ValueError(f"targets: unknown axis {axis!r}; axes: {', '.join(BALANCE_AXES)}")
            unknown = sorted(set(shares) - set(AXIS_VALUES[axis]))
            if unknown:
                raise ValueError(f"targets.{axis}: unknown values {unknown}; allowed: {', '.join(AXIS_VALUES[axis])}")
            if any(share < 0 for share in shares.values()) or not math.isclose(sum(shares.values()), 1.0,
                                                                                abs_tol=1e-6):
                raise ValueError(f"targets.{axis}: shares must be >= 0 and sum to 1, got {sum(shares.values()):g}")
        return self


@dataclass(frozen=True)
class BalanceDecision:
    cells: list[str]
    quotas: list[int]
    kept: list[bool]
    targets: dict[str, dict[str, float]]  # the targets met (unreachable values left out, shares rescaled)
    unreachable: dict[str, list[str]]


def _fit(caps: np.ndarray, members: list[list[np.ndarray]], shares: list[np.ndarray], size: float,
         tolerance: float, iterations: int = 300) -> np.ndarray | None:
    """Cell weights <= caps whose sums over each axis value are size x share (within tolerance), or None."""
    weights = caps.astype(np.float64).copy()
    for _ in range(iterations):
        for value_masks, value_shares in zip(members, shares):
            for mask, share in zip(value_masks, value_shares):
                total = weights[mask].sum()
                if total > 0:
                    weights[mask] *= share * size / total
        np.minimum(weights, caps, out=weights)
        worst = max(abs(weights[mask].sum() - share * size) for value_masks, value_shares in zip(members, shares)
                    for mask, share in zip(value_masks, value_shares))
        if worst <= tolerance * size:
            return weights
    return None


def _round_quotas(weights: np.ndarray, caps: np.ndarray, size: int, keys: list[str]) -> np.ndarray:
    quotas = np.floor(weights + 1e-9).astype(np.int64)
    remainders = weights - quotas
    order = sorted(range(len(keys)), key=lambda c: (-remainders[c], keys[c]))
    for cell in order:
        if quotas.sum() >= size:
            break
        if quotas[cell] < caps[cell] and remainders[cell] > 1e-9:
            quotas[cell] += 1
    return quotas


def balance_selection(ids: Sequence[str], labels: Sequence[Mapping[str, str | None]],
                      config: BalanceConfig) -> BalanceDecision:
    """The decision for every row (`labels`: the BALANCE_AXES values of each row)."""
    if len(set(ids)) != len(ids):
        raise ValueError("balance_edits: row ids must be unique")
    row_cells: list[Cell] = [tuple(str(row.get(axis)) for axis in BALANCE_AXES) for row in labels]
    counts = Counter(row_cells)
    cells = sorted(counts)
    keys = ["|".join(cell) for cell in cells]
    caps = np.array([min(counts[c], config.max_per_cell or counts[c]) for c in cells], dtype=np.float64)
    steered = [(BALANCE_AXES.index(axis), shares) for axis, shares in sorted(config.targets.items())]
    for index, shares in steered:  # a value the targets give no share is not selected
        caps *= np.array([shares.get(cell[index], 0.0) > 0 for cell in cells])
    members, share_arrays, met, unreachable = [], [], {}, {}
    for index, shares in steered:
        axis = BALANCE_AXES[index]
        present = {value: share for value, share in shares.items() if share > 0 and any(
            cap > 0 and cell[index] == value for cell, cap in zip(cells, caps))}
        unreachable[axis] = sorted(value for value, share in shares.items() if share > 0 and value not in present)
        total = sum(present.values())
        met[axis] = {value: share / total for value, share in sorted(present.items())}
        members.append([np.array([cell[index] == value for cell in cells]) for value in met[axis]])
        share_arrays.append(np.array(list(met[axis].values())))
    high = int(min(caps.sum(), config.max_rows or caps.sum()))
    best = np.zeros_like(caps)
    if steered and high > 0:
        fitted = _fit(caps, members, share_arrays, high, config.tolerance)
        if fitted is not None:
            best = fitted
        else:
            low = 0
            while high - low > 1:
                middle = (low + high) // 2
                fitted = _fit(caps, members, share_arrays, middle, config.tolerance)
                if fitted is None:
                    high = middle
                else:
                    low, best = middle, fitted
            high = low
    elif high > 0:  # nothing steered: the caps (scaled down to max_rows) are the quotas
        best = caps * (high / caps.sum())
    quotas = _round_quotas(best, caps, high, keys)
    ranked: dict[Cell, list[tuple[float, int]]] = {}
    for number, (row_id, cell) in enumerate(zip(ids, row_cells)):
        ranked.setdefault(cell, []).append((uniform(config.seed, row_id), number))
    kept = [False] * len(ids)
    for cell, quota in zip(cells, quotas):
        for _, number in sorted(ranked[cell])[:quota]:
            kept[number] = True
    quota_of = dict(zip(cells, quotas.tolist()))
    return BalanceDecision(["|".join(cell) for cell in row_cells], [quota_of[cell] for cell in row_cells], kept,
                           met, unreachable)


def balance_summary(labels: Sequence[Mapping[str, str | None]], decision: BalanceDecision,
                    config: BalanceConfig) -> dict[str, Any]:
    """The before/after table per axis (counts, shares, targets) and the largest cells after balancing."""
    kept, cells = decision.kept, decision.cells
    selected = [row for row, keep in zip(labels, kept) if keep]
    axes = {}
    for axis in BALANCE_AXES:
        before, after = Counter(row.get(axis) for row in labels), Counter(row.get(axis) for row in selected)
        targets = decision.targets.get(axis)
        axes[axis] = {"unreachable": decision.unreachable.get(axis, []), "values": [
            {"value": value, "before": before[value], "before_share": before[value] / max(1, len(labels)),
             "after": after[value], "after_share": after[value] / max(1, len(selected)),
             "target": None if targets is None else targets.get(value, 0.0)}
            for value in sorted(set(before) | set(after), key=str)]}
    cell_counts = Counter(cell for cell, keep in zip(cells, kept) if keep)
    return {"rows_before": len(labels), "rows_after": len(selected), "max_per_cell": config.max_per_cell,
            "seed": config.seed, "cells_before": len(set(cells)), "cells_after": len(cell_counts),
            "largest_cells_after": [{"cell": cell, "rows": count} for cell, count in cell_counts.most_common(10)],
            "axes": axes}


@register_stage
class BalanceEditsStage(GlobalSamplingStage[BalanceConfig]):
    op = "balance_edits"
    Config = BalanceConfig
    added_fields = ADDED_FIELDS
    kept_column = "balance_kept"
    reject_reason = REJECT_REASON
    decision_reasons = frozenset({REJECT_REASON})
    threshold_fields = frozenset(BalanceConfig.model_fields)  # all read by the global decision only

    def global_inputs(self) -> tuple[str, ...]:
        return BALANCE_AXES

    def decide_globally(self, candidates: pa.Table) -> Mapping[str, Sequence[Any]]:
        decision = balance_selection(candidates.column("id").to_pylist(), candidates.select(BALANCE_AXES).to_pylist(),
                                     self.config)
        return {"balance_cell": decision.cells, "balance_cell_quota": decision.quotas,
                "balance_kept": decision.kept}

    def finalize_output(self, out_dir: Path) -> None:
        redecide(out_dir, {})  # decided over every shard, then the stats and the manifest count the rejects
        ids, labels = [], []
        for _, table in iter_shards(out_dir, columns=["id", *BALANCE_AXES, "balance_kept"]):
            for row in table.to_pylist():
                if row["balance_kept"] is not None:  # reached the stage
                    ids.append(row["id"])
                    labels.append({axis: row[axis] for axis in BALANCE_AXES})
        decision = balance_selection(ids, labels, self.config)  # the stored decision, with its targets
        atomic_write_json(out_dir / SUMMARY_NAME, balance_summary(labels, decision, self.config))


def render_balance_section(report_input: ReportInput, options: ReportOptions) -> str:
    summary = read_json_file(report_input.directory / SUMMARY_NAME)
    scan = scan_rows(report_input.directory, ["id"], options.max_scanned_rows)
    parts = [render_manifest_summary(report_input.manifest or {}, scan),
             heading("Edit balancing", f"{summary.get('rows_before')} -> {summary.get('rows_after')} triplets, "
                                       f"cap {summary.get('max_per_cell')} per cell, seed {summary.get('seed')}")]
    for axis, table in (summary.get("axes") or {}).items():
        rows = [[str(v.get("value")), v.get("before"), v.get("before_share"), v.get("after"), v.get("after_share"),
                 "-" if v.get("target") is None else v.get("target")] for v in table.get("values") or []]
        note = f"unreachable targets: {', '.join(table['unreachable'])}" if table.get("unreachable") else ""
        parts.append(heading(axis, note) + render_table(
            ["value", "before", "share before", "after", "share after", "target"], rows))
    largest = [[c.get("cell"), c.get("rows")] for c in summary.get("largest_cells_after") or []]
    parts.append(heading("Largest cells after balancing") + render_table(["cell", "rows"], largest))
    return "".join(parts) + f"<p class=\"muted\">{format_number(summary.get('cells_after'))} cells kept</p>"


BALANCE_SECTION = register_section(SectionKind(
    "edit_balance", lambda report_input: report_input.manifest is not None
    and (report_input.directory / SUMMARY_NAME).is_file(), render_balance_section))
