"""`make demo` end to end (small corpus, the session's Ray): shards, manifests and a report that renders, with
one curation funnel per Table 4 preset and the spatial QA section."""

from __future__ import annotations

import json

from data_engine.shards import read_manifest
from pipelines.demo import CURATION_PRESETS, run_demo
from tests.browser import open_page


def test_demo_writes_shards_and_a_report_that_renders(ray_local, browser, tmp_path):
    report = run_demo(tmp_path / "demo", n_procedural=6, n_scenes=1)
    manifest = read_manifest(tmp_path / "demo" / "images")
    labels = json.loads((tmp_path / "demo" / "raw" / "labels.json").read_text())
    assert manifest["rows_written"] == len(labels["files"])
    assert manifest["rows_accepted"] > 0 and manifest["rejects"]
    curated = {preset: read_manifest(tmp_path / "demo" / f"curated_{preset}") for preset in CURATION_PRESETS}
    assert [m["config"]["preset"] for m in curated.values()] == list(CURATION_PRESETS)
    # Table 4's minimum side grows with the preset, so fewer rows survive decoding at each stage.
    kept_after_decode = [next(s["rows_out"] for s in m["stages"] if s["name"] == "decode_image")
                         for m in curated.values()]
    assert kept_after_decode[0] > kept_after_decode[1] > kept_after_decode[2]

    page, problems, dialogs = open_page(browser, report)
    widths = page.eval_on_selector_all("img", "images => images.map(i => i.complete ? i.naturalWidth : 0)")
    assert widths and all(width > 0 for width in widths)
    assert page.locator("section.kind-stage").count() == 4 and page.locator("section.kind-spatial_qa").count() == 1
    body = page.inner_text("body")
    assert "decode_image:truncated" in body and str(manifest["rows_written"]) in body
    for preset, preset_manifest in curated.items():
        section = page.locator("section", has_text=f"curate_images ({preset}): curated_{preset}")
        # The funnel draws one bar per stage, in pipeline order, titled with the rows it kept.
        titles = section.locator("svg title").all_text_contents()
        funnel = [title for title in titles if title.startswith("after ")]
        assert [title.split(":")[0] for title in funnel] == [f"after {s['name']}" for s in preset_manifest["stages"]]
        assert funnel[-1].startswith(f"after dedup: {preset_manifest['rows_accepted']} ")
    qa = page.locator("section.kind-spatial_qa")
    assert qa.locator("h4").count() > 0 and qa.locator(".card img").count() >= qa.locator("h4").count()
    assert problems == [] and dialogs == []
    page.close()
