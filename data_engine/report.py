"""Static HTML report over the stage output directories of one pipeline job.

The report is one self-contained file: no scripts, no external URLs. Thumbnails are small JPEG data: URIs
made with Pillow and charts are inline SVG, so the file can be mailed, archived or opened from a bucket.
Every value that comes from data is HTML-escaped, and a Content-Security-Policy meta tag forbids scripts
outright, so a hostile file name that slipped past escaping still could not run.

Counts and reject reasons come from each directory's `_manifest.json` (exact). Histograms and sample grids
come from the shards: only the columns they need are read, and a large directory is sampled by reading
every k-th row group, so the cost of a report stays bounded whatever the size of the job.

CLI: python -m data_engine.report --out report.html DIR [DIR...]
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
import os
import sys
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
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
# Where each scanned row came from, so image bytes can be fetched for the sampled rows only.
ROW_GROUP_KEY = "__report_row_group"
ROW_KEY = "__report_row"

ACCEPTED_COLOR = "#2e7d32"
REJECTED_COLOR = "#c62828"
NULL_COLOR = "#9e9e9e"
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


class ReportError(Exception):
    """A stage directory cannot be reported on; the message names the offending path."""


@dataclass(frozen=True)
class RowGroupRef:
    shard: Path
    index: int
    num_rows: int
    schema: pa.Schema


@dataclass(frozen=True)
class Thumbnail:
    data_uri: str
    width: int
    height: int


@dataclass(frozen=True)
class Sample:
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
class StageData:
    directory: Path
    manifest: Mapping[str, Any]
    shard_count: int
    rows_on_disk: int
    rows: pa.Table  # descriptive and numeric columns of the scanned rows
    numeric_columns: list[str]
    accepted: np.ndarray  # bool per scanned row
    has_images: bool
    accepted_samples: list[Sample]
    rejected_samples: list[Sample]


# ----------------------------------------------------------------------------------------------- loading


def load_manifest(stage_dir: Path) -> dict[str, Any]:
    """Read and check the fields the report relies on; raise ReportError naming the path otherwise."""
    path = stage_dir / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: manifest missing; is {stage_dir} a finished stage output?") from None
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


def _light_columns(schema: pa.Schema) -> list[str]:
    return [field.name for field in schema
            if field.name in DESCRIPTIVE_COLUMNS or (_is_numeric(field) and field.name not in IDENTIFIER_COLUMNS)]


def read_light_columns(refs: list[RowGroupRef]) -> pa.Table:
    """The small columns of the chosen row groups, tagged with where each row came from."""
    tables = []
    for shard, shard_refs in groupby(enumerate(refs), key=lambda item: item[1].shard):
        with pq.ParquetFile(shard) as parquet:
            for position, ref in shard_refs:
                table = parquet.read_row_group(ref.index, columns=_light_columns(ref.schema))
                table = table.append_column(ROW_GROUP_KEY, pa.array(np.full(ref.num_rows, position, np.int32)))
                tables.append(table.append_column(ROW_KEY, pa.array(np.arange(ref.num_rows, dtype=np.int32))))
    if not tables:
        return pa.table({ROW_GROUP_KEY: pa.array([], pa.int32()), ROW_KEY: pa.array([], pa.int32())})
    # Shards written by different versions of a job may lack a column or widen a type.
    return pa.concat_tables(tables, promote_options="permissive")


def accepted_mask(rows: pa.Table) -> np.ndarray:
    if "reject_reason" not in rows.column_names:
        return np.ones(rows.num_rows, dtype=bool)
    return pc.is_null(rows["reject_reason"]).to_numpy(zero_copy_only=False)


def evenly_spaced(positions: Sequence[int], count: int) -> list[int]:
    n, k = len(positions), min(count, len(positions))
    return [positions[(i * n) // k] for i in range(k)]


def pick_rejected(reasons: Sequence[str | None], count: int) -> list[int]:
    """Round-robin over reasons so every reason shows up in the grid, not just the most common one."""
    by_reason: dict[str, list[int]] = defaultdict(list)
    for position, reason in enumerate(reasons):
        if reason is not None:
            by_reason[reason].append(position)
    queues = [deque(evenly_spaced(by_reason[reason], count)) for reason in sorted(by_reason)]
    picks: list[int] = []
    while len(picks) < count and any(queues):
        for queue in queues:
            if queue and len(picks) < count:
                picks.append(queue.popleft())
    return sorted(picks)


def read_image_bytes(refs: list[RowGroupRef], rows: pa.Table, picks: list[int]) -> list[bytes | None]:
    """Image bytes of the picked rows, reading the image column only from the row groups they live in."""
    origins = [(rows[ROW_GROUP_KEY][p].as_py(), rows[ROW_KEY][p].as_py()) for p in picks]
    wanted: dict[int, list[int]] = defaultdict(list)
    for group, row in origins:
        wanted[group].append(row)
    found: dict[tuple[int, int], bytes | None] = {}
    for group, group_rows in wanted.items():
        ref = refs[group]
        if IMAGE_COLUMN not in ref.schema.names:
            continue
        with pq.ParquetFile(ref.shard) as parquet:
            column = parquet.read_row_group(ref.index, columns=[IMAGE_COLUMN]).column(0)
        values = column.take(pa.array(group_rows)).to_pylist()
        found.update(((group, row), value) for row, value in zip(group_rows, values))
    return [found.get(origin) for origin in origins]


def make_thumbnail(data: bytes | None) -> Thumbnail | None:
    if data is None:
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.thumbnail((THUMBNAIL_MAX_SIDE, THUMBNAIL_MAX_SIDE))
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


def build_samples(refs: list[RowGroupRef], rows: pa.Table, picks: list[int]) -> list[Sample]:
    fields = rows.select([c for c in rows.column_names if c not in (ROW_GROUP_KEY, ROW_KEY)])
    records = fields.take(pa.array(picks, pa.int64())).to_pylist() if picks else []
    images = read_image_bytes(refs, rows, picks)
    return [Sample(record, make_thumbnail(data)) for record, data in zip(records, images)]


def load_stage(stage_dir: Path, *, sample_rows: int, max_scanned_rows: int) -> StageData:
    manifest = load_manifest(stage_dir)
    shards = shard_paths(stage_dir)
    all_refs = list_row_groups(shards)
    refs = choose_row_groups(all_refs, max_scanned_rows)
    rows = read_light_columns(refs)
    accepted = accepted_mask(rows)
    numeric = [f.name for f in rows.schema if _is_numeric(f) and f.name not in (ROW_GROUP_KEY, ROW_KEY)]
    has_images = any(IMAGE_COLUMN in ref.schema.names for ref in refs)
    accepted_samples: list[Sample] = []
    rejected_samples: list[Sample] = []
    if has_images:
        accepted_picks = evenly_spaced(np.flatnonzero(accepted).tolist(), sample_rows)
        reasons = rows["reject_reason"].to_pylist() if "reject_reason" in rows.column_names else []
        accepted_samples = build_samples(refs, rows, accepted_picks)
        rejected_samples = build_samples(refs, rows, pick_rejected(reasons, sample_rows))
    return StageData(stage_dir, manifest, len(shards), sum(ref.num_rows for ref in all_refs),
                     rows, numeric, accepted, has_images, accepted_samples, rejected_samples)


# --------------------------------------------------------------------------------------------- rendering


def _e(value: Any) -> str:
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


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_key_values(manifest: Mapping[str, Any], stage: StageData) -> str:
    schema = manifest.get("schema") if isinstance(manifest.get("schema"), dict) else {}
    source = manifest.get("input") if isinstance(manifest.get("input"), dict) else {}
    timings = manifest.get("timings") if isinstance(manifest.get("timings"), dict) else {}
    rows_in, rows_accepted = manifest["rows_in"], manifest["rows_accepted"]
    accept_rate = f" ({rows_accepted / rows_in:.1%} of rows in)" if rows_in else ""
    pairs = [
        ("Job", manifest.get("job")),
        ("Schema", f"{schema.get('name', '?')} v{schema.get('version', '?')}"),
        ("Config hash", manifest.get("config_hash")),
        ("Input", f"{source.get('uri', '?')} ({format_number(source.get('n_items'))} items)"),
        ("Rows in", format_number(rows_in)),
        ("Rows written", format_number(manifest["rows_written"])),
        ("Rows accepted", format_number(rows_accepted) + accept_rate),
        ("Wall time", f"{format_number(timings.get('wall_seconds'))} s"),
        ("Started", timings.get("started")),
        ("Finished", timings.get("finished")),
        ("Shard files", f"{stage.shard_count} holding {format_number(stage.rows_on_disk)} rows"),
    ]
    body = "".join(f"<tr><th>{_e(key)}</th><td>{_e(format_number(value))}</td></tr>" for key, value in pairs)
    return f'<table class="kv">{body}</table>'


def render_stage_table(stages: Sequence[Mapping[str, Any]]) -> str:
    if not stages:
        return '<p class="muted">The manifest lists no stages.</p>'
    head = "<tr><th>Stage</th><th>Rows in</th><th>Rows out</th><th>Rejected</th><th>Seconds</th><th>Rows/s</th></tr>"
    body = []
    for stage in stages:
        rejects = stage.get("rejects") if isinstance(stage.get("rejects"), dict) else {}
        rejected = sum(v for v in rejects.values() if isinstance(v, (int, float)))
        cells = [stage.get("rows_in"), stage.get("rows_out"), rejected, stage.get("seconds"), stage.get("rows_per_s")]
        numbers = "".join(f'<td class="num">{_e(format_number(c))}</td>' for c in cells)
        body.append(f"<tr><td>{_e(stage.get('name', '?'))}</td>{numbers}</tr>")
    return f'<table class="grid-table"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'


def render_reject_chart(rejects: Mapping[str, Any]) -> str:
    counts = sorted(((str(k), v) for k, v in rejects.items() if isinstance(v, (int, float)) and v > 0),
                    key=lambda item: (-item[1], item[0]))
    if not counts:
        return '<p class="muted">No rejects.</p>'
    label_width, bar_width, row_height = 300, 380, 24
    largest = max(count for _, count in counts)
    bars = []
    for row, (reason, count) in enumerate(counts):
        y = row * row_height
        width = max(1.0, bar_width * count / largest)
        bars.append(
            f"<g><title>{_e(reason)}: {_e(format_number(count))}</title>"
            f'<text x="{label_width - 8}" y="{y + 16}" text-anchor="end">{_e(_truncate(reason, 42))}</text>'
            f'<rect x="{label_width}" y="{y + 4}" width="{width:.1f}" height="{row_height - 8}" '
            f'fill="{REJECTED_COLOR}"/>'
            f'<text x="{label_width + width + 6:.1f}" y="{y + 16}">{_e(format_number(count))}</text></g>'
        )
    total_width, total_height = label_width + bar_width + 80, row_height * len(counts)
    return (f'<svg class="chart" width="{total_width}" height="{total_height}" '
            f'viewBox="0 0 {total_width} {total_height}" role="img">{"".join(bars)}</svg>')


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
    return (f"<g><title>{_e(bar.label)}: {bar.accepted} accepted, {bar.rejected} rejected</title>"
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
        labels.append(f'<text x="{left}" y="{baseline + 14}">{_e(format_number(low))}</text>')
        labels.append(f'<text x="{left + slot * len(histogram.bars):.1f}" y="{baseline + 14}" '
                      f'text-anchor="end">{_e(format_number(high))}</text>')
    null_note = "no nulls"
    if histogram.nulls:
        nulls, null_x = histogram.nulls, left + slot * (slots - 1)
        shapes.append(_stacked_bar(nulls, null_x + 1, slot - 2, baseline, plot_height / largest, NULL_COLOR))
        labels.append(f'<text x="{null_x + slot / 2:.1f}" y="{baseline + 14}" text-anchor="middle">null</text>')
        null_note = f"nulls: {nulls.accepted} accepted, {nulls.rejected} rejected"
    axis = f'<line x1="{left}" y1="{baseline}" x2="{width - right}" y2="{baseline}" stroke="#57606a"/>'
    return (f'<figure class="hist"><figcaption><b>{_e(name)}</b> <span class="muted">{_e(null_note)}</span>'
            f'</figcaption><svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
            f'{"".join(shapes)}{axis}{"".join(labels)}</svg></figure>')


def render_histograms(stage: StageData) -> str:
    if not stage.numeric_columns:
        return '<p class="muted">No numeric columns.</p>'
    charts = []
    for name in stage.numeric_columns:
        values = pc.cast(stage.rows[name], pa.float64()).to_numpy()  # nulls become NaN
        charts.append(render_histogram(name, compute_histogram(values, stage.accepted)))
    legend = (f'<p class="legend"><span style="background:{ACCEPTED_COLOR}"></span>accepted '
              f'<span style="background:{REJECTED_COLOR}"></span>rejected '
              f'<span style="background:{NULL_COLOR}"></span>null (accepted part)</p>')
    return legend + f'<div class="charts">{"".join(charts)}</div>'


def _caption_line(text: str, css_class: str = "") -> str:
    return f'<div class="line {css_class}" title="{_e(text)}">{_e(text)}</div>'


def _scores_html(sample: Sample, numeric_columns: Sequence[str]) -> str:
    cells = [f'<span title="{_e(name)}">{_e(name)}</span><span>{_e(format_number(sample.fields.get(name)))}</span>'
             for name in numeric_columns if name not in SIZE_COLUMNS]
    return f'<div class="scores">{"".join(cells)}</div>' if cells else ""


def _size_text(fields: Mapping[str, Any]) -> str:
    size = f"{format_number(fields.get('width'))}×{format_number(fields.get('height'))}"
    return f"{size} {fields['image_format']}" if fields.get("image_format") else size


def _thumbnail_html(sample: Sample, placeholder_text: str) -> str:
    if sample.thumbnail is None:
        return f'<div class="thumb"><div class="placeholder">{_e(placeholder_text)}</div></div>'
    thumb = sample.thumbnail
    alt = str(sample.fields.get("id", "image"))
    return (f'<div class="thumb"><img src="{thumb.data_uri}" width="{thumb.width}" height="{thumb.height}" '
            f'alt="{_e(alt)}"></div>')


def render_accepted_grid(samples: Sequence[Sample], numeric_columns: Sequence[str]) -> str:
    if not samples:
        return '<p class="muted">No accepted rows.</p>'
    cards = []
    for sample in samples:
        fields = sample.fields
        provenance = f"{fields.get('source_dataset') or '?'} / {fields.get('upstream_id') or '?'}"
        cards.append(
            f'<div class="card">{_thumbnail_html(sample, "no thumbnail")}'
            f'{_caption_line(str(fields.get("id", "?")), "id")}{_caption_line(_size_text(fields))}'
            f'{_caption_line(provenance)}{_scores_html(sample, numeric_columns)}</div>'
        )
    return f'<div class="grid">{"".join(cards)}</div>'


def render_rejected_grid(samples: Sequence[Sample]) -> str:
    if not samples:
        return '<p class="muted">No rejected rows.</p>'
    cards = []
    for sample in samples:
        fields = sample.fields
        reason = str(fields.get("reject_reason"))
        stage_and_detail = " — ".join(str(fields[k]) for k in ("reject_stage", "reject_detail") if fields.get(k))
        cards.append(
            f'<div class="card">{_thumbnail_html(sample, reason)}{_caption_line(reason, "reason")}'
            f'{_caption_line(stage_and_detail or "—", "muted")}{_caption_line(str(fields.get("id", "?")), "id")}'
            f'{_caption_line(str(fields.get("upstream_id", "")))}</div>'
        )
    return f'<div class="grid">{"".join(cards)}</div>'


def _section_title(stage: StageData) -> str:
    """The job and the output directory: several outputs of one job (or one job's stages) stay apart."""
    job = stage.manifest.get("job")
    return f"{job}: {stage.directory.name}" if job else stage.directory.name


def render_stage(anchor: str, stage: StageData, sample_rows: int) -> str:
    manifest = stage.manifest
    parts = [
        f'<section id="{anchor}"><h2>{_e(_section_title(stage))}</h2>',
        f'<p class="path">{_e(stage.directory)}</p>',
    ]
    if manifest["rows_written"] != stage.rows_on_disk:
        parts.append(f'<p class="warn">Manifest says {_e(format_number(manifest["rows_written"]))} rows written, '
                     f'shard files hold {_e(format_number(stage.rows_on_disk))}.</p>')
    parts.append(f'<div class="columns"><div>{render_key_values(manifest, stage)}</div>'
                 f'<div>{render_stage_table(manifest.get("stages", []))}</div></div>')
    parts.append(f"<h3>Rejects by reason</h3>{render_reject_chart(manifest.get('rejects', {}))}")
    sampled = stage.rows.num_rows < stage.rows_on_disk
    scope = (f"sampled: {format_number(stage.rows.num_rows)} of {format_number(stage.rows_on_disk)} rows"
             if sampled else f"all {format_number(stage.rows_on_disk)} rows")
    parts.append(f'<h3>Score distributions <span class="muted">({_e(scope)})</span></h3>{render_histograms(stage)}')
    if stage.has_images:
        parts.append(f'<h3>Accepted samples <span class="muted">(up to {sample_rows}, evenly spaced)</span></h3>'
                     f"{render_accepted_grid(stage.accepted_samples, stage.numeric_columns)}")
        parts.append(f'<h3>Rejected samples <span class="muted">(up to {sample_rows}, all reasons)</span></h3>'
                     f"{render_rejected_grid(stage.rejected_samples)}")
    parts.append("</section>")
    return "".join(parts)


STYLE = """
:root { --ink: #1f2328; --muted: #656d76; --line: #d0d7de; --panel: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); }
main { max-width: 1280px; margin: 0 auto; padding: 24px; }
h1 { margin: 0 0 8px; font-size: 24px; }
h2 { margin: 0; font-size: 20px; }
h3 { margin: 24px 0 8px; font-size: 16px; }
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
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px; font-size: 12px; min-width: 0; }
.thumb { height: 160px; display: flex; align-items: center; justify-content: center; background: var(--panel);
         margin-bottom: 6px; }
.placeholder { width: 140px; height: 120px; display: flex; align-items: center; justify-content: center;
               text-align: center; padding: 6px; border: 2px dashed #c62828; color: #c62828;
               word-break: break-all; overflow: hidden; }
.line { overflow: hidden; white-space: nowrap; text-overflow: ellipsis; }
.id { font-family: ui-monospace, monospace; }
.reason { color: #c62828; font-weight: 600; }
.scores { display: grid; grid-template-columns: minmax(0, 1fr) auto; column-gap: 8px; margin-top: 4px; }
.scores span:nth-child(odd) { color: var(--muted); overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.scores span:nth-child(even) { text-align: right; font-variant-numeric: tabular-nums; }
"""


def render_document(title: str, stages: Sequence[StageData], sample_rows: int) -> str:
    anchors = [f"stage-{index}" for index in range(len(stages))]
    nav = "".join(f'<a href="#{anchor}">{_e(_section_title(stage))}</a>'
                  for anchor, stage in zip(anchors, stages))
    sections = "".join(render_stage(anchor, stage, sample_rows) for anchor, stage in zip(anchors, stages))
    # The CSP meta tag comes first so it governs everything after it.
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'  # stops the browser from asking for /favicon.ico
        f"<title>{_e(title)}</title><style>{STYLE}</style></head>"
        f"<body><main><h1>{_e(title)}</h1><nav>{nav}</nav>{sections}</main></body></html>\n"
    )


