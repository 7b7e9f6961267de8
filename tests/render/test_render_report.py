"""The render sections of the HTML report, on the outputs of the real multiview and spatial_edit jobs (render
environment) and on an edit shard with hostile text: collage thumbnails, edit pairs beside their instruction."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pyarrow as pa
import pytest

from data_engine.executor import run_job
from data_engine.report import ReportOptions, write_html_report
from data_engine.editing.triplet import EDIT_TRIPLET
from data_engine.shards import atomic_write_json, iter_shards, write_shard
from pipelines.jobfile import JOBS_DIR, load_job
from tests.browser import open_page

HOSTILE_INSTRUCTION = "<script>alert('edit')</script> move the chair & \"keep\" the scene"


def shard_schema(directory: Path) -> pa.Schema:
    return next(iter_shards(directory))[1].schema


def accepted_rows(directory: Path) -> list[dict]:
    return [row for _, table in iter_shards(directory) for row in table.to_pylist() if row["reject_reason"] is None]


def small_render_job(job_file: str, stage: str, out: Path, count: int) -> Path:
    settings = f"stages.{stage}.config.{stage.removeprefix('render_')}"
    run_job(load_job(JOBS_DIR / job_file, [
        f"output={out}", f"reader.count={count}", f"{settings}.width=64", f"{settings}.height=64",
        f"{settings}.render.samples=4"]), progress=False)
    return out


@pytest.fixture(scope="module")
def render_dirs(render_env_python, ray_local, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("render-report")
    multiview = small_render_job("multiview.yaml", "render_multiview", root / "multiview", 2)
    edit = small_render_job("spatial_edit.yaml", "render_spatial_edit", root / "edit", 3)
    row = accepted_rows(edit)[0]
    hostile = root / "hostile_edit"
    hostile.mkdir()
    write_shard(hostile, 0, pa.Table.from_pylist([dict(row, instruction=HOSTILE_INSTRUCTION)],
                                                 schema=EDIT_TRIPLET.arrow()), [])
    atomic_write_json(hostile / "_manifest.json", {"schema": {"name": "edit_triplet", "version": 1}, "job": "hostile",
                                                  "rows_in": 1, "rows_written": 1, "rows_accepted": 1, "rejects": {}})
    return [multiview, edit, hostile]


@pytest.fixture(scope="module")
def report(render_dirs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_html_report(render_dirs, tmp_path_factory.mktemp("html") / "report.html", title="render")


def test_collages_with_their_structured_captions(render_dirs: list[Path], report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    rows = accepted_rows(render_dirs[0])
    assert rows
    for row in rows:
        caption = json.loads(row["structured_caption"])
        assert f'alt="{row["id"]}"' in text
        assert html.escape(caption["subject_summary"]) in text and html.escape(caption["layout_description"]) in text


def test_edit_pairs_side_by_side_with_their_instruction(render_dirs: list[Path], report: Path, browser) -> None:
    rows = accepted_rows(render_dirs[1])
    text = report.read_text(encoding="utf-8")
    for row in rows:
        assert html.escape(row["instruction"]) in text
    assert html.escape(HOSTILE_INSTRUCTION) in text and "<script" not in text
    page, problems, dialogs = open_page(browser, report)
    pairs = page.locator("section.kind-spatial_edit .card")
    assert pairs.count() == len(rows) + 1  # the job's accepted pairs and the hostile one
    for number in range(pairs.count()):
        card = pairs.nth(number)
        sizes = card.locator("img").evaluate_all("images => images.map(i => [i.alt, i.naturalWidth, i.naturalHeight])")
        assert sizes == [["source", 64, 64], ["target", 64, 64]]
        boxes = [card.locator("img").nth(i).bounding_box() for i in range(2)]
        assert boxes[0]["y"] == boxes[1]["y"] and boxes[0]["x"] < boxes[1]["x"]  # side by side
    assert HOSTILE_INSTRUCTION in page.inner_text("body")
    widths = page.eval_on_selector_all("img", "images => images.map(i => i.complete ? i.naturalWidth : 0)")
    assert all(width > 0 for width in widths)
    assert problems == [] and dialogs == []
    page.close()


def test_edit_section_shows_pitch_symmetric_and_thin_cases_first(render_dirs: list[Path], tmp_path: Path) -> None:
    """Thirty pairs of which one is a pitch, one a rotation of a 2-fold subject, one a thin subject: those
    three come first, each with the facts its label rests on."""
    template = accepted_rows(render_dirs[1])[0]
    cases = {5: ("camera:pitch", "none", 0.0), 17: ("object:rotate", "2-fold", 0.0), 23: ("camera:yaw", "none", 0.6)}
    rows = []
    for number in range(30):
        operation, symmetry, thin = cases.get(number, ("object:scale", "none", 0.0))
        branch, name = operation.split(":")
        metadata = dict(json.loads(template["metadata"]), branch=branch, operation=name, subject_symmetry=symmetry,
                        subject_thin_share=thin, delta_deg=15.0, source_elevation_deg=12.0, target_elevation_deg=27.0)
        rows.append(dict(template, id=f"row{number}", instruction=f"edit number {number}", edit_operation=operation,
                         subject_symmetry=symmetry, subject_thin_share=thin, metadata=json.dumps(metadata)))
    directory = tmp_path / "cases"
    directory.mkdir()
    write_shard(directory, 0, pa.Table.from_pylist(rows, schema=shard_schema(render_dirs[1])), [])
    atomic_write_json(directory / "_manifest.json", {"schema": {"name": "edit_triplet", "version": 1}, "job": "cases",
                                                     "rows_in": 30, "rows_written": 30, "rows_accepted": 30,
                                                     "rejects": {}})
    text = write_html_report([directory], tmp_path / "report.html", title="cases",
                             options=ReportOptions(sample_rows=6)).read_text(encoding="utf-8")
    shown = [int(n) for n in re.findall(r"edit number (\d+)", text)]
    assert shown[:3] == [5, 17, 23] and len(shown) == 6
    assert "pitch +15 deg: elevation 12.0 -&gt; 27.0 deg" in text
    assert "symmetry 2-fold" in text and "thin parts 60% of the silhouette (thin subject)" in text
