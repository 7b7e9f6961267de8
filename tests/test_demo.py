"""`make demo` end to end (small corpus, the session's Ray): shards, manifest and a report that renders."""

from __future__ import annotations

import json

from data_engine.shards import read_manifest
from pipelines.demo import run_demo
from tests.browser import open_page


def test_demo_writes_shards_and_a_report_that_renders(ray_local, browser, tmp_path):
    report = run_demo(tmp_path / "demo", n_procedural=6, n_scenes=1)
    manifest = read_manifest(tmp_path / "demo" / "images")
    labels = json.loads((tmp_path / "demo" / "raw" / "labels.json").read_text())
    assert manifest["rows_written"] == len(labels["files"])
    assert manifest["rows_accepted"] > 0 and manifest["rejects"]

    page, problems, dialogs = open_page(browser, report)
    widths = page.eval_on_selector_all("img", "images => images.map(i => i.complete ? i.naturalWidth : 0)")
    assert widths and all(width > 0 for width in widths)
    assert page.locator("svg").count() > 0
    body = page.inner_text("body")
    assert "decode_image:truncated" in body and str(manifest["rows_written"]) in body
    for stage_dir in ("curated", "spatial_qa"):
        assert read_manifest(tmp_path / "demo" / stage_dir)["rows_written"] > 0
        assert stage_dir in body
    assert problems == [] and dialogs == []
    page.close()
