"""The stage section, the fallback for any stage output: manifest summary, the funnel of rows kept after each
stage, rejects by reason, score histograms, accepted images and rejected images per reason."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from data_engine.report.drawing import (ACCEPTED_COLOR, Bar, Thumbnail, caption_line, escape, format_number,
                                        format_share, heading, image_html, make_thumbnail, muted, render_bar_chart,
                                        render_histograms, render_key_values, render_reject_chart, render_table)
from data_engine.report.scan import (IMAGE_COLUMN, ROW_GROUP_KEY, ROW_KEY, SIZE_COLUMNS, ReportInput, ScannedRows,
                                     accepted_mask, evenly_spaced, fetch_values, is_count, is_numeric_field,
                                     light_columns, pick_per_group, picked_records, scan_rows)
from data_engine.report.sections import ReportOptions, SectionKind


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


@dataclass(frozen=True)
class SampledRow:
    fields: dict[str, Any]
    thumbnail: Thumbnail | None  # None when the bytes are null or do not decode


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
    counted = [s for s in stages if is_count(s.get("rows_in")) and is_count(s.get("rows_out"))]
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
    numeric = [f.name for f in rows.schema if is_numeric_field(f) and f.name not in (ROW_GROUP_KEY, ROW_KEY)]
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
