"""One static HTML report over any mix of output directories: data-engine stage outputs, spatial QA, render,
rebalance and trainer runs.

Each directory gets one section, drawn by the first registered section kind that claims it (by its
manifest's schema or job, or, for a directory without a manifest, by the files it holds). The kinds live
next to their domain (`openspatial/report.py`, `render/report.py`, `data_engine/rebalance/report.py`,
`trainer/report.py`) and draw with the helpers here; any other stage output gets the stage section below
(manifest counts, the funnel of rows kept after each stage, score histograms, accepted images and rejected
images per reason).

The file is self-contained: no scripts, no external URLs. Thumbnails are small JPEG data: URIs made with
Pillow and charts are inline SVG, so it can be mailed, archived or opened from a bucket. Every value that
comes from data is HTML-escaped, and a Content-Security-Policy meta tag forbids scripts outright, so a
hostile string that slipped past escaping still could not run. Shards are read column by column, and a
large directory is sampled by reading every k-th row group, so the cost of a report stays bounded.

CLI: python -m data_engine.report --out report.html DIR [DIR...]
"""

from __future__ import annotations

import argparse
import base64
import html
import importlib
import io
import json
import math
import os
import sys
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from data_engine.shards import MANIFEST_NAME, shard_paths

THUMBNAIL_MAX_SIDE = 160
THUMBNAIL_JPEG_QUALITY = 75
HISTOGRAM_BINS = 20
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

ACCEPTED_COLOR = "#2e7d32"
REJECTED_COLOR = "#c62828"
DROPPED_COLOR = "#f3b9b9"
NULL_COLOR = "#9e9e9e"
SERIES_COLORS = ("#57606a", "#c62828", "#1f6feb", "#2e7d32")
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

# Modules that register section kinds, asked in this order before the stage section (the fallback).
SECTION_MODULES = ("trainer.report", "data_engine.rebalance.report", "data_engine.annotation.report", "openspatial.report",
                   "render.report")


class ReportError(Exception):
    """A directory cannot be reported on; the message names the offending path."""


@dataclass(frozen=True)
class ReportOptions:
    sample_rows: int = 24  # images per accepted-samples grid; examples per domain section
    rejected_per_reason: int = 6
    max_scanned_rows: int = DEFAULT_MAX_SCANNED_ROWS


@dataclass(frozen=True)
class ReportInput:
    directory: Path
    manifest: dict[str, Any] | None  # None for a directory without a manifest (a trainer run)


@dataclass(frozen=True)
class SectionKind:
    """A section renderer: `claims` looks at what a directory holds, `render` returns the section's body."""

    name: str
    claims: Callable[[ReportInput], bool]
    render: Callable[[ReportInput, ReportOptions], str]


_SECTION_KINDS: list[SectionKind] = []


def register_section(kind: SectionKind) -> SectionKind:
    if any(existing.name == kind.name for existing in _SECTION_KINDS):
        raise ValueError(f"section kind {kind.name!r} registered twice")
    _SECTION_KINDS.append(kind)
    return kind


def section_kinds() -> list[SectionKind]:
    """Every registered kind, domain kinds first, the stage section last."""
    for module in SECTION_MODULES:
        importlib.import_module(module)
    return [*_SECTION_KINDS, STAGE_SECTION]


def choose_section_kind(report_input: ReportInput) -> SectionKind:
    for kind in section_kinds():
        if kind.claims(report_input):
            return kind
    raise ReportError(f"{report_input.directory / MANIFEST_NAME}: manifest missing; {report_input.directory} is "
                      "neither a finished stage output nor a trainer run directory")


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


@dataclass(frozen=True)
class Thumbnail:
    data_uri: str
    width: int
    height: int


@dataclass(frozen=True)
class SampledRow:
    fields: dict[str, Any]
    thumbnail: Thumbnail | None  # None when the bytes are null or do not decode


@dataclass(frozen=True)
class HistogramBar:
    label: str  # the bin's value range, or "null"
    accepted: int
    rejected: int


