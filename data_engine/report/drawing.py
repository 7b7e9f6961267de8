"""The report's HTML toolkit: escaping and number formats, headings, tables, thumbnails (small JPEG data:
URIs) and inline-SVG charts (bars, lines, histograms). Every value that comes from data is escaped here."""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image


THUMBNAIL_MAX_SIDE = 160
THUMBNAIL_JPEG_QUALITY = 75
HISTOGRAM_BINS = 20
ACCEPTED_COLOR = "#2e7d32"
REJECTED_COLOR = "#c62828"
DROPPED_COLOR = "#f3b9b9"
NULL_COLOR = "#9e9e9e"
SERIES_COLORS = ("#57606a", "#c62828", "#1f6feb", "#2e7d32")


@dataclass(frozen=True)
class Thumbnail:
    data_uri: str
    width: int
    height: int


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
