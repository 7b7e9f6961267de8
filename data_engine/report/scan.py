"""Reading what a report shows: a directory's manifest, and a bounded, deterministic sample of its rows
(every k-th row group, small columns only; big values such as image bytes are fetched for the picked rows)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data_engine.report.drawing import format_number
from data_engine.shards import MANIFEST_NAME, shard_paths


DEFAULT_MAX_SCANNED_ROWS = 200_000
IMAGE_COLUMN = "image_bytes"
# Small columns read for captions and decisions; numeric score columns are found from the schema.
DESCRIPTIVE_COLUMNS = ("id", "source_dataset", "upstream_id", "license", "image_format", "width", "height",
                       "reject_reason", "reject_stage", "reject_detail")
# Numeric but not a distribution anyone wants to see.
IDENTIFIER_COLUMNS = frozenset({"id", "upstream_id"})
SIZE_COLUMNS = ("width", "height")
REQUIRED_COUNT_KEYS = ("rows_in", "rows_written", "rows_accepted")
# Where each scanned row came from, so large columns can be fetched for the picked rows only.
ROW_GROUP_KEY = "__report_row_group"
ROW_KEY = "__report_row"


class ReportError(Exception):
    """A directory cannot be reported on; the message names the offending path."""


@dataclass(frozen=True)
class ReportInput:
    directory: Path
    manifest: dict[str, Any] | None  # None for a directory without a manifest (a trainer run)


def manifest_schema(report_input: ReportInput) -> str | None:
    schema = (report_input.manifest or {}).get("schema")
    return schema.get("name") if isinstance(schema, dict) else None


@dataclass(frozen=True)
class RowGroupRef:
    shard: Path
    index: int
    num_rows: int
    schema: pa.Schema


@dataclass(frozen=True)
class ScannedRows:
    """The small columns of (a deterministic sample of) a directory's rows, with where each row came from."""

    refs: list[RowGroupRef]  # the row groups read
    rows: pa.Table
    shard_count: int
    rows_on_disk: int

    @property
    def sampled(self) -> bool:
        return self.rows.num_rows < self.rows_on_disk

    def scope_note(self) -> str:
        if self.sampled:
            return f"sampled: {format_number(self.rows.num_rows)} of {format_number(self.rows_on_disk)} rows"
        return f"all {format_number(self.rows_on_disk)} rows"


def load_manifest(directory: Path) -> dict[str, Any]:
    """Read and check the fields the report relies on; raise ReportError naming the path otherwise."""
    path = directory / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: manifest missing; is {directory} a finished stage output?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: malformed manifest ({exc})") from exc
    if not isinstance(manifest, dict):
        raise ReportError(f"{path}: malformed manifest (top level is {type(manifest).__name__}, not an object)")
    for key in REQUIRED_COUNT_KEYS:
        if not is_count(manifest.get(key)):
            raise ReportError(f"{path}: malformed manifest ({key!r} must be a non-negative integer)")
    if not isinstance(manifest.get("rejects", {}), dict):
        raise ReportError(f"{path}: malformed manifest ('rejects' must be an object)")
    stages = manifest.get("stages", [])
    if not isinstance(stages, list) or not all(isinstance(stage, dict) for stage in stages):
        raise ReportError(f"{path}: malformed manifest ('stages' must be a list of objects)")
    return manifest


def load_report_input(directory: Path) -> ReportInput:
    if not directory.is_dir():
        raise ReportError(f"{directory}: no such directory")
    has_manifest = (directory / MANIFEST_NAME).exists()
    return ReportInput(directory, load_manifest(directory) if has_manifest else None)


