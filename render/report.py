"""The render sections of the HTML report (`python -m data_engine.report`): multi-view collage thumbnails with
their structured captions, and spatial-edit pairs side by side with their instructions."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from data_engine.report import (ReportInput, ReportOptions, SectionKind, accepted_mask, caption_line, escape,
                                evenly_spaced, fetch_values, heading, image_html, make_thumbnail, manifest_schema,
                                muted, render_manifest_summary, render_reject_chart, register_section, scan_rows)

COLLAGE_SIDE = 320
PAIR_IMAGE_SIDE = 200


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


def edit_pair_card(row: dict[str, Any]) -> str:
    metadata = _json_object(row.get("metadata"))
    instructions = metadata.get("instructions") if isinstance(metadata.get("instructions"), dict) else {}
    english = instructions.get("en")
    other = f'<div class="text muted">{escape(english)}</div>' if english and english != row.get("instruction") else ""
    operation = f"{metadata.get('branch', '?')}:{metadata.get('operation', '?')}"
    return (f'<div class="card"><div class="images">{_image(row.get("source_image"), PAIR_IMAGE_SIDE, "source")}'
            f'{_image(row.get("target_image"), PAIR_IMAGE_SIDE, "target")}</div>'
            f'{caption_line(operation, "id")}'
            f'<div class="text">{escape(row.get("instruction"))}</div>{other}</div>')


def _render_outputs(columns: list[str], card: Callable[[dict[str, Any]], str],
                    title: str) -> Callable[[ReportInput, ReportOptions], str]:
    def render(report_input: ReportInput, options: ReportOptions) -> str:
        scan = scan_rows(report_input.directory, ["id", "upstream_id", "reject_reason"],
                         options.max_scanned_rows)
        picks = evenly_spaced(accepted_mask(scan.rows).nonzero()[0].tolist(), options.sample_rows)
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
    _render_outputs(["source_image", "target_image", "instruction", "metadata"], edit_pair_card, "Edit pairs")))