@dataclass(frozen=True)
class Histogram:
    bars: list[HistogramBar]  # one per value bin, low to high
    nulls: HistogramBar | None  # nulls, NaN and infinities, counted apart from the value bins
    value_range: tuple[float, float] | None  # None when the column holds no finite value


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    color: str
    note: str = ""  # shown after the value
    remainder: float = 0.0  # drawn after the bar in DROPPED_COLOR (a funnel's rows lost at this step)


@dataclass(frozen=True)
class Series:
    name: str
    points: list[tuple[float, float]]
    color: str


# ----------------------------------------------------------------------------------------------- loading


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
        if not _is_count(manifest.get(key)):
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


def _is_count(value: Any) -> bool:
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


def _is_numeric(field: pa.Field) -> bool:
    return pa.types.is_integer(field.type) or pa.types.is_floating(field.type)


def light_columns(schema: pa.Schema) -> list[str]:
    """Descriptive columns and every numeric score column: what the stage section reads for every row."""
    return [field.name for field in schema
            if field.name in DESCRIPTIVE_COLUMNS or (_is_numeric(field) and field.name not in IDENTIFIER_COLUMNS)]


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


def make_thumbnail(data: bytes | None, max_side: int = THUMBNAIL_MAX_SIDE) -> Thumbnail | None:
    if data is None:
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.thumbnail((max_side, max_side))
            rgb = _flatten_to_rgb(image)
    # Pillow raises many exception types on hostile bytes; any of them just means "no thumbnail".
    except Exception:
        return None
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=THUMBNAIL_JPEG_QUALITY)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return Thumbnail(f"data:image/jpeg;base64,{encoded}", rgb.width, rgb.height)


