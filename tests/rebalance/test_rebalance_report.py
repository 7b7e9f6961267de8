"""The rebalance section of the HTML report, on the summary the real Rebalance step writes over tagged shards
with known categories: frequencies before and after, head/tail shares, entropy, examples per category."""

from __future__ import annotations

import html
import io
import json
import math
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
from PIL import Image

from data_engine.rebalance.report import PLOT_NAME, SUMMARY_NAME
from data_engine.rebalance.run import ADDED_FIELDS, REJECT_REASON, decision_columns, write_summary
from data_engine.rebalance.sampling import RebalanceConfig, RebalanceInputError, Segment
from data_engine.report import format_number, write_html_report
from data_engine.schemas import CAPTION
from data_engine.shards import atomic_write_json, iter_shards, write_shard
from tests.browser import open_page

# category id -> samples; with T = 20 the first two are head categories.
CATEGORY_COUNTS = {"n001": 150, "n002": 40, "n003": 12, "n004": 5, "n005": 1}
HOSTILE_NAME = "<b>tail</b> & \"co\""
TAG_FIELDS = (pa.field("embedded_caption", pa.string()), pa.field("tags", pa.list_(pa.string())),
              pa.field("tag_names", pa.list_(pa.string())))
CONFIG = RebalanceConfig(tail_threshold=20, segments=(Segment(from_multiple=1, base_rate=0.3),), seed=2)


def jpeg(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), color).save(buffer, format="JPEG")
    return buffer.getvalue()


def write_tagged(directory: Path) -> None:
    rows = []
    for number, (category, count) in enumerate(CATEGORY_COUNTS.items()):
        name = HOSTILE_NAME if category == "n005" else f"thing {number}"
        for i in range(count):
            caption = f"<i>caption</i> {i} of {name}"
            rows.append({"id": f"{category}-{i:03d}", "source_dataset": "t", "upstream_id": str(i), "license": "CC0",
                         "image_bytes": jpeg((40 * number, 90, 200)), "captions": [("long/en", caption)],
                         "embedded_caption": "long/en", "tags": [category], "tag_names": [name]})
    schema = CAPTION.arrow(TAG_FIELDS)
    directory.mkdir(parents=True)
    for shard in range(2):  # examples are found across shards
        write_shard(directory, shard, pa.Table.from_pylist(rows[shard::2], schema=schema), [])
    atomic_write_json(directory / "_manifest.json", {"job": "tag_captions", "schema": {"name": "caption"}})


@pytest.fixture(scope="module")
def rebalanced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("rebalance-report") / "rebalanced"
    write_tagged(directory)
    # What the rebalance stage's global decision and decide() write, over both shards at once.
    tables = [table for _, table in iter_shards(directory)]
    decided = decision_columns(pa.concat_tables(tables).select(["id", "tags"]), CONFIG)
    start = 0
    for shard_id, table in enumerate(tables):
        part = {name: values[start:start + table.num_rows] for name, values in decided.items()}
        start += table.num_rows
        for field in ADDED_FIELDS:
            table = table.append_column(field, pa.array(part[field.name], type=field.type))
        for name, value in (("reject_reason", REJECT_REASON), ("reject_stage", "rebalance")):
            column = [None if kept else value for kept in part["rebalance_kept"]]
            table = table.set_column(table.column_names.index(name), name, pa.array(column, type=pa.string()))
        write_shard(directory, shard_id, table, [])
    write_summary(directory, CONFIG)
    downsampled = decided["rebalance_kept"].count(False)
    rows = sum(CATEGORY_COUNTS.values())
    atomic_write_json(directory / "_manifest.json", {
        "job": "rebalance", "schema": {"name": "caption", "version": CAPTION.version}, "rows_in": rows,
        "rows_written": rows, "rows_accepted": rows - downsampled,
        "rejects": {"rebalance:rebalance_downsampled": downsampled}})
    return directory


@pytest.fixture(scope="module")
def report(rebalanced: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_html_report([rebalanced], tmp_path_factory.mktemp("html") / "report.html", title="rebalance")


def entropy_bits(counts: Counter) -> float:
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values())


def test_distribution_before_and_after_match_the_shards(rebalanced: Path, report: Path) -> None:
    rows = [row for _, table in iter_shards(rebalanced) for row in table.to_pylist()]
    after = Counter(row["rebalance_category"] for row in rows if row["reject_reason"] is None)
    before = Counter(CATEGORY_COUNTS)
    assert after["n001"] < before["n001"] and after["n004"] == before["n004"]  # head downsampled, tail whole
    text = report.read_text(encoding="utf-8")
    for name, counts in (("before", before), ("after", after)):
        head = sum(c for c in counts.values() if c >= CONFIG.tail_threshold) / sum(counts.values())
        # One tag per sample: as many tag occurrences as samples.
        cells = [sum(counts.values()), sum(counts.values()), len(counts), head, 1 - head, entropy_bits(counts)]
        expected = "".join(f'<td class="num">{format_number(c)}</td>' for c in cells)
        assert f"<tr><td>{name}</td>{expected}</tr>" in text
    assert entropy_bits(after) > entropy_bits(before)


def test_log_log_plot_and_examples_per_category(rebalanced: Path, report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    summary = json.loads((rebalanced / SUMMARY_NAME).read_text())
    assert (rebalanced / PLOT_NAME).read_text().startswith("<svg")
    plot = text[text.index("Category frequency before and after"):text.index("Examples per category")]
    assert plot.count("<polyline") == 2 and "<title>before</title>" in plot and "<title>after</title>" in plot
    assert "category rank" in plot and ">100<" in plot  # a power-of-ten tick on the log count axis
    for category in summary["categories"]:
        assert 1 <= len(category["examples"]) <= 3
        for example in category["examples"]:
            assert f'alt="{example["id"]}"' in text and html.escape(example["caption"]) in text
    assert html.escape(HOSTILE_NAME) in text and HOSTILE_NAME not in text


def test_rebalance_report_renders_in_chromium(report: Path, browser) -> None:
    page, problems, dialogs = open_page(browser, report)
    widths = page.eval_on_selector_all("img", "images => images.map(i => i.complete ? i.naturalWidth : 0)")
    assert len(widths) == sum(min(3, count) for count in CATEGORY_COUNTS.values())
    assert all(width > 0 for width in widths)
    assert HOSTILE_NAME in page.inner_text("body") and page.locator("b").count() == 0
    assert problems == [] and dialogs == []
    page.close()


def test_a_repeated_row_id_is_an_error() -> None:
    """A decision is applied by id, so two candidates with one id would share it (redecide also refuses
    repeated ids across shards before any global decision)."""
    candidates = pa.table({"id": ["same", "same"], "tags": [["n001"], ["n002"]]})
    with pytest.raises(RebalanceInputError, match=re.escape("sample ids must be unique; repeated: ['same']")):
        decision_columns(candidates, CONFIG)
