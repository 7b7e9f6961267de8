"""The spatial QA section of the HTML report, on the output of the real spatial_qa job and on a shard with
hostile text: counts per sub-task and language, example images with their questions and answers."""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from data_engine.executor import run_job
from data_engine.report import write_html_report
from data_engine.schemas import QA_CONVERSATION
from data_engine.shards import atomic_write_json, iter_shards, read_manifest, write_shard
from openspatial.qa.tasks import TASKS
from pipelines.jobfile import JOBS_DIR, load_job
from tests.browser import open_page

SMALL = ["reader.procedural.width=128", "reader.procedural.height=96", "reader.procedural.frames=4",
         "reader.index.min_visible_pixels=40", "reader.qa.min_visible_pixels=40"]
HOSTILE_QUESTION = "<script>alert('q')</script> & which is closer?"
HOSTILE_TASK = '<img src=x onerror="alert(1)">'


def rows_of(directory: Path) -> list[dict]:
    return [row for _, table in iter_shards(directory) for row in table.to_pylist()]


@pytest.fixture(scope="module")
def qa_dirs(ray_local, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("qa-report")
    out = root / "spatial_qa"
    run_job(load_job(JOBS_DIR / "spatial_qa.yaml", ["input=procedural://3?seed=3", f"output={out}", *SMALL]),
            progress=False)
    # A shard whose text is hostile: the first real row with its question and task replaced.
    row = rows_of(out)[0]
    row["messages"][0]["content"][-1]["text"] = HOSTILE_QUESTION
    rejected = dict(row, id="rejected-row", reject_reason="ambiguous", reject_stage="qa", reject_detail="near tie")
    hostile = root / "hostile"
    hostile.mkdir()
    write_shard(hostile, 0, pa.Table.from_pylist([dict(row, task=HOSTILE_TASK), rejected],
                                                 schema=QA_CONVERSATION.arrow()), [])
    atomic_write_json(hostile / "_manifest.json", {"schema": {"name": "qa_conversation", "version": 1},
                                                  "job": "hostile<qa>", "rows_in": 1, "rows_written": 2,
                                                  "rows_accepted": 1, "rejects": {"qa:ambiguous": 1}})
    return out, hostile


@pytest.fixture(scope="module")
def report(qa_dirs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_html_report(list(qa_dirs), tmp_path_factory.mktemp("html") / "report.html", title="spatial QA")


def test_counts_per_sub_task_and_language_match_the_shards(qa_dirs: tuple[Path, Path], report: Path) -> None:
    out, _ = qa_dirs
    rows = rows_of(out)
    text = report.read_text(encoding="utf-8")
    counts = Counter(row["task"] for row in rows if row["reject_reason"] is None)
    languages = Counter((row["task"], json.loads(row["metadata"])["language"]) for row in rows
                        if row["reject_reason"] is None)
    assert len(counts) >= 10 and read_manifest(out)["rows_accepted"] == sum(counts.values())
    for task in TASKS:  # every sub-task has a row in the table, zero when the job produced none
        cells = [task, TASKS[task].capability, counts[task], languages[task, "en"], languages[task, "zh"], 0]
        expected = "".join(f'<td class="num">{c}</td>' if isinstance(c, int) else f"<td>{c}</td>" for c in cells)
        assert f"<tr>{expected}</tr>" in text
    assert f"{len(counts)} of {len(TASKS)} sub-tasks present" in text


def test_examples_show_images_question_and_answer_per_sub_task(qa_dirs: tuple[Path, Path], report: Path) -> None:
    out, _ = qa_dirs
    rows = [row for row in rows_of(out) if row["reject_reason"] is None]
    text = report.read_text(encoding="utf-8")
    for task in {row["task"] for row in rows}:
        assert f"<h4>{task}</h4>" in text
        task_rows = [row for row in rows if row["task"] == task]
        shown = [row for row in task_rows if html.escape(row["id"]) in text]
        assert 1 <= len(shown) <= 2
        for row in shown:
            user, assistant = row["messages"]
            assert html.escape(user["content"][-1]["text"]) in text
            assert html.escape(assistant["content"][0]["text"]) in text
            for number in range(len(row["images"])):
                assert f'alt="{html.escape(row["id"])} image {number + 1}"' in text


def test_hostile_text_is_escaped_and_the_page_renders(report: Path, browser) -> None:
    text = report.read_text(encoding="utf-8")
    assert html.escape(HOSTILE_QUESTION) in text and html.escape(HOSTILE_TASK) in text
    assert "<script" not in text and "<img src=x" not in text
    assert "qa:ambiguous" in text and "hostile&lt;qa&gt;" in text
    page, problems, dialogs = open_page(browser, report)
    widths = page.eval_on_selector_all("img", "images => images.map(i => i.complete ? i.naturalWidth : 0)")
    assert widths and all(width > 0 for width in widths)
    assert HOSTILE_QUESTION in page.inner_text("body")
    assert problems == [] and dialogs == []
    page.close()
