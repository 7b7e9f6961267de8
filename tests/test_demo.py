"""`make demo` end to end (small corpus, the session's Ray): every data job's shards and manifest, the image flow
as one chain of jobs (each reading the accepted rows of the one before, its manifest naming the upstream one),
both tiny models trained a few steps (MLLM evaluated, MMDiT sampled), and one report that renders with the
cross-job funnel and a section per output."""

from __future__ import annotations

import json

import pytest

from data_engine.shards import read_manifest
from pipelines.demo import CAPTIONED_PRESET, CURATION_PRESETS, DemoError, DemoSize, TrainingRun, run_demo, run_trainer
from tests.browser import open_page
from trainer.report import read_train_log

TRAIN_STEPS = 3


def test_demo_runs_every_stage_trains_both_models_and_reports(ray_local, browser, tmp_path):
    out = tmp_path / "demo"
    # Three scenes: procedural-0-000002 hashes into the default 10% held out, so the MLLM is evaluated on it.
    report = run_demo(out, DemoSize(n_procedural=6, n_scenes=3, n_sequences=1, n_videos=1, n_assets=2,
                                     train_steps=TRAIN_STEPS))
    manifest = read_manifest(out / "images")
    labels = json.loads((out / "raw" / "labels.json").read_text())
    assert manifest["rows_written"] == len(labels["files"])
    assert manifest["rows_accepted"] > 0 and manifest["rejects"]
    curated = {preset: read_manifest(out / f"curated_{preset}") for preset in CURATION_PRESETS}
    assert [m["config"]["preset"] for m in curated.values()] == list(CURATION_PRESETS)
    # Table 4's minimum side grows with the preset, so fewer rows survive decoding at each stage.
    kept_after_decode = [next(s["rows_out"] for s in m["stages"] if s["name"] == "decode_image")
                         for m in curated.values()]
    # (the natural-looking corpus images are all large enough for 208p and 512p, so only 1024p must drop more)
    assert kept_after_decode[0] >= kept_after_decode[1] >= kept_after_decode[2]
    assert kept_after_decode[0] > kept_after_decode[2]
    # The image flow: each job reads exactly the rows the one before accepted and records that manifest.
    chain = [f"curated_{CAPTIONED_PRESET}", "captions", "rebalanced", "latents"]
    manifests = {directory: read_manifest(out / directory) for directory in chain}
    for upstream, downstream in zip(chain, chain[1:]):
        assert manifests[downstream]["rows_in"] == manifests[upstream]["rows_accepted"] > 0, downstream
        assert manifests[downstream]["input"]["upstream"]["manifest"] == str(out / upstream / "_manifest.json")
        assert manifests[downstream]["input"]["upstream"]["config_hash"] == manifests[upstream]["config_hash"]
    # both render jobs render every asset
    for directory in ("render/multiview", "render/spatial_edit"):
        assert read_manifest(out / directory)["rows_written"] == 2, directory
    # RGB-D video: lifted objects of one sequence, then spatial QA on its lifted scene
    assert read_manifest(out / "lift_video/lifted_objects")["rows_accepted"] > 0
    assert read_manifest(out / "lift_video/spatial_qa")["rows_accepted"] > 0
    # Video: pairs inside the shots of one procedural video reach the VLM (the tiny one's answers are noise)
    assert read_manifest(out / "video_pairs")["stages"][-1]["rows_in"] > 0

    for run, follow_up in (("train-mllm", "eval/step-00000003.json"), ("train-mmdit", "samples/step-00000003/grid.png")):
        steps = [record for record in read_train_log(out / run / "train_log.jsonl") if record["event"] == "step"]
        assert steps[-1]["step"] == TRAIN_STEPS and all(record["loss"] > 0 for record in steps)
        assert (out / run / follow_up).is_file()
    evaluated = json.loads((out / "train-mllm" / "eval/step-00000003.json").read_text())["predictions"]
    assert evaluated and all(p["id"] in held_out_ids(out / "spatial_qa") for p in evaluated)

    page, problems, dialogs = open_page(browser, report)
    widths = page.eval_on_selector_all("img", "images => images.map(i => i.complete ? i.naturalWidth : 0)")
    assert widths and all(width > 0 for width in widths)
    kinds = {kind: page.locator(f"section.kind-{kind}").count()
             for kind in ("stage", "spatial_qa", "multiview", "spatial_edit", "rebalance", "edit_balance", "trainer")}
    # spatial_edit: the renders and the edit latents (edit triplets both); edit_balance: the edit_data job;
    # stage: every output without a section kind of its own (the video pairs are the eighth)
    assert kinds == {"stage": 8, "spatial_qa": 2, "multiview": 1, "spatial_edit": 2, "rebalance": 1,
                     "edit_balance": 1, "trainer": 2}
    # The report opens with one funnel across the jobs of the flow, each count its manifest's.
    curated, captions = manifests[f"curated_{CAPTIONED_PRESET}"], manifests["captions"]
    expected = [("raw files", len(labels["files"])),
                ("decoded", next(s["rows_out"] for s in curated["stages"] if s["name"] == "decode_image")),
                ("curated", curated["rows_accepted"]),
                ("captioned", next(s["rows_out"] for s in captions["stages"] if s["name"] == "caption_image")),
                ("caption-filtered", captions["rows_accepted"]),
                ("selected by rebalancing", manifests["rebalanced"]["rows_accepted"]),
                ("latents", manifests["latents"]["rows_accepted"])]
    flow = page.locator("section.kind-flow")
    assert flow.count() == 1 and page.locator("section").first.get_attribute("class") == "kind-flow"
    bars = [title.split(" (")[0] for title in flow.locator("svg title").all_text_contents()]
    assert bars == [f"{label}: {count}" for label, count in expected]
    body = page.inner_text("body")
    assert "decode_image:truncated" in body and str(manifest["rows_written"]) in body
    titles = page.locator("svg title").all_text_contents()
    for preset in CURATION_PRESETS:
        preset_manifest = read_manifest(out / f"curated_{preset}")
        # Each curation output's funnel draws one bar per stage, titled with the rows that stage kept.
        for stage in (s for s in preset_manifest["stages"] if isinstance(s.get("rows_out"), int)):
            assert any(title.startswith(f"after {stage['name']}: {stage['rows_out']} ") for title in titles), \
                (preset, stage["name"])
    qa = page.locator("section.kind-spatial_qa")
    assert qa.locator("h4").count() > 0 and qa.locator(".card img").count() >= qa.locator("h4").count()
    assert problems == [] and dialogs == []
    page.close()


def held_out_ids(directory) -> set[str]:
    import pyarrow.parquet as pq

    rows = [row for path in sorted(directory.glob("part-*.parquet"))
            for row in pq.read_table(path, columns=["id", "split"]).to_pylist()]
    return {row["id"] for row in rows if row["split"] == "eval"}


def test_a_failing_training_step_stops_the_demo_with_one_line(tmp_path, capfd):
    run = TrainingRun("no_such_config.yaml", "train-missing", {}, "eval")
    with pytest.raises(DemoError, match=r"^trainer train with no_such_config.yaml exited with 2 \(its error is above\)$"):
        run_trainer(run, tmp_path, train_steps=1)
    assert "no_such_config.yaml: config file does not exist" in capfd.readouterr().err