def write_html_report(stage_dirs: Sequence[Path], out_html: Path, *, title: str, sample_rows: int = 24,
                      max_scanned_rows: int = DEFAULT_MAX_SCANNED_ROWS) -> Path:
    """Write one self-contained HTML report over `stage_dirs` (stage output directories) to `out_html`."""
    if not stage_dirs:
        raise ValueError("write_html_report needs at least one stage directory")
    if sample_rows < 0 or max_scanned_rows < 1:
        raise ValueError(f"sample_rows must be >= 0 and max_scanned_rows >= 1, got {sample_rows}, {max_scanned_rows}")
    stages = [load_stage(Path(d), sample_rows=sample_rows, max_scanned_rows=max_scanned_rows) for d in stage_dirs]
    document = render_document(title, stages, sample_rows)
    out_html = Path(out_html)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temp name and renamed, so a reader never sees half a report.
    temp = out_html.with_name(f".tmp-{out_html.name}")
    temp.write_text(document, encoding="utf-8")
    os.replace(temp, out_html)
    return out_html


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_engine.report",
                                     description="Write a static HTML report over stage output directories.")
    parser.add_argument("stage_dirs", nargs="+", type=Path, metavar="DIR", help="stage output directory")
    parser.add_argument("--out", required=True, type=Path, help="HTML file to write")
    parser.add_argument("--title", default="Data engine report")
    parser.add_argument("--sample-rows", type=int, default=24, help="images per sample grid")
    args = parser.parse_args(argv)
    try:
        path = write_html_report(args.stage_dirs, args.out, title=args.title, sample_rows=args.sample_rows)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
