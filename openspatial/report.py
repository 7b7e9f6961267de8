"""HTML report of a spatial QA shard directory: counts per sub-task and language, and example rows with their
images (anchors already drawn), question and answer.

    python -m openspatial.report out/spatial_qa out/spatial_qa/report.html
"""

from __future__ import annotations

import argparse
import base64
import html
import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from openspatial.qa.tasks import TASKS

_STYLE = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
          "padding:4px 8px}.example{display:flex;gap:1em;margin:1em 0;align-items:flex-start}"
          "img{max-width:320px;border:1px solid #999}pre{white-space:pre-wrap;max-width:40em}")


def _example_html(row: dict) -> str:
    user, assistant = row["messages"]
    question = next(part["text"] for part in user["content"] if part["type"] == "text")
    answer = assistant["content"][0]["text"]
    images = "".join(f'<img alt="image {i + 1}" src="data:image/jpeg;base64,{base64.b64encode(image["bytes"]).decode()}">'
                     for i, image in enumerate(row["images"]))
    language = json.loads(row["metadata"])["language"]
    return (f'<div class="example"><div>{images}</div><div><b>Q ({language})</b><pre>{html.escape(question)}</pre>'
            f"<b>A</b><pre>{html.escape(answer)}</pre></div></div>")


def write_spatial_qa_report(shard_dir: Path, out_html: Path, examples_per_task: int = 2) -> dict[str, int]:
    """Write the report; returns the accepted row count per sub-task."""
    counts: Counter = Counter()
    languages: Counter = Counter()
    examples: dict[str, list[str]] = {name: [] for name in TASKS}
    rejected = 0
    for path in sorted(Path(shard_dir).glob("part-*.parquet")):
        for row in pq.read_table(path).to_pylist():
            if row["reject_reason"]:
                rejected += 1
                continue
            task = row["task"]
            counts[task] += 1
            languages[task, json.loads(row["metadata"])["language"]] += 1
            if len(examples.setdefault(task, [])) < examples_per_task:
                examples[task].append(_example_html(row))
    table = "".join(f"<tr><td>{html.escape(name)}</td><td>{html.escape(TASKS[name].capability) if name in TASKS else ''}"
                    f"</td><td>{counts[name]}</td><td>{languages[name, 'en']}</td><td>{languages[name, 'zh']}</td></tr>"
                    for name in examples)
    sections = "".join(f"<h3>{html.escape(name)}</h3>{''.join(rows) or '<p>no rows</p>'}" for name, rows in examples.items())
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>Spatial QA report</title><style>{_STYLE}</style>"
        f"</head><body><h1>Spatial QA: {sum(counts.values())} accepted rows, {rejected} rejected</h1>"
        f"<table><tr><th>sub-task</th><th>capability</th><th>rows</th><th>en</th><th>zh</th></tr>{table}</table>"
        f"<h2>Examples</h2>{sections}</body></html>")
    return dict(counts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shard_dir", type=Path)
    parser.add_argument("out_html", type=Path)
    parser.add_argument("--examples-per-task", type=int, default=2)
    args = parser.parse_args(argv)
    counts = write_spatial_qa_report(args.shard_dir, args.out_html, args.examples_per_task)
    print(f"{args.out_html}: {sum(counts.values())} rows over {len(counts)} sub-tasks")


if __name__ == "__main__":
    main()
