"""`make train-mllm`'s config on shards from the real spatial QA job: the loss halves; eval scores the sub-tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_engine.executor import run_job
from pipelines.jobfile import JOBS_DIR, load_job
from trainer.cli import main as cli_main
from trainer.config import CONFIGS_DIR
from trainer.evaluation.spatial_qa import eval_result_path
from trainer.run_log import JSONL_NAME

TINY_CONFIG = CONFIGS_DIR / "mllm_sft_tiny.yaml"
# Three small procedural scenes: about 40 QA rows over most of the sub-tasks in a few seconds. With seed 0 the
# third scene's id hashes into the default 10% eval split, so eval has held-out rows and training the other two.
SMALL_JOB = ["input=procedural://3?seed=0", "reader.procedural.width=128", "reader.procedural.height=96",
             "reader.procedural.frames=4", "reader.index.min_visible_pixels=40", "reader.qa.min_visible_pixels=40"]


@pytest.fixture(scope="module")
def spatial_qa(ray_local, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("spatial-qa") / "qa"
    run_job(load_job(JOBS_DIR / "spatial_qa.yaml", [*SMALL_JOB, f"output={out}"]), progress=False)
    return out


def test_tiny_config_halves_the_loss_on_spatial_qa_shards(spatial_qa: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    overrides = [f"data.datasets.spatial.path={spatial_qa}", f"data.datasets.general.path={tmp_path / 'general'}",
                 f"run.out_dir={run}", "run.save_every=0", "run.progress=false", "run.tensorboard=false"]
    assert cli_main(["train", "--config", str(TINY_CONFIG), *[f"--set={item}" for item in overrides]]) == 0
    losses = [record["loss"] for record in map(json.loads, (run / JSONL_NAME).read_text().splitlines())
              if record["event"] == "step"]
    assert sum(losses[-5:]) / 5 < 0.5 * losses[0], losses

    assert cli_main(["eval", "--config", str(TINY_CONFIG), "--limit", "6",
                     *[f"--set={item}" for item in overrides]]) == 0
    result = json.loads(eval_result_path(run, f"step-{len(losses):08d}").read_text())
    rows = result["predictions"]
    assert result["samples"] == 6 and sum(task["n"] for task in result["per_subtask"].values()) == 6
    assert {row["metric"] for row in rows} <= {"exact_match", "mean_relative_accuracy"}
    assert all(row["task"] in result["per_subtask"] for row in rows)
