"""One static HTML report over any mix of output directories: data-engine stage outputs, spatial QA, render,
rebalance and trainer runs.

Each directory gets one section, drawn by the first registered section kind that claims it (by its
manifest's schema or job, or, for a directory without a manifest, by the files it holds). The kinds live
next to their domain (`openspatial/report.py`, `render/report.py`, `data_engine/rebalance/report.py`,
`trainer/report.py`), listed in `data_engine/registry.py` and `pipelines/registry.py`, and draw with the
helpers this package exports; any other stage output gets the stage section (manifest counts, the funnel of
rows kept after each stage, score histograms, accepted images and rejected images per reason).

The package, one module per job:
- `drawing`: the HTML toolkit (escaping, formats, tables, thumbnails, inline-SVG charts);
- `scan`: manifests and a bounded, deterministic sample of a directory's rows;
- `sections`: the section registry (`SectionKind`, `register_section`, `ReportOptions`);
- `stage_section`: the fallback section of any stage output;
- `document`: the sections in one self-contained file (`write_html_report`).

The file is self-contained: no scripts, no external URLs. Thumbnails are small JPEG data: URIs made with
Pillow and charts are inline SVG, so it can be mailed, archived or opened from a bucket. Every value that
comes from data is HTML-escaped, and a Content-Security-Policy meta tag forbids scripts outright, so a
hostile string that slipped past escaping still could not run. Shards are read column by column, and a
large directory is sampled by reading every k-th row group, so the cost of a report stays bounded.

CLI: python -m pipelines report --out report.html DIR [DIR...] (the composition root registers every section).
"""

from data_engine.report.document import choose_section_kind, write_html_report
from data_engine.report.drawing import (SERIES_COLORS, Series, caption_line, compute_histogram, escape, format_number,
                                        heading, image_html, make_thumbnail, muted, render_key_values,
                                        render_line_chart, render_reject_chart, render_table)
from data_engine.report.scan import (ReportError, ReportInput, ScannedRows, accepted_mask, evenly_spaced, fetch_values,
                                     load_report_input, manifest_schema, pick_per_group, read_json_file, scan_rows)
from data_engine.report.sections import ReportOptions, SectionKind, register_section
from data_engine.report.stage_section import funnel_bars, render_manifest_summary

__all__ = ["SERIES_COLORS", "ReportError", "ReportInput", "ReportOptions", "ScannedRows", "SectionKind", "Series",
           "accepted_mask", "caption_line", "choose_section_kind", "compute_histogram", "escape", "evenly_spaced",
           "fetch_values", "format_number", "funnel_bars", "heading", "image_html", "load_report_input",
           "make_thumbnail", "manifest_schema", "muted", "pick_per_group", "read_json_file", "register_section",
           "render_key_values", "render_line_chart", "render_manifest_summary", "render_reject_chart", "render_table",
           "scan_rows", "write_html_report"]
