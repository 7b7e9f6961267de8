"""The spatial QA section of the HTML report (`python -m pipelines report`): rows per sub-task and language,
and per sub-task example rows with their images (anchors already drawn), question and answer."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from data_engine.report import (ReportInput, ReportOptions, SectionKind, accepted_mask, caption_line, escape,
                                fetch_values, heading, image_html, make_thumbnail, manifest_schema, muted,
                                pick_per_group, render_manifest_summary, render_reject_chart, render_table,
                                register_section, scan_rows)
from openspatial.qa.tasks import TASKS

SCHEMA = "qa_conversation"
EXAMPLE_IMAGE_SIDE = 256  # large enough to read the drawn marks and boxes
MULTI_VIEW_IMAGE_SIDE = 128  # several views side by side in one card
EXAMPLES_PER_TASK = 2


def row_language(metadata: str | None) -> str:
    try:
        language = json.loads(metadata or "{}").get("language")
    except (json.JSONDecodeError, AttributeError):
        return "?"
    return language if isinstance(language, str) else "?"


def message_text(message: dict[str, Any] | None) -> str:
    parts = (message or {}).get("content") or []
    return "\n".join(part["text"] for part in parts if part.get("type") == "text" and part.get("text"))


def example_html(row_id: str, task: str, language: str, messages: list[dict[str, Any]] | None,
                 images: list[dict[str, Any]] | None) -> str:
    messages = messages or []
    question = next((message_text(m) for m in messages if m.get("role") == "user"), "")
    answer = next((message_text(m) for m in messages if m.get("role") == "assistant"), "")
    side = EXAMPLE_IMAGE_SIDE if len(images or []) <= 1 else MULTI_VIEW_IMAGE_SIDE
    pictures = "".join(image_html(make_thumbnail((image or {}).get("bytes"), side),
                                  f"{row_id} image {number + 1}") for number, image in enumerate(images or []))
    return (f'<div class="card"><div class="images">{pictures}</div>'
            f'{caption_line(f"{task} · {language} · {row_id}", "id")}'
            f'<b>Q</b><div class="text">{escape(question)}</div><b>A</b><div class="text">{escape(answer)}</div></div>')


def render_spatial_qa_section(report_input: ReportInput, options: ReportOptions) -> str:
    scan = scan_rows(report_input.directory, ["id", "task", "reject_reason", "metadata"], options.max_scanned_rows)
    accepted = accepted_mask(scan.rows).tolist()
    tasks = [task if isinstance(task, str) else "?" for task in
             (scan.rows["task"].to_pylist() if "task" in scan.rows.column_names else [None] * scan.rows.num_rows)]
    metadata = scan.rows["metadata"].to_pylist() if "metadata" in scan.rows.column_names else [None] * len(tasks)
    languages = [row_language(m) for m in metadata]
    counts = Counter(task for task, ok in zip(tasks, accepted) if ok)
    by_language = Counter((task, language) for task, language, ok in zip(tasks, languages, accepted) if ok)
    rejected = Counter(task for task, ok in zip(tasks, accepted) if not ok)
    # Every registered sub-task is listed, so a sub-task that produced nothing shows up as a zero.
    names = list(TASKS) + sorted((set(counts) | set(rejected)) - set(TASKS))
    present = f"{len(set(counts) & set(TASKS))} of {len(TASKS)} sub-tasks present"
    table = render_table(["sub-task", "capability", "accepted", "en", "zh", "rejected"], [
        [name, TASKS[name].capability if name in TASKS else "?", counts[name], by_language[name, "en"],
         by_language[name, "zh"], rejected[name]] for name in names])
    groups = pick_per_group([task if ok else None for task, ok in zip(tasks, accepted)],
                            min(EXAMPLES_PER_TASK, options.sample_rows))
    picks = [pick for task_picks in groups.values() for pick in task_picks]
    ids = scan.rows["id"].to_pylist()
    examples = dict(zip(picks, zip(fetch_values(scan, picks, "messages"), fetch_values(scan, picks, "images"))))
    parts = [render_manifest_summary(report_input.manifest or {}, scan),
             heading("Rows per sub-task", f"{scan.scope_note()}; {present}"),
             table, heading("Rejects by reason"), render_reject_chart((report_input.manifest or {}).get("rejects", {})),
             heading("Examples", f"up to {min(EXAMPLES_PER_TASK, options.sample_rows)} per sub-task")]
    if not groups:
        parts.append(muted("No accepted rows."))
    for task, task_picks in sorted(groups.items(), key=lambda item: names.index(item[0])):
        cards = "".join(example_html(str(ids[p]), task, languages[p], *examples[p]) for p in task_picks)
        parts.append(f"<h4>{escape(task)}</h4><div class=\"wide-grid\">{cards}</div>")
    return "".join(parts)


SPATIAL_QA_SECTION = register_section(SectionKind(
    "spatial_qa", lambda report_input: manifest_schema(report_input) == SCHEMA, render_spatial_qa_section))
