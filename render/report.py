"""The render sections of the HTML report (`python -m pipelines report`): multi-view collage thumbnails with
their structured captions, and spatial-edit pairs side by side with their instructions. The edit section
shows the labels that are easiest to get wrong first (camera pitch, symmetric subjects, thin subjects), each
with the facts its label rests on."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from data_engine.report import (ReportInput, ReportOptions, ScannedRows, SectionKind, accepted_mask, caption_line,
                                escape, evenly_spaced, fetch_values, heading, image_html, make_thumbnail,
                                manifest_schema, muted, render_manifest_summary, render_reject_chart,
                                register_section, scan_rows)

COLLAGE_SIDE = 320
PAIR_IMAGE_SIDE = 200
THIN_SHARE = 0.3  # a subject with this much of its silhouette in thin parts is thin (pole lamps, edge-on tables)
EXAMPLES_PER_EDIT_CASE = 3


def _json_object(text: str | None) -> dict[str, Any]:
    """A JSON column's object, or {} when it is missing or not an object (the card then shows "?")."""
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _image(ref: dict[str, Any] | None, side: int, alt: str) -> str:
    return image_html(make_thumbnail((ref or {}).get("bytes"), side), alt)


def collage_card(row: dict[str, Any]) -> str:
    caption = _json_object(row.get("structured_caption"))
    dense = f'<div class="text">{escape(row["dense_caption"])}</div>' if row.get("dense_caption") else ""
    return (f'<div class="card">{_image(row.get("collage"), COLLAGE_SIDE, str(row["id"]))}'
            f'{caption_line(str(row.get("upstream_id")), "id")}'
            f'<div class="text">{escape(caption.get("subject_summary", "?"))}</div>'
            f'<div class="text muted">{escape(caption.get("layout_description", "?"))}</div>{dense}</div>')


def edit_cases(operation: str | None, symmetry: str | None, thin: float | None) -> list[str]:
    """The hard-to-label cases an edit row belongs to, from its light columns."""
    return [case for case, applies in (("pitch", operation == "camera:pitch"),
                                       ("symmetric subject", symmetry not in (None, "none")),
                                       ("thin subject", thin is not None and thin >= THIN_SHARE)) if applies]


def _label_facts(metadata: dict[str, Any]) -> str:
    """What the label rests on: the applied pitch, the subject's symmetry, its silhouette, what was seen."""
    facts = []
    if metadata.get("operation") == "pitch" and "source_elevation_deg" in metadata:
        facts.append(f"pitch {metadata.get('delta_deg', 0):+.0f} deg: elevation {metadata['source_elevation_deg']:.1f}"
                     f" -> {metadata.get('target_elevation_deg', float('nan')):.1f} deg")
    if metadata.get("operation") == "rotate":
        facts.append(f"turn {metadata.get('turn_deg', 0):+.0f} deg")
    facts.append(f"symmetry {metadata.get('subject_symmetry', '?')}")
    thin = metadata.get("subject_thin_share")
    if isinstance(thin, (int, float)):
        facts.append(f"thin parts {thin:.0%} of the silhouette{' (thin subject)' if thin >= THIN_SHARE else ''}")
    seen = metadata.get("visible_fraction")
    if isinstance(seen, list) and seen:
        facts.append("seen " + " / ".join(f"{value:.0%}" for value in seen))
    return "; ".join(facts)


def edit_pair_card(row: dict[str, Any]) -> str:
    metadata = _json_object(row.get("metadata"))
    instructions = metadata.get("instructions") if isinstance(metadata.get("instructions"), dict) else {}
    english = instructions.get("en")
    other = f'<div class="text muted">{escape(english)}</div>' if english and english != row.get("instruction") else ""
    operation = f"{metadata.get('branch', '?')}:{metadata.get('operation', '?')}"
    return (f'<div class="card"><div class="images">{_image(row.get("source_image"), PAIR_IMAGE_SIDE, "source")}'
            f'{_image(row.get("target_image"), PAIR_IMAGE_SIDE, "target")}</div>'
            f'{caption_line(operation, "id")}'
            f'<div class="text">{escape(row.get("instruction"))}</div>{other}'
            f'<div class="text muted">{escape(_label_facts(metadata))}</div></div>')


def _evenly_spaced_accepted(scan: ScannedRows, options: ReportOptions) -> list[int]:
    return evenly_spaced(accepted_mask(scan.rows).nonzero()[0].tolist(), options.sample_rows)


def _edit_cases_first(scan: ScannedRows, options: ReportOptions) -> list[int]:
    """A few accepted rows of each hard case (pitch, symmetric subject, thin subject), then evenly spaced."""
    accepted = accepted_mask(scan.rows).nonzero()[0].tolist()
    columns = {name: (scan.rows[name].to_pylist() if name in scan.rows.column_names else [None] * scan.rows.num_rows)
               for name in ("edit_operation", "subject_symmetry", "subject_thin_share")}
    cases = {p: edit_cases(columns["edit_operation"][p], columns["subject_symmetry"][p],
                           columns["subject_thin_share"][p]) for p in accepted}
    picks: list[int] = []
    for case in ("pitch", "symmetric subject", "thin subject"):
        picks += [p for p in evenly_spaced([p for p in accepted if case in cases[p]], EXAMPLES_PER_EDIT_CASE)
                  if p not in picks]
    rest = [p for p in accepted if p not in picks]
    picks = picks[:options.sample_rows]
    return picks + evenly_spaced(rest, options.sample_rows - len(picks))


def _render_outputs(columns: list[str], card: Callable[[dict[str, Any]], str], title: str,
                    pick: Callable[[ScannedRows, ReportOptions], list[int]] = _evenly_spaced_accepted,
                    scanned: tuple[str, ...] = ()) -> Callable[[ReportInput, ReportOptions], str]:
    def render(report_input: ReportInput, options: ReportOptions) -> str:
        scan = scan_rows(report_input.directory, ["id", "upstream_id", "reject_reason", *scanned],
                         options.max_scanned_rows)
        picks = pick(scan, options)
        ids = scan.rows["id"].to_pylist()
        upstream = scan.rows["upstream_id"].to_pylist()
        fetched = {column: fetch_values(scan, picks, column) for column in columns}
        rows = [{"id": ids[p], "upstream_id": upstream[p], **{c: fetched[c][n] for c in columns}}
                for n, p in enumerate(picks)]
        manifest = report_input.manifest or {}
        cards = "".join(card(row) for row in rows)
        return (render_manifest_summary(manifest, scan) + heading("Rejects by reason")
                + render_reject_chart(manifest.get("rejects", {}))
                + heading(title, f"up to {options.sample_rows}, evenly spaced")
                + (f'<div class="wide-grid">{cards}</div>' if cards else muted("No accepted rows.")))
    return render


MULTIVIEW_SECTION = register_section(SectionKind(
    "multiview", lambda report_input: manifest_schema(report_input) == "multiview_sample",
    _render_outputs(["collage", "structured_caption", "dense_caption"], collage_card, "Collages")))
EDIT_SECTION = register_section(SectionKind(
    "spatial_edit", lambda report_input: manifest_schema(report_input) == "edit_triplet",
    _render_outputs(["source_image", "target_image", "instruction", "metadata"], edit_pair_card,
                    "Edit pairs (pitch, symmetric and thin subjects first)", _edit_cases_first,
                    ("edit_operation", "subject_symmetry", "subject_thin_share"))))
