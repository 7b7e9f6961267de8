"""HTML report: contents and escaping checked on the file, rendering checked in headless Chromium."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_engine.report import (ReportError, ReportOptions, choose_section_kind, compute_histogram, funnel_bars,
                                load_report_input, write_html_report)
from tests.browser import open_page

HOSTILE_UPSTREAM_ID = "<script>alert(1)</script>.jpg"
HOSTILE_REASON = "<img src=x onerror=alert(2)>"
# Directory names are data too: quotes, ampersand and angle brackets are all legal on Linux.
HOSTILE_DIR_NAME = 'scores_&<i>"q'
# Decoding stage: 6 accepted images, 1 rejected image that decodes, 3 rejected rows without a usable image.
EXPECTED_THUMBNAILS = 7
EXPECTED_PLACEHOLDERS = 3


def encode_image(size: tuple[int, int], color: tuple[int, ...], image_format: str = "JPEG") -> bytes:
    mode = "RGBA" if len(color) == 4 else "RGB"
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format=image_format)
    return buffer.getvalue()


def write_stage_dir(directory: Path, rows: list[dict[str, Any]], schema: pa.Schema, manifest: dict[str, Any],
                    *, shards: int = 1, row_group_rows: int = 1024) -> Path:
    directory.mkdir(parents=True)
    per_shard = -(-len(rows) // shards)
    for shard in range(shards):
        table = pa.Table.from_pylist(rows[shard * per_shard:(shard + 1) * per_shard], schema=schema)
        pq.write_table(table, directory / f"part-{shard:05d}.parquet", row_group_size=row_group_rows)
    (directory / "_manifest.json").write_text(json.dumps(manifest))
    return directory


def make_manifest(stage_output: str, *, rows_in: int, rows_written: int, rows_accepted: int,
                  rejects: dict[str, int]) -> dict[str, Any]:
    """Stages in the order their rejects are listed, each taking the rows the one before kept."""
    by_stage: dict[str, dict[str, int]] = {}
    for key, count in rejects.items():
        stage, reason = key.split(":", 1)
        by_stage.setdefault(stage, {})[reason] = count
    stages, rows = [], rows_in
    for name, reasons in by_stage.items():
        kept = rows - sum(reasons.values())
        stages.append({"name": name, "rows_in": rows, "rows_out": kept, "rejects": reasons, "seconds": 1.5,
                       "rows_per_s": rows / 1.5})
        rows = kept
    return {
        "schema": {"name": "image_sample", "version": 1}, "job": "report-test", "stage_output": stage_output,
        "config_hash": "abc123", "input": {"uri": "file:///data/in", "n_items": rows_in}, "rows_in": rows_in,
        "rows_written": rows_written, "rows_accepted": rows_accepted, "rejects": rejects, "stages": stages,
        "timings": {"started": "2025-01-01T00:00:00Z", "finished": "2025-01-01T00:00:03Z", "wall_seconds": 3.0},
        "shards": [],
    }


IMAGE_SCHEMA = pa.schema([
    ("id", pa.string()), ("source_dataset", pa.string()), ("upstream_id", pa.string()), ("license", pa.string()),
    ("image_bytes", pa.binary()), ("width", pa.int32()), ("height", pa.int32()), ("image_format", pa.string()),
    ("reject_reason", pa.string()), ("reject_stage", pa.string()),
    ("brightness", pa.float64()), ("entropy", pa.float32()), ("sharpness", pa.float64()),
])


def image_row(index: int, image: bytes | None, size: tuple[int, int] | None, *, reason: str | None = None,
              stage: str | None = None, upstream_id: str | None = None,
              brightness: float | None = 0.5) -> dict[str, Any]:
    return {
        "id": f"img-{index:03d}", "source_dataset": "synthetic", "upstream_id": upstream_id or f"file-{index}.jpg",
        "license": "cc0", "image_bytes": image, "width": size[0] if size else None,
        "height": size[1] if size else None, "image_format": "jpeg" if image else None,
        "reject_reason": reason, "reject_stage": stage, "brightness": brightness, "entropy": 3.0 + index,
        "sharpness": None,  # a score column that is null everywhere still gets a (null-only) histogram
    }


def write_decode_stage(directory: Path) -> Path:
    jpeg = encode_image((64, 48), (200, 120, 40))
    rows = [
        image_row(0, jpeg, (64, 48)),
        image_row(1, encode_image((400, 300), (20, 90, 200)), (400, 300), brightness=0.9),
        image_row(2, encode_image((32, 32), (0, 200, 0, 128), "PNG"), (32, 32), brightness=0.1),
        image_row(3, jpeg, (64, 48), upstream_id=HOSTILE_UPSTREAM_ID),
        image_row(4, jpeg, (64, 48), brightness=None),
        image_row(5, jpeg, (64, 48), brightness=0.7),
        image_row(6, b"\xff\xd8\xff this is not a jpeg", None, reason="decode_failed", stage="decode"),
        image_row(7, None, None, reason="too_small", stage="filter"),
        image_row(8, encode_image((50, 50), (5, 5, 5)), (50, 50), reason="too_dark", stage="filter", brightness=0.01),
        image_row(9, jpeg[:40], (64, 48), reason=HOSTILE_REASON, stage="filter"),
    ]
    manifest = make_manifest("filter", rows_in=1234, rows_written=10, rows_accepted=6,
                             rejects={"decode:decode_failed": 1, "filter:too_small": 1, "filter:too_dark": 1,
                                      f"filter:{HOSTILE_REASON}": 1})
    return write_stage_dir(directory, rows, IMAGE_SCHEMA, manifest, shards=2)


def write_scores_stage(directory: Path) -> Path:
    """A stage output without image columns: the report shows tables and histograms only."""
    schema = pa.schema([("id", pa.string()), ("reject_reason", pa.string()), ("aesthetic", pa.float64())])
    rows = [{"id": f"row-{i}", "reject_reason": "low_aesthetic" if i < 5 else None, "aesthetic": i / 20}
            for i in range(20)]
    manifest = make_manifest("aesthetic", rows_in=20, rows_written=20, rows_accepted=15,
                             rejects={"aesthetic:low_aesthetic": 5})
    return write_stage_dir(directory, rows, schema, manifest)


@pytest.fixture(scope="module")
def stage_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("stages")
    return [write_decode_stage(root / "decode"), write_scores_stage(root / HOSTILE_DIR_NAME)]


@pytest.fixture(scope="module")
def report(stage_dirs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    return write_html_report(stage_dirs, out, title="Job <report> & co")


def test_report_shows_counts_reasons_and_escapes_data(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    assert "1,234" in text  # rows_in of the decode stage, formatted
    assert "<th>Rows accepted</th><td>6 (60.0% of rows written)</td>" in text
    for reason in ("decode_failed", "too_small", "too_dark", "low_aesthetic", "filter:too_dark"):
        assert reason in text
    for column in ("brightness", "entropy", "sharpness", "aesthetic", "width"):
        assert f"<b>{column}</b>" in text
    assert "nulls: 1 accepted, 0 rejected" in text  # the null brightness of img-004
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.jpg" in text
    assert "&lt;img src=x onerror=alert(2)&gt;" in text
    assert "scores_&amp;&lt;i&gt;&quot;q" in text
    assert "Job &lt;report&gt; &amp; co" in text
    assert "<script" not in text.lower()
    assert "<img src=x" not in text
    assert text.count("<img ") == EXPECTED_THUMBNAILS
    assert all(f'alt="img-{i:03d}"' in text for i in (0, 1, 2, 3, 4, 5, 8))  # every decodable image, once each
    assert text.count('class="placeholder"') == EXPECTED_PLACEHOLDERS
    # Rejected rows are grouped by reason, each reason under its own heading with the manifest's count.
    assert '<h4><span class="reason">too_dark</span> <span class="muted">(1 rows in the manifest)</span></h4>' in text
    assert text.count("<h4>") == 4


def test_funnel_shows_rows_kept_after_each_stage_in_pipeline_order(report: Path) -> None:
    stages = [{"name": "read", "rows_in": 100, "rows_out": 98}, {"name": "decode", "rows_in": 98, "rows_out": 60},
              {"name": "no_counts"}, {"name": "dedup", "rows_in": 60, "rows_out": 60}]
    bars = funnel_bars(stages)
    assert [(bar.label, bar.value, bar.remainder) for bar in bars] == [
        ("after read", 98, 2), ("after decode", 60, 38), ("after dedup", 60, 0)]
    assert [bar.note for bar in bars] == ["(98.0%, −2)", "(60.0%, −38)", "(60.0%)"]
    text = report.read_text(encoding="utf-8")
    # The decode fixture's manifest: 1234 rows in, decode rejects 1, the filter rejects 3 more.
    assert text.index("after decode") < text.index("after filter")
    assert "after decode: 1,233 (99.9%, −1)" in text and "after filter: 1,230 (99.7%, −3)" in text


def test_report_is_self_contained(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    assert re.findall(r'(?:src|href)="(?!data:|#)', text) == []
    assert "url(" not in text
    assert "<script" not in text


def test_stage_without_images_gets_tables_and_histograms_only(stage_dirs: list[Path], tmp_path: Path) -> None:
    text = write_html_report(stage_dirs[1:], tmp_path / "scores.html", title="scores").read_text()
    assert "<svg" in text and "<b>aesthetic</b>" in text and "low_aesthetic" in text
    assert "<img" not in text
    assert "Accepted samples" not in text and "Rejected samples" not in text


def test_large_directory_is_sampled_deterministically(tmp_path: Path) -> None:
    jpeg = encode_image((8, 8), (90, 90, 90))
    rows = [image_row(i, jpeg, (8, 8), reason="blurry" if i % 4 == 0 else None, stage="filter")
            for i in range(2000)]
    manifest = make_manifest("filter", rows_in=2000, rows_written=2000, rows_accepted=1500,
                             rejects={"filter:blurry": 500})
    stage_dir = write_stage_dir(tmp_path / "big", rows, IMAGE_SCHEMA, manifest, shards=4, row_group_rows=50)
    options = ReportOptions(sample_rows=5, rejected_per_reason=5, max_scanned_rows=400)
    first = write_html_report([stage_dir], tmp_path / "a.html", title="big", options=options)
    second = write_html_report([stage_dir], tmp_path / "b.html", title="big", options=options)
    text = first.read_text()
    assert text == second.read_text()
    assert "sampled: 400 of 2,000 rows" in text
    assert text.count("<img ") == 10


def test_histogram_counts_nulls_apart_and_handles_a_constant_column() -> None:
    values = np.array([2.0, 2.0, 2.0, np.nan, np.inf])
    histogram = compute_histogram(values, np.array([True, False, True, True, False]))
    assert [(bar.accepted, bar.rejected) for bar in histogram.bars] == [(2, 1)]
    assert histogram.nulls is not None and (histogram.nulls.accepted, histogram.nulls.rejected) == (1, 1)
    assert histogram.value_range == (2.0, 2.0)


@pytest.mark.parametrize(("manifest_text", "message"), [
    (None, "manifest missing"),
    ("{not json", "malformed manifest"),
    ("[1, 2]", "top level is list"),
    (json.dumps({"rows_in": 1, "rows_written": 1}), "'rows_accepted' must be a non-negative integer"),
    (json.dumps({"rows_in": 1, "rows_written": 1, "rows_accepted": 1, "stages": {}}), "'stages' must be a list"),
])
def test_bad_manifest_raises_report_error_naming_path(tmp_path: Path, manifest_text: str | None,
                                                      message: str) -> None:
    stage_dir = tmp_path / "stage"
    stage_dir.mkdir()
    if manifest_text is not None:
        (stage_dir / "_manifest.json").write_text(manifest_text)
    with pytest.raises(ReportError, match=re.escape(message)) as caught:
        write_html_report([stage_dir], tmp_path / "r.html", title="t")
    assert str(stage_dir / "_manifest.json") in str(caught.value)
    assert not (tmp_path / "r.html").exists()


def test_cli_writes_report_and_reports_errors(stage_dirs: list[Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines.cli import main  # `python -m pipelines report`: the composition root knows every section

    out = tmp_path / "cli" / "report.html"
    assert main(["report", "--out", str(out), "--title", "cli", *map(str, stage_dirs)]) == 0
    assert "<title>cli</title>" in out.read_text()
    assert main(["report", "--out", str(out), str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", "--out", str(out), str(tmp_path / "empty")]) == 2
    assert "empty/_manifest.json: manifest missing" in capsys.readouterr().err


@pytest.mark.parametrize(("files", "kind"), [
    ({"_manifest.json": {"schema": {"name": "image_sample"}}}, "stage"),
    ({"_manifest.json": {"schema": {"name": "caption"}, "job": "caption_images"}}, "stage"),
    ({"_manifest.json": {"schema": {"name": "qa_conversation"}}}, "spatial_qa"),
    ({"_manifest.json": {"schema": {"name": "multiview_sample"}}}, "multiview"),
    ({"_manifest.json": {"schema": {"name": "edit_triplet"}}}, "spatial_edit"),
    ({"_manifest.json": {"schema": {"name": "caption"}, "job": "rebalance"}, "rebalance_report.json": {}}, "rebalance"),
    ({"train_log.jsonl": None}, "trainer"),
    ({"eval/step-00000002.json": {}}, "trainer"),
    ({"samples/step-00000002/grid.png": None}, "trainer"),
    ({"grid.png": None}, "trainer"),
])
def test_each_directory_gets_the_section_kind_of_what_it_holds(tmp_path: Path, files: dict[str, Any],
                                                               kind: str) -> None:
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name == "_manifest.json":
            content = {"rows_in": 0, "rows_written": 0, "rows_accepted": 0, **content}
        path.write_text(json.dumps(content) if content is not None else "")
    assert choose_section_kind(load_report_input(tmp_path)).name == kind


def test_report_renders_in_chromium_without_errors(browser: Any, report: Path) -> None:
    page, problems, dialogs = open_page(browser, report)

    widths = page.eval_on_selector_all("img", "images => images.map(i => i.complete ? i.naturalWidth : 0)")
    assert len(widths) == EXPECTED_THUMBNAILS
    assert all(width > 0 for width in widths)
    assert page.locator(".placeholder").count() == EXPECTED_PLACEHOLDERS
    assert page.locator("section svg").count() > 0
    body_text = page.inner_text("body")
    assert HOSTILE_UPSTREAM_ID in body_text and HOSTILE_REASON in body_text
    assert page.locator("script").count() == 0
    assert dialogs == []
    assert problems == []
    page.close()
