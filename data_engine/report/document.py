"""The document: one section per directory, chosen by the first registered kind that claims it, in one
self-contained HTML file (no scripts, no external URLs, a Content-Security-Policy that forbids scripts)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from data_engine.registry import import_report_sections
from data_engine.report.drawing import escape
from data_engine.report.scan import ReportError, ReportInput, load_report_input
from data_engine.report.sections import ReportOptions, SectionKind, registered_sections
from data_engine.report.stage_section import STAGE_SECTION, config_preset
from data_engine.shards import MANIFEST_NAME


CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
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


def section_kinds() -> list[SectionKind]:
    """Every registered kind (data_engine/registry.py), domain kinds first, the stage section last."""
    import_report_sections()
    return [*registered_sections(), STAGE_SECTION]


def choose_section_kind(report_input: ReportInput) -> SectionKind:
    for kind in section_kinds():
        if kind.claims(report_input):
            return kind
    raise ReportError(f"{report_input.directory / MANIFEST_NAME}: manifest missing; {report_input.directory} is "
                      "neither a finished stage output nor a trainer run directory")


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
    from data_engine.report.flow_section import render_flow_section  # it builds RenderedSections of this module

    flow = render_flow_section([Path(d) for d in directories])
    sections = [render_section(Path(d), options) for d in directories]
    document = render_document(title, ([flow] if flow else []) + sections)
    out_html = Path(out_html)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temp name and renamed, so a reader never sees half a report.
    temp = out_html.with_name(f".tmp-{out_html.name}")
    temp.write_text(document, encoding="utf-8")
    os.replace(temp, out_html)
    return out_html
