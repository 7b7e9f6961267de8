"""Apply one stage to one shard's rows: the per-row bookkeeping shared by every executor.

Rows are never dropped. A row rejected earlier passes through untouched (new columns null); a row whose
processing raises is retried alone so one bad row cannot sink its batch, and then carries `error:<Type>`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from data_engine.stage import REJECT_COLUMN, REJECT_DETAIL_COLUMN, Stage, StageStats

_MAX_DETAIL_CHARS = 500


class StageOutputError(RuntimeError):
    """A stage returned columns that do not match its declaration (a bug in the stage, not bad data)."""


def _call_isolating_row_errors(stage: Stage, batch: pa.Table) -> list[dict[str, Any]]:
    """Run process_batch; if the batch raises, run its rows one by one and record the failing ones.

    Only the stage's own call is guarded: a StageOutputError (wrong columns) is a bug and propagates.
    """
    try:
        columns = stage.process_batch(batch)
    except Exception as exc:  # the data's failure, recorded as data
        if batch.num_rows == 1:
            return [{REJECT_COLUMN: f"error:{type(exc).__name__}",
                     REJECT_DETAIL_COLUMN: str(exc)[:_MAX_DETAIL_CHARS]}]
        return [result for index in range(batch.num_rows)
                for result in _call_isolating_row_errors(stage, batch.slice(index, 1))]
    return _rows_from_columns(stage, columns, batch.num_rows)


def _rows_from_columns(stage: Stage, columns: Any, expected_rows: int) -> list[dict[str, Any]]:
    unknown = set(columns) - set(stage.result_columns())
    if unknown:
        raise StageOutputError(f"stage {stage.name} returned undeclared columns {sorted(unknown)}")
    for name, values in columns.items():
        if len(values) != expected_rows:
            raise StageOutputError(f"stage {stage.name}: column {name} has {len(values)} values for {expected_rows} rows")
    return [{name: values[i] for name, values in columns.items()} for i in range(expected_rows)]


def apply_stage(stage: Stage, table: pa.Table, batch_size: int) -> tuple[pa.Table, StageStats]:
    """Process the accepted rows of `table` in batches, then apply the stage's threshold decisions."""
    started = time.perf_counter()
    stats = StageStats(stage.name)
    reasons: list[str | None] = table.column("reject_reason").to_pylist()
    accepted = [i for i, reason in enumerate(reasons) if reason is None]
    stats.rows_in = len(accepted)

    results: list[dict[str, Any]] = []
    accepted_table = table.take(accepted) if accepted else table.slice(0, 0)
    for start in range(0, len(accepted), batch_size):
        results.extend(_call_isolating_row_errors(stage, accepted_table.slice(start, batch_size)))

    columns = _merge_columns(stage, table, accepted, results)
    stage_of_reject: list[str | None] = table.column("reject_stage").to_pylist()
    details: list[str | None] = table.column("reject_detail").to_pylist()
    for row_index, result in zip(accepted, results):
        reason = result.get(REJECT_COLUMN)
        if reason is not None:
            reasons[row_index], stage_of_reject[row_index] = reason, stage.name
            details[row_index] = result.get(REJECT_DETAIL_COLUMN)
    new_types = {f.name: f.type for f in stage.output_fields()}
    table = _with_columns(table, columns | {"reject_reason": reasons, "reject_stage": stage_of_reject,
                                            "reject_detail": details}, new_types)

    still_accepted = [i for i in accepted if reasons[i] is None]
    if still_accepted:
        decisions = stage.decide(table.take(still_accepted))
        _check_decisions(stage, decisions, len(still_accepted))
        for row_index, reason in zip(still_accepted, decisions):
            if reason is not None:
                reasons[row_index], stage_of_reject[row_index] = reason, stage.name
                details[row_index] = None
        table = _with_columns(table, {"reject_reason": reasons, "reject_stage": stage_of_reject,
                                      "reject_detail": details}, {})

    stats.add_rejects([reasons[i] for i in accepted])
    stats.rows_out = sum(1 for i in accepted if reasons[i] is None)
    stats.seconds = time.perf_counter() - started
    return table, stats


def _check_decisions(stage: Stage, decisions: Sequence[str | None], expected: int) -> None:
    if len(decisions) != expected:
        raise StageOutputError(f"stage {stage.name}: decide() returned {len(decisions)} reasons for {expected} rows")
    undeclared = {d for d in decisions if d is not None} - stage.decision_reasons
    if undeclared:
        raise StageOutputError(f"stage {stage.name}: decide() returned undeclared reasons {sorted(undeclared)}")


def _merge_columns(stage: Stage, table: pa.Table, accepted: list[int],
                   results: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Full-length column values: new columns null except processed rows; replaced columns patched."""
    merged: dict[str, list[Any]] = {}
    for field in stage.output_fields():
        merged[field.name] = [None] * table.num_rows
    for name in stage.replaced_columns():
        merged[name] = table.column(name).to_pylist()
    for row_index, result in zip(accepted, results):
        for name in merged:
            if name in result:
                merged[name][row_index] = result[name]
    return merged


def _with_columns(table: pa.Table, columns: dict[str, list[Any]], new_types: dict[str, pa.DataType]) -> pa.Table:
    for name, values in columns.items():
        if name in table.column_names:
            field = table.schema.field(name)
            table = table.set_column(table.column_names.index(name), field, pa.array(values, type=field.type))
        else:
            table = table.append_column(pa.field(name, new_types[name]), pa.array(values, type=new_types[name]))
    return table
