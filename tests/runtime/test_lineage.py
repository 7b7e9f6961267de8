"""Lineage across jobs: each manifest records the upstream manifest it read; `lineage` follows the records
back to the raw input, `flow_funnel` reads the report's image-flow steps from those manifests, and
`pipelines inspect --lineage` prints the chain."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from data_engine.lineage import flow_funnel, lineage, upstream_record
from data_engine.shards import MANIFEST_NAME, ShardDirError
from data_engine.storage import StorageConfig
from pipelines.cli import main


def stage(name: str, rows_in: int, rows_out: int) -> dict[str, Any]:
    return {"name": name, "rows_in": rows_in, "rows_out": rows_out}


def write_output(directory: Path, job: str, config_hash: str, input_uri: str, ops: list[str],
                 stages: list[dict[str, Any]], rows_accepted: int) -> Path:
    """An output directory's manifest as the executor writes it (its upstream recorded from the input)."""
    directory.mkdir(parents=True)
    manifest = {"job": job, "config_hash": config_hash,
                "config": {"stages": [{"op": op, "name": s["name"]} for op, s in zip(ops, stages[1:])]},
                "input": {"uri": input_uri, "upstream": upstream_record(input_uri, StorageConfig())},
                "rows_in": stages[0]["rows_in"], "rows_written": stages[0]["rows_in"], "rows_accepted": rows_accepted,
                "stages": stages}
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest))
    return directory


@pytest.fixture
def chain_dirs(tmp_path: Path) -> dict[str, Path]:
    """raw (48 files) -> curated (40 decoded, 14 kept) -> captions (14 captioned, 11 left by the filters)
    -> rebalanced (9 selected) -> latents (9)."""
    raw = tmp_path / "raw"
    raw.mkdir()
    curated = write_output(tmp_path / "curated", "curate_images", "c" * 64, str(raw),
                           ["decode_image", "iqa_cascade", "dedup"],
                           [stage("read", 48, 48), stage("decode_image", 48, 40), stage("iqa", 40, 18),
                            stage("dedup", 18, 14)], 14)
    captions = write_output(tmp_path / "captions", "caption_images", "d" * 64, str(curated),
                            ["ocr_text", "caption_image", "ocr_caption_filter", "caption_content_filter"],
                            [stage("read", 14, 14), stage("ocr_text", 14, 14), stage("caption_image", 14, 13),
                             stage("ocr_caption_filter", 13, 12), stage("caption_content_filter", 12, 11)], 11)
    # Written without a job config (the stand-alone rebalance step): its stage's name is its step.
    rebalanced = write_output(tmp_path / "rebalanced", "rebalance", "e" * 64, str(captions), [],
                              [stage("rebalance", 11, 9)], 9)
    latents = write_output(tmp_path / "latents", "cache_latents", "f" * 64, str(rebalanced), ["cache_latents"],
                           [stage("read", 9, 9), stage("cache_latents", 9, 9)], 9)
    return {"raw": raw, "curated": curated, "captions": captions, "rebalanced": rebalanced, "latents": latents}


def test_lineage_follows_the_recorded_manifests_back_to_the_raw_input(chain_dirs: dict[str, Path]) -> None:
    chain = lineage(chain_dirs["latents"])
    assert [link.directory for link in chain] == [str(chain_dirs[name]) for name in
                                                  ("latents", "rebalanced", "captions", "curated")]
    assert [link.job for link in chain] == ["cache_latents", "rebalance", "caption_images", "curate_images"]
    assert chain[-1].input_uri == str(chain_dirs["raw"]) and chain[-1].upstream is None
    assert not any(link.changed_since for link in chain)
    recorded = json.loads((chain_dirs["captions"] / MANIFEST_NAME).read_text())["input"]["upstream"]
    assert recorded == {"manifest": str(chain_dirs["curated"] / MANIFEST_NAME), "job": "curate_images",
                        "config_hash": "c" * 64, "schema": None}


def test_flow_funnel_reads_each_step_from_the_manifest_that_decided_it(chain_dirs: dict[str, Path]) -> None:
    steps = [(step.label, step.rows, step.job) for step in flow_funnel(lineage(chain_dirs["latents"]))]
    assert steps == [("raw files", 48, "curate_images"), ("decoded", 40, "curate_images"),
                     ("curated", 14, "curate_images"), ("captioned", 13, "caption_images"),
                     ("caption-filtered", 11, "caption_images"), ("selected by rebalancing", 9, "rebalance"),
                     ("latents", 9, "cache_latents")]


def test_an_upstream_remade_with_another_config_is_flagged(chain_dirs: dict[str, Path]) -> None:
    manifest_path = chain_dirs["curated"] / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps(manifest | {"config_hash": "9" * 64}))
    chain = lineage(chain_dirs["latents"])
    assert [link.changed_since for link in chain] == [False, False, False, True]


def test_a_vanished_upstream_is_a_one_line_error(chain_dirs: dict[str, Path]) -> None:
    (chain_dirs["captions"] / MANIFEST_NAME).unlink()
    with pytest.raises(ShardDirError, match=r"rebalanced was made from .*captions, which is gone"):
        lineage(chain_dirs["latents"])


def test_inspect_lineage_prints_the_chain(chain_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(chain_dirs["latents"]), "--lineage"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5
    assert lines[0].startswith(f"{chain_dirs['latents']}: job cache_latents, config ffffffffffff; 9 in")
    assert lines[3].strip().startswith(f"{chain_dirs['curated']}: job curate_images") and "14 accepted" in lines[3]
    assert lines[4].strip() == f"raw input: {chain_dirs['raw']}"
    assert main(["inspect", str(chain_dirs["latents"]), "--lineage", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [entry["rows_accepted"] for entry in printed] == [9, 9, 11, 14]


def test_the_report_draws_the_longest_chain_among_its_directories(chain_dirs: dict[str, Path]) -> None:
    from data_engine.report.flow_section import render_flow_section

    section = render_flow_section([chain_dirs["captions"], chain_dirs["latents"], chain_dirs["curated"]])
    assert section is not None and section.kind == "flow" and section.directory == chain_dirs["latents"]
    titles = re.findall(r"<title>([^<]*)</title>", section.body)
    assert [title.split(" (")[0] for title in titles] == [
        "raw files: 48", "decoded: 40", "curated: 14", "captioned: 13", "caption-filtered: 11",
        "selected by rebalancing: 9", "latents: 9"]
    assert render_flow_section([chain_dirs["curated"]]) is None  # one job is no flow
