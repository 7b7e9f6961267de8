"""HTML page over render outputs: multi-view collages with their structured captions, and spatial-edit
pairs side by side with their instructions. Self-contained and script-free like data_engine/report.py,
whose thumbnails and Content-Security-Policy it reuses.

CLI: python -m render.report --out render.html DIR [DIR...]   (multiview_sample or edit_triplet outputs)
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data_engine.report import CSP, make_thumbnail
from data_engine.shards import iter_shards, read_manifest

STYLE = ("body{font-family:sans-serif;margin:24px;color:#222}figure{display:inline-block;margin:8px;"
         "vertical-align:top;max-width:360px}figcaption{font-size:12px}.pair img{margin-right:4px}"
         ".muted{color:#777}")


def _img(ref: dict[str, Any] | None) -> str:
    thumbnail = make_thumbnail(ref["bytes"]) if ref else None
    if thumbnail is None:
        return '<span class="muted">no image</span>'
    return f'<img src="{thumbnail.data_uri}" width="{thumbnail.width}" height="{thumbnail.height}" alt="">'


def _multiview_figure(row: dict[str, Any]) -> str:
    caption = json.loads(row["structured_caption"])
    return (f"<figure>{_img(row['collage'])}<figcaption><b>{html.escape(row['upstream_id'])}</b><br>"
            f"{html.escape(caption['subject_summary'])}<br><span class='muted'>"
            f"{html.escape(caption['layout_description'])}</span></figcaption></figure>")


def _edit_figure(row: dict[str, Any]) -> str:
    metadata = json.loads(row["metadata"])
    return (f"<figure class='pair'>{_img(row['source_image'])}{_img(row['target_image'])}<figcaption>"
            f"<b>{html.escape(metadata['branch'])}:{html.escape(metadata['operation'])}</b> "
            f"{html.escape(row['instruction'])}<br><span class='muted'>"
            f"{html.escape(metadata['instructions']['en'])}</span></figcaption></figure>")


FIGURES = {"multiview_sample": _multiview_figure, "edit_triplet": _edit_figure}


def render_section(out_dir: Path, max_rows: int) -> str:
    manifest = read_manifest(out_dir)
    schema = manifest["schema"]["name"]
    if schema not in FIGURES:
        raise ValueError(f"{out_dir}: schema {schema} is not a render output (expected {', '.join(FIGURES)})")
    figures: list[str] = []
    for _, table in iter_shards(out_dir):
        for row in table.to_pylist():
            if row["reject_reason"] is None and len(figures) < max_rows:
                figures.append(FIGURES[schema](row))
    rejects = ", ".join(f"{html.escape(k)}: {v}" for k, v in manifest["rejects"].items()) or "none"
    return (f"<h2>{html.escape(manifest['job'])} ({schema})</h2><p>{manifest['rows_accepted']} of "
            f"{manifest['rows_written']} rows accepted; rejects: {rejects}</p>{''.join(figures)}")


def write_render_report(out_dirs: Sequence[Path], out_html: Path, *, max_rows: int = 24) -> Path:
    body = "".join(render_section(Path(d), max_rows) for d in out_dirs)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
                        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
                        f"<title>Render outputs</title><style>{STYLE}</style></head><body>"
                        f"<h1>Render outputs</h1>{body}</body></html>\n", encoding="utf-8")
    return out_html


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m render.report", description=__doc__.splitlines()[0])
    parser.add_argument("out_dirs", nargs="+", type=Path, metavar="DIR")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--max-rows", type=int, default=24)
    args = parser.parse_args(argv)
    print(write_render_report(args.out_dirs, args.out, max_rows=args.max_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