def _flatten_to_rgb(image: Image.Image) -> Image.Image:
    """JPEG has no alpha: composite transparent images over white instead of letting them go black."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flattened = Image.new("RGB", rgba.size, "white")
        flattened.paste(rgba, mask=rgba.getchannel("A"))
        return flattened
    return image.convert("RGB")


# ------------------------------------------------------------------------------------------ HTML helpers


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def format_number(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def format_share(part: float, whole: float) -> str:
    return f"{part / whole:.1%}" if whole else "—"


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def muted(text: str) -> str:
    return f'<p class="muted">{escape(text)}</p>'


def heading(title: str, note: str = "") -> str:
    suffix = f' <span class="muted">({escape(note)})</span>' if note else ""
    return f"<h3>{escape(title)}{suffix}</h3>"


def render_key_values(pairs: Sequence[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{escape(key)}</th><td>{escape(format_number(value))}</td></tr>" for key, value in pairs)
    return f'<table class="kv">{body}</table>'


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Numbers right-aligned and formatted; everything else escaped text."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{escape(format_number(cell))}</td>'
                         if isinstance(cell, (int, float)) and not isinstance(cell, bool)
                         else f"<td>{escape(format_number(cell))}</td>" for cell in row) + "</tr>"
        for row in rows)
    return f'<table class="grid-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def image_html(thumbnail: Thumbnail | None, alt: str, placeholder: str = "no image") -> str:
    if thumbnail is None:
        return f'<div class="placeholder">{escape(placeholder)}</div>'
    return (f'<img src="{thumbnail.data_uri}" width="{thumbnail.width}" height="{thumbnail.height}" '
            f'alt="{escape(alt)}">')


def caption_line(text: str, css_class: str = "") -> str:
    return f'<div class="line {css_class}" title="{escape(text)}">{escape(text)}</div>'


def render_bar_chart(bars: Sequence[Bar]) -> str:
    """Horizontal bars, one per row, scaled to the largest value (plus remainder)."""
    label_width, bar_width, row_height = 300, 380, 24
    largest = max((bar.value + bar.remainder for bar in bars), default=0) or 1
    shapes = []
    for row, bar in enumerate(bars):
        y = row * row_height
        width = max(1.0, bar_width * bar.value / largest) if bar.value else 0.0
        rest = bar_width * bar.remainder / largest
        text = format_number(bar.value) + (f" {bar.note}" if bar.note else "")
        shapes.append(
            f"<g><title>{escape(bar.label)}: {escape(text)}</title>"
            f'<text x="{label_width - 8}" y="{y + 16}" text-anchor="end">{escape(truncate(bar.label, 42))}</text>'
            f'<rect x="{label_width}" y="{y + 4}" width="{width:.1f}" height="{row_height - 8}" fill="{bar.color}"/>'
            f'<rect x="{label_width + width:.1f}" y="{y + 4}" width="{rest:.1f}" height="{row_height - 8}" '
            f'fill="{DROPPED_COLOR}"/>'
            f'<text x="{label_width + width + rest + 6:.1f}" y="{y + 16}">{escape(text)}</text></g>'
        )
    total_width, total_height = label_width + bar_width + 200, row_height * len(bars)
    return (f'<svg class="chart" width="{total_width}" height="{total_height}" '
            f'viewBox="0 0 {total_width} {total_height}" role="img">{"".join(shapes)}</svg>')


def render_reject_chart(rejects: Mapping[str, Any]) -> str:
    counts = sorted(((str(k), v) for k, v in rejects.items() if isinstance(v, (int, float)) and v > 0),
                    key=lambda item: (-item[1], item[0]))
    if not counts:
        return muted("No rejects.")
    return render_bar_chart([Bar(reason, count, REJECTED_COLOR) for reason, count in counts])


def _axis_position(value: float, low: float, high: float, log: bool) -> float:
    """Where `value` falls between low and high, 0..1, on a linear or log10 scale."""
    if log:
        value, low, high = (math.log10(v) for v in (value, low, high))
    return (value - low) / (high - low) if high > low else 0.5


def _axis_ticks(low: float, high: float, log: bool) -> list[float]:
    if log:
        powers = [10.0 ** e for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
                  if low <= 10.0 ** e <= high]
        # The top of the range too, unless a power of ten already sits near it.
        return powers + ([high] if not powers or high / powers[-1] > 2 else [])
    return [low, high] if high > low else [low]


def render_line_chart(series: Sequence[Series], *, x_label: str, y_label: str, log_x: bool = False,
                      log_y: bool = False, width: int = 420, height: int = 280) -> str:
    """Polylines with a legend; on a log axis only positive values are drawn. A standalone SVG document."""
    drawable = [Series(s.name, [(x, y) for x, y in s.points if (x > 0 or not log_x) and (y > 0 or not log_y)
                                and math.isfinite(x) and math.isfinite(y)], s.color) for s in series]
    points = [p for s in drawable for p in s.points]
    if not points:  # still an SVG document: callers may write it to a .svg file
        return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="40" '
                f'viewBox="0 0 {width} 40" role="img"><text x="8" y="24">no data to plot</text></svg>')
    left, right, top, bottom = 56, 12, 12 + 16 * len(drawable), 40
    x_low, x_high = min(x for x, _ in points), max(x for x, _ in points)
    y_low, y_high = min(y for _, y in points), max(y for _, y in points)
    if not log_y:
        y_low = min(0.0, y_low)

    def place(x: float, y: float) -> tuple[float, float]:
        return (left + (width - left - right) * _axis_position(x, x_low, x_high, log_x),
                height - bottom - (height - top - bottom) * _axis_position(y, y_low, y_high, log_y))

    parts = [f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#57606a"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#57606a"/>']
    for tick in _axis_ticks(x_low, x_high, log_x):
        x, _ = place(tick, y_low)
        parts.append(f'<text x="{x:.1f}" y="{height - bottom + 14}" text-anchor="middle">'
                     f'{escape(format_number(tick))}</text>')
    for tick in _axis_ticks(y_low, y_high, log_y):
        _, y = place(x_low, tick)
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{escape(format_number(tick))}</text>')
    parts.append(f'<text x="{(left + width - right) / 2:.1f}" y="{height - 8}" text-anchor="middle">'
                 f'{escape(x_label)}</text>')
    parts.append(f'<text x="12" y="{(top + height - bottom) / 2:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 12 {(top + height - bottom) / 2:.1f})">{escape(y_label)}</text>')
    for number, line in enumerate(drawable):
        coordinates = " ".join("{:.1f},{:.1f}".format(*place(x, y)) for x, y in line.points)
        parts.append(f'<polyline fill="none" stroke="{line.color}" stroke-width="2" points="{coordinates}">'
                     f"<title>{escape(line.name)}</title></polyline>")
        parts.append(f'<rect x="{left + 8}" y="{4 + 16 * number}" width="10" height="10" fill="{line.color}"/>'
                     f'<text x="{left + 22}" y="{13 + 16 * number}">{escape(line.name)}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img">{"".join(parts)}</svg>')


def compute_histogram(values: np.ndarray, accepted: np.ndarray) -> Histogram:
    finite = np.isfinite(values)
    missing = ~finite
    nulls = HistogramBar("null", int(np.sum(missing & accepted)), int(np.sum(missing & ~accepted))) \
        if missing.any() else None
    if not finite.any():
        return Histogram([], nulls, None)
    low, high = float(values[finite].min()), float(values[finite].max())
    # A constant column gets one bin of width 1 around its value rather than a zero-width range.
    edges = np.histogram_bin_edges(values[finite], bins=HISTOGRAM_BINS if high > low else 1,
                                   range=(low, high) if high > low else (low - 0.5, high + 0.5))
    counts_accepted, _ = np.histogram(values[finite & accepted], bins=edges)
    counts_rejected, _ = np.histogram(values[finite & ~accepted], bins=edges)
    bars = [HistogramBar(f"{format_number(float(edges[i]))} – {format_number(float(edges[i + 1]))}",
                         int(counts_accepted[i]), int(counts_rejected[i])) for i in range(len(edges) - 1)]
    return Histogram(bars, nulls, (low, high))


def _stacked_bar(bar: HistogramBar, x: float, width: float, baseline: float, scale: float, base_color: str) -> str:
    accepted_height, rejected_height = bar.accepted * scale, bar.rejected * scale
    return (f"<g><title>{escape(bar.label)}: {bar.accepted} accepted, {bar.rejected} rejected</title>"
            f'<rect x="{x:.1f}" y="{baseline - accepted_height:.1f}" width="{width:.1f}" '
            f'height="{accepted_height:.1f}" fill="{base_color}"/>'
            f'<rect x="{x:.1f}" y="{baseline - accepted_height - rejected_height:.1f}" width="{width:.1f}" '
            f'height="{rejected_height:.1f}" fill="{REJECTED_COLOR}"/></g>')


def render_histogram(name: str, histogram: Histogram) -> str:
    """Accepted and rejected counts stacked per bin; the null bar stands apart on the right."""
    width, height, left, right, top, bottom = 320, 170, 44, 10, 12, 34
    plot_height, baseline = height - top - bottom, height - bottom
    bars = histogram.bars + ([histogram.nulls] if histogram.nulls else [])
    slots = len(histogram.bars) + (2 if histogram.nulls else 0)  # an empty slot separates the null bar
    slot = (width - left - right) / max(1, slots)
    largest = max((bar.accepted + bar.rejected for bar in bars), default=0) or 1
    shapes = [_stacked_bar(bar, left + slot * i + 1, slot - 2, baseline, plot_height / largest, ACCEPTED_COLOR)
              for i, bar in enumerate(histogram.bars)]
    labels = [f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{largest}</text>',
              f'<text x="{left - 4}" y="{baseline}" text-anchor="end">0</text>']
    if histogram.value_range:
        low, high = histogram.value_range
        labels.append(f'<text x="{left}" y="{baseline + 14}">{escape(format_number(low))}</text>')
        labels.append(f'<text x="{left + slot * len(histogram.bars):.1f}" y="{baseline + 14}" '
                      f'text-anchor="end">{escape(format_number(high))}</text>')
    null_note = "no nulls"
    if histogram.nulls:
        nulls, null_x = histogram.nulls, left + slot * (slots - 1)
        shapes.append(_stacked_bar(nulls, null_x + 1, slot - 2, baseline, plot_height / largest, NULL_COLOR))
        labels.append(f'<text x="{null_x + slot / 2:.1f}" y="{baseline + 14}" text-anchor="middle">null</text>')
        null_note = f"nulls: {nulls.accepted} accepted, {nulls.rejected} rejected"
    axis = f'<line x1="{left}" y1="{baseline}" x2="{width - right}" y2="{baseline}" stroke="#57606a"/>'
    return (f'<figure class="hist"><figcaption><b>{escape(name)}</b> <span class="muted">{escape(null_note)}</span>'
            f'</figcaption><svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
            f'{"".join(shapes)}{axis}{"".join(labels)}</svg></figure>')


def render_histograms(rows: pa.Table, columns: Sequence[str], accepted: np.ndarray) -> str:
    if not columns:
        return muted("No numeric columns.")
    charts = []
    for name in columns:
        values = pc.cast(rows[name], pa.float64()).to_numpy(zero_copy_only=False)  # nulls become NaN
        charts.append(render_histogram(name, compute_histogram(values, accepted)))
    legend = (f'<p class="legend"><span style="background:{ACCEPTED_COLOR}"></span>accepted '
              f'<span style="background:{REJECTED_COLOR}"></span>rejected '
              f'<span style="background:{NULL_COLOR}"></span>null (accepted part)</p>')
    return legend + f'<div class="charts">{"".join(charts)}</div>'


def render_manifest_summary(manifest: Mapping[str, Any], scan: ScannedRows) -> str:
    """Job, schema, input, row counts and timing of a stage output, and a warning when the shards disagree."""
    schema = manifest.get("schema") if isinstance(manifest.get("schema"), dict) else {}
    source = manifest.get("input") if isinstance(manifest.get("input"), dict) else {}
    timings = manifest.get("timings") if isinstance(manifest.get("timings"), dict) else {}
    rows_written, rows_accepted = manifest["rows_written"], manifest["rows_accepted"]
    # Of rows written, not rows in: a job may write several rows per input item (QA per scene).
    accept_rate = f" ({format_share(rows_accepted, rows_written)} of rows written)" if rows_written else ""
    pairs = [
        ("Job", manifest.get("job")),
        ("Schema", f"{schema.get('name', '?')} v{schema.get('version', '?')}"),
        ("Preset", config_preset(manifest)),
        ("Config hash", manifest.get("config_hash")),
        ("Input", f"{source.get('uri', '?')} ({format_number(source.get('n_items'))} items)"),
        ("Rows in", format_number(manifest["rows_in"])),
        ("Rows written", format_number(rows_written)),
        ("Rows accepted", format_number(rows_accepted) + accept_rate),
        ("Wall time", f"{format_number(timings['wall_seconds'])} s" if "wall_seconds" in timings else None),
        ("Started", timings.get("started")),
        ("Finished", timings.get("finished")),
        ("Shard files", f"{scan.shard_count} holding {format_number(scan.rows_on_disk)} rows"),
    ]
    warning = ""
    if manifest["rows_written"] != scan.rows_on_disk:
        warning = (f'<p class="warn">Manifest says {escape(format_number(manifest["rows_written"]))} rows written, '
                   f'shard files hold {escape(format_number(scan.rows_on_disk))}.</p>')
    return warning + render_key_values([(key, value) for key, value in pairs if value is not None])


def config_preset(manifest: Mapping[str, Any]) -> str | None:
    config = manifest.get("config")
    return config.get("preset") if isinstance(config, dict) and isinstance(config.get("preset"), str) else None


# ------------------------------------------------------------------------- the stage section (fallback)


def render_stage_table(stages: Sequence[Mapping[str, Any]]) -> str:
    if not stages:
        return muted("The manifest lists no stages.")
    rows = []
    for stage in stages:
        rejects = stage.get("rejects") if isinstance(stage.get("rejects"), dict) else {}
        rejected = sum(v for v in rejects.values() if isinstance(v, (int, float)))
        rows.append([str(stage.get("name", "?")), stage.get("rows_in"), stage.get("rows_out"), rejected,
                     stage.get("seconds"), stage.get("rows_per_s")])
    return render_table(["Stage", "Rows in", "Rows out", "Rejected", "Seconds", "Rows/s"], rows)


def funnel_bars(stages: Sequence[Mapping[str, Any]]) -> list[Bar]:
    """Rows kept after each stage, in pipeline order, from the manifest's per-stage counts; the pale part of
    a bar is what that stage rejected."""
    counted = [s for s in stages if _is_count(s.get("rows_in")) and _is_count(s.get("rows_out"))]
    start = counted[0]["rows_in"] if counted else 0
    bars = []
    for stage in counted:
        kept, lost = stage["rows_out"], max(0, stage["rows_in"] - stage["rows_out"])
        note = f"({format_share(kept, start)}" + (f", −{format_number(lost)})" if lost else ")")
        bars.append(Bar(f"after {stage.get('name', '?')}", kept, ACCEPTED_COLOR, note, lost))
    return bars


def render_funnel(stages: Sequence[Mapping[str, Any]]) -> str:
    bars = funnel_bars(stages)
    return render_bar_chart(bars) if bars else muted("The manifest lists no stage counts.")


def _scores_html(fields: Mapping[str, Any], numeric_columns: Sequence[str]) -> str:
    cells = [f'<span title="{escape(name)}">{escape(name)}</span><span>{escape(format_number(fields.get(name)))}</span>'
             for name in numeric_columns if name not in SIZE_COLUMNS]
    return f'<div class="scores">{"".join(cells)}</div>' if cells else ""


def _size_text(fields: Mapping[str, Any]) -> str:
    size = f"{format_number(fields.get('width'))}×{format_number(fields.get('height'))}"
    return f"{size} {fields['image_format']}" if fields.get("image_format") else size


def _thumb_box(sample: SampledRow, placeholder_text: str) -> str:
    alt = str(sample.fields.get("id", "image"))
    return f'<div class="thumb">{image_html(sample.thumbnail, alt, placeholder_text)}</div>'


def build_samples(scan: ScannedRows, picks: Sequence[int]) -> list[SampledRow]:
    images = fetch_values(scan, picks, IMAGE_COLUMN)
    return [SampledRow(record, make_thumbnail(data)) for record, data in zip(picked_records(scan, picks), images)]


def render_accepted_grid(samples: Sequence[SampledRow], numeric_columns: Sequence[str]) -> str:
    if not samples:
        return muted("No accepted rows.")
    cards = []
    for sample in samples:
        fields = sample.fields
        provenance = f"{fields.get('source_dataset') or '?'} / {fields.get('upstream_id') or '?'}"
        cards.append(
            f'<div class="card">{_thumb_box(sample, "no thumbnail")}'
            f'{caption_line(str(fields.get("id", "?")), "id")}{caption_line(_size_text(fields))}'
            f'{caption_line(provenance)}{_scores_html(fields, numeric_columns)}</div>'
        )
    return f'<div class="grid">{"".join(cards)}</div>'


def render_rejected_grid(samples: Sequence[SampledRow]) -> str:
    cards = []
    for sample in samples:
        fields = sample.fields
        reason = str(fields.get("reject_reason"))
        detail = str(fields.get("reject_detail") or "—")
        cards.append(
            f'<div class="card">{_thumb_box(sample, reason)}{caption_line(reason, "reason")}'
            f'{caption_line(detail, "muted")}{caption_line(str(fields.get("id", "?")), "id")}'
            f'{caption_line(str(fields.get("upstream_id", "")))}</div>'
        )
    return f'<div class="grid">{"".join(cards)}</div>'


def render_rejected_by_reason(scan: ScannedRows, rejects: Mapping[str, Any], per_reason: int) -> str:
    """One grid per reason: every reason shows up, not just the most common one."""
    if "reject_reason" not in scan.rows.column_names:
        return muted("No rejected rows.")
    groups = pick_per_group(scan.rows["reject_reason"].to_pylist(), per_reason)
    if not groups:
        return muted("No rejected rows.")
    totals: dict[str, int] = defaultdict(int)
    for key, count in rejects.items():
        if isinstance(count, int):
            totals[str(key).split(":", 1)[-1]] += count
    parts = []
    for reason, picks in groups.items():
        note = f"{format_number(totals[reason])} rows in the manifest" if reason in totals else "not in the manifest"
        parts.append(f'<h4><span class="reason">{escape(reason)}</span> <span class="muted">({escape(note)})</span>'
                     f"</h4>{render_rejected_grid(build_samples(scan, picks))}")
    return "".join(parts)


def render_stage_section(report_input: ReportInput, options: ReportOptions) -> str:
    manifest = report_input.manifest or {}
    scan = scan_rows(report_input.directory, light_columns, options.max_scanned_rows)
    rows = scan.rows
    accepted = accepted_mask(rows)
    numeric = [f.name for f in rows.schema if _is_numeric(f) and f.name not in (ROW_GROUP_KEY, ROW_KEY)]
    parts = [f'<div class="columns"><div>{render_manifest_summary(manifest, scan)}</div>'
             f'<div>{render_stage_table(manifest.get("stages", []))}</div></div>',
             heading("Funnel", "rows kept after each stage, in pipeline order, share of the rows in"),
             render_funnel(manifest.get("stages", [])),
             heading("Rejects by reason"), render_reject_chart(manifest.get("rejects", {})),
             heading("Score distributions", scan.scope_note()), render_histograms(rows, numeric, accepted)]
    if any(IMAGE_COLUMN in ref.schema.names for ref in scan.refs):
        accepted_picks = evenly_spaced(np.flatnonzero(accepted).tolist(), options.sample_rows)
        parts += [heading("Accepted samples", f"up to {options.sample_rows}, evenly spaced"),
                  render_accepted_grid(build_samples(scan, accepted_picks), numeric),
                  heading("Rejected samples", f"up to {options.rejected_per_reason} per reason"),
                  render_rejected_by_reason(scan, manifest.get("rejects", {}), options.rejected_per_reason)]
    return "".join(parts)


STAGE_SECTION = SectionKind("stage", lambda report_input: report_input.manifest is not None, render_stage_section)


# ------------------------------------------------------------------------------------------ the document


STYLE = """
:root { --ink: #1f2328; --muted: #656d76; --line: #d0d7de; --panel: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); }
main { max-width: 1280px; margin: 0 auto; padding: 24px; }
h1 { margin: 0 0 8px; font-size: 24px; }
h2 { margin: 0; font-size: 20px; }
h3 { margin: 24px 0 8px; font-size: 16px; }
h4 { margin: 16px 0 6px; font-size: 14px; }
section { border: 1px solid var(--line); border-radius: 8px; padding: 20px; margin: 24px 0; }
nav a { margin-right: 16px; }
.muted { color: var(--muted); font-weight: normal; }
.path { margin: 2px 0 12px; color: var(--muted); font-family: ui-monospace, monospace; word-break: break-all; }
.warn { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 6px; padding: 6px 10px; }
.columns { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
table { border-collapse: collapse; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
.kv th { color: var(--muted); font-weight: 600; white-space: nowrap; }
.kv td { word-break: break-all; }
.grid-table thead th { background: var(--panel); }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
svg text { font-size: 11px; fill: var(--ink); }
.chart { max-width: 100%; height: auto; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
.hist { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 6px 8px; }
.hist figcaption { font-size: 12px; }
.legend span { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 10px; border-radius: 2px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(178px, 1fr)); gap: 12px; }
.wide-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 12px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px; font-size: 12px; min-width: 0; }
.thumb { height: 160px; display: flex; align-items: center; justify-content: center; background: var(--panel);
         margin-bottom: 6px; }
.images { display: flex; flex-wrap: wrap; gap: 4px; margin-bottom: 6px; }
.placeholder { width: 140px; height: 120px; display: flex; align-items: center; justify-content: center;
               text-align: center; padding: 6px; border: 2px dashed #c62828; color: #c62828;
               word-break: break-all; overflow: hidden; }
.line { overflow: hidden; white-space: nowrap; text-overflow: ellipsis; }
.text { white-space: pre-wrap; word-break: break-word; margin: 2px 0 6px; }
.id { font-family: ui-monospace, monospace; }
.reason { color: #c62828; font-weight: 600; }
.scores { display: grid; grid-template-columns: minmax(0, 1fr) auto; column-gap: 8px; margin-top: 4px; }
.scores span:nth-child(odd) { color: var(--muted); overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.scores span:nth-child(even) { text-align: right; font-variant-numeric: tabular-nums; }
"""


@dataclass(frozen=True)
class RenderedSection:
    title: str
    kind: str
    directory: Path
    body: str


def section_title(report_input: ReportInput) -> str:
    """The job, its preset and the directory: several outputs of one job stay apart."""
    manifest = report_input.manifest or {}
    job = manifest.get("job")
    preset = config_preset(manifest)
    name = report_input.directory.name
    if not job:
        return name
    return f"{job} ({preset}): {name}" if preset else f"{job}: {name}"


def render_section(directory: Path, options: ReportOptions) -> RenderedSection:
    report_input = load_report_input(directory)
    kind = choose_section_kind(report_input)
    return RenderedSection(section_title(report_input), kind.name, directory, kind.render(report_input, options))


def render_document(title: str, sections: Sequence[RenderedSection]) -> str:
    anchors = [f"section-{index}" for index in range(len(sections))]
    nav = "".join(f'<a href="#{anchor}">{escape(section.title)}</a>' for anchor, section in zip(anchors, sections))
    body = "".join(f'<section id="{anchor}" class="kind-{escape(section.kind)}"><h2>{escape(section.title)}</h2>'
                   f'<p class="path">{escape(section.kind)} · {escape(section.directory)}</p>{section.body}</section>'
                   for anchor, section in zip(anchors, sections))
    # The CSP meta tag comes first so it governs everything after it.
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'  # stops the browser from asking for /favicon.ico
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><main><h1>{escape(title)}</h1><nav>{nav}</nav>{body}</main></body></html>\n"
    )


def write_html_report(directories: Sequence[Path], out_html: Path, *, title: str,
                      options: ReportOptions = ReportOptions()) -> Path:
    """Write one self-contained HTML report over `directories` (any mix of kinds) to `out_html`."""
    if not directories:
        raise ValueError("write_html_report needs at least one directory")
    if options.sample_rows < 0 or options.rejected_per_reason < 0 or options.max_scanned_rows < 1:
        raise ValueError(f"sample_rows and rejected_per_reason must be >= 0 and max_scanned_rows >= 1, got {options}")
    document = render_document(title, [render_section(Path(d), options) for d in directories])
    out_html = Path(out_html)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temp name and renamed, so a reader never sees half a report.
    temp = out_html.with_name(f".tmp-{out_html.name}")
    temp.write_text(document, encoding="utf-8")
    os.replace(temp, out_html)
    return out_html


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_engine.report",
                                     description="Write one static HTML report over output directories: stage "
                                                 "outputs, spatial QA, render, rebalance and trainer runs.")
    parser.add_argument("directories", nargs="+", type=Path, metavar="DIR",
                        help="stage output directory or trainer run directory")
    parser.add_argument("--out", required=True, type=Path, help="HTML file to write")
    parser.add_argument("--title", default="Data engine report")
    parser.add_argument("--sample-rows", type=int, default=24, help="images per accepted grid, examples per section")
    parser.add_argument("--rejected-per-reason", type=int, default=6, help="images per reject reason")
    args = parser.parse_args(argv)
    options = ReportOptions(sample_rows=args.sample_rows, rejected_per_reason=args.rejected_per_reason)
    try:
        path = write_html_report(args.directories, args.out, title=args.title, options=options)
    except (ReportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    # Run the imported module's main: the section modules register into `data_engine.report`, not `__main__`.
    sys.exit(importlib.import_module("data_engine.report").main())