def read_json_file(path: Path) -> Any:
    """A JSON file a section reads (summaries, eval results); ReportError naming the file when it is broken."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: unreadable JSON ({exc})") from exc


def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def list_row_groups(shards: Sequence[Path]) -> list[RowGroupRef]:
    refs = []
    for shard in shards:
        try:
            metadata = pq.read_metadata(shard)
            schema = pq.read_schema(shard)
        except (OSError, pa.ArrowInvalid) as exc:
            raise ReportError(f"{shard}: unreadable parquet ({exc})") from exc
        refs.extend(RowGroupRef(shard, i, metadata.row_group(i).num_rows, schema)
                    for i in range(metadata.num_row_groups))
    return refs


def choose_row_groups(refs: list[RowGroupRef], max_rows: int) -> list[RowGroupRef]:
    """Every k-th row group so about max_rows rows are read; deterministic and spread over all shards."""
    total = sum(ref.num_rows for ref in refs)
    stride = max(1, math.ceil(total / max_rows))
    return refs[::stride]


def is_numeric_field(field: pa.Field) -> bool:
    return pa.types.is_integer(field.type) or pa.types.is_floating(field.type)


def light_columns(schema: pa.Schema) -> list[str]:
    """Descriptive columns and every numeric score column: what the stage section reads for every row."""
    return [field.name for field in schema
            if field.name in DESCRIPTIVE_COLUMNS or (is_numeric_field(field) and field.name not in IDENTIFIER_COLUMNS)]


def scan_rows(directory: Path, columns: Sequence[str] | Callable[[pa.Schema], list[str]],
              max_rows: int) -> ScannedRows:
    """Read `columns` (those a shard has) of about `max_rows` rows, tagged with where each row came from."""
    all_refs = list_row_groups(shard_paths(directory))
    refs = choose_row_groups(all_refs, max_rows)
    tables = []
    for shard, shard_refs in groupby(enumerate(refs), key=lambda item: item[1].shard):
        with pq.ParquetFile(shard) as parquet:
            for position, ref in shard_refs:
                wanted = columns(ref.schema) if callable(columns) else [c for c in columns if c in ref.schema.names]
                table = parquet.read_row_group(ref.index, columns=wanted)
                table = table.append_column(ROW_GROUP_KEY, pa.array(np.full(ref.num_rows, position, np.int32)))
                tables.append(table.append_column(ROW_KEY, pa.array(np.arange(ref.num_rows, dtype=np.int32))))
    if tables:
        # Shards written by different versions of a job may lack a column or widen a type.
        rows = pa.concat_tables(tables, promote_options="permissive")
    else:
        rows = pa.table({ROW_GROUP_KEY: pa.array([], pa.int32()), ROW_KEY: pa.array([], pa.int32())})
    return ScannedRows(refs, rows, len({ref.shard for ref in all_refs}), sum(ref.num_rows for ref in all_refs))


def fetch_values(scan: ScannedRows, picks: Sequence[int], column: str) -> list[Any]:
    """`column` of the picked scanned rows, read only from the row groups they live in (None where absent)."""
    origins = [(scan.rows[ROW_GROUP_KEY][p].as_py(), scan.rows[ROW_KEY][p].as_py()) for p in picks]
    wanted: dict[int, list[int]] = defaultdict(list)
    for group, row in origins:
        wanted[group].append(row)
    found: dict[tuple[int, int], Any] = {}
    for group, group_rows in wanted.items():
        ref = scan.refs[group]
        if column not in ref.schema.names:
            continue
        with pq.ParquetFile(ref.shard) as parquet:
            values = parquet.read_row_group(ref.index, columns=[column]).column(0)
        picked = values.take(pa.array(group_rows)).to_pylist()
        found.update(((group, row), value) for row, value in zip(group_rows, picked))
    return [found.get(origin) for origin in origins]


def picked_records(scan: ScannedRows, picks: Sequence[int]) -> list[dict[str, Any]]:
    fields = scan.rows.select([c for c in scan.rows.column_names if c not in (ROW_GROUP_KEY, ROW_KEY)])
    return fields.take(pa.array(picks, pa.int64())).to_pylist() if picks else []


def accepted_mask(rows: pa.Table) -> np.ndarray:
    if "reject_reason" not in rows.column_names:
        return np.ones(rows.num_rows, dtype=bool)
    return pc.is_null(rows["reject_reason"]).to_numpy(zero_copy_only=False)


def evenly_spaced(positions: Sequence[int], count: int) -> list[int]:
    n, k = len(positions), min(count, len(positions))
    return [positions[(i * n) // k] for i in range(k)]


def pick_per_group(keys: Sequence[Any], count: int) -> dict[Any, list[int]]:
    """Up to `count` evenly spaced positions for every non-null key (a reject reason, a sub-task)."""
    by_key: dict[Any, list[int]] = defaultdict(list)
    for position, key in enumerate(keys):
        if key is not None:
            by_key[key].append(position)
    return {key: evenly_spaced(by_key[key], count) for key in sorted(by_key)}
