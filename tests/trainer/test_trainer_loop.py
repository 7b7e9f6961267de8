"""The training loop in one CPU process: exact resume, NaN stop, activation checkpointing, logs, eval, export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.trainer.conftest import tiny_config, write_config
from trainer import checkpoint
from trainer.cli import main as cli_main
from trainer.config import parse_config
from trainer.evaluation.spatial_qa import eval_result_path
from trainer.loop import NonFiniteLoss, TrainResult, train
from trainer.run_log import JSONL_NAME


@pytest.fixture(scope="module")
def full_run(qa_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainResult]:
    """Four uninterrupted steps with checkpoints at steps 2 and 4."""
    out = tmp_path_factory.mktemp("full-run")
    config = tiny_config(qa_dirs, out, run={"save_every": 2})
    write_config(out / "config.yaml", config)
    return out, train(parse_config(config))


def test_resume_reproduces_the_uninterrupted_loss_sequence(full_run, qa_dirs, tmp_path: Path) -> None:
    out, uninterrupted = full_run
    assert uninterrupted.steps == [1, 2, 3, 4]
    records = [json.loads(line) for line in (out / JSONL_NAME).read_text().splitlines()]
    logged = [r for r in records if r["event"] == "step"]
    assert [r["loss"] for r in logged] == uninterrupted.losses
    assert {"sft", "kl", "lr/vision", "lr/language_model", "lr/merger"} <= set(logged[0])
    assert logged[0]["lr/vision"] == pytest.approx(1e-4) and logged[0]["lr/merger"] == pytest.approx(1e-3)
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))

    # A run that died after its step-2 checkpoint: only that checkpoint survives.
    crashed = tmp_path / "crashed"
    root = checkpoint.checkpoint_root(crashed)
    root.mkdir(parents=True)
    shutil.copytree(checkpoint.checkpoint_root(out) / checkpoint.step_tag(2), root / checkpoint.step_tag(2))
    (root / checkpoint.LATEST_NAME).write_text(json.dumps({"tag": checkpoint.step_tag(2), "step": 2}))
    resumed = train(parse_config(tiny_config(qa_dirs, crashed)))
    assert resumed.start_step == 2 and resumed.steps == [3, 4]
    assert resumed.losses == uninterrupted.losses[2:]


def test_activation_checkpointing_keeps_the_losses(full_run, qa_dirs, tmp_path: Path) -> None:
    _, uninterrupted = full_run
    config = tiny_config(qa_dirs, tmp_path, engine={"activation_checkpointing": True},
                         run={"max_steps": 2, "tensorboard": False})
    result = train(parse_config(config))
    # With no warmup the first update uses the full LR whatever max_steps is, so both runs see the same two steps.
    assert result.losses == pytest.approx(uninterrupted.losses[:2], rel=1e-5)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(qa_dirs, tmp_path: Path) -> None:
    config = tiny_config(qa_dirs, tmp_path, optim={"lr": 1e30, "grad_clip": 0.0}, run={"save_every": 1})
    with pytest.raises(NonFiniteLoss, match="not finite"):
        train(parse_config(config))
    root = checkpoint.checkpoint_root(tmp_path)
    latest = checkpoint.read_latest(root)
    assert latest is not None
    saved = sorted(p.name for p in root.glob("step-*"))
    assert saved[-1] == latest["tag"]
    records = [json.loads(line) for line in (tmp_path / JSONL_NAME).read_text().splitlines()]
    assert records[-1]["event"] == "stopped" and records[-1]["step"] == latest["step"] + 1


def test_export_loads_with_from_pretrained(full_run, tmp_path: Path) -> None:
    from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

    out, _ = full_run
    assert cli_main(["export", "--config", str(out / "config.yaml"), "--out", str(tmp_path / "export")]) == 0
    assert (tmp_path / "export" / "model.safetensors").is_file()
    exported = Qwen3VLForConditionalGeneration.from_pretrained(tmp_path / "export")
    trained = checkpoint.load_module_weights(checkpoint.checkpoint_root(out), "latest")
    name = "model.language_model.layers.0.mlp.up_proj.weight"
    assert torch.equal(exported.state_dict()[name], trained[name])
    base = Qwen3VLForConditionalGeneration.from_pretrained(tmp_path / "export").state_dict()[name]
    assert AutoProcessor.from_pretrained(tmp_path / "export") is not None and base.shape == trained[name].shape


def test_single_process_without_zero_matches_zero_1_and_exports(full_run, qa_dirs, tmp_path: Path) -> None:
    """Stage 0 in one process skips DeepSpeed's gradient all-reduce: the updates must still be ZeRO-1's."""
    from transformers import Qwen3VLForConditionalGeneration

    _, uninterrupted = full_run
    config_file = write_config(tmp_path / "config.yaml", tiny_config(
        qa_dirs, tmp_path / "run", engine={"zero_stage": 0}, run={"max_steps": 2, "tensorboard": False}))
    assert cli_main(["train", "--config", str(config_file)]) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / JSONL_NAME).read_text().splitlines()]
    losses = [record["loss"] for record in records if record["event"] == "step"]
    assert losses == pytest.approx(uninterrupted.losses[:2], rel=1e-5)
    assert cli_main(["export", "--config", str(config_file), "--out", str(tmp_path / "export")]) == 0
    trained = checkpoint.load_module_weights(checkpoint.checkpoint_root(tmp_path / "run"), "latest")
    exported = Qwen3VLForConditionalGeneration.from_pretrained(tmp_path / "export").state_dict()
    name = "model.language_model.layers.0.mlp.up_proj.weight"
    assert torch.equal(exported[name], trained[name])


def test_zero_stage_3_trains_and_exports_on_cpu(qa_dirs, tmp_path: Path) -> None:
    from transformers import Qwen3VLForConditionalGeneration

    config_file = write_config(tmp_path / "config.yaml", tiny_config(
        qa_dirs, tmp_path / "run", engine={"zero_stage": 3}, run={"max_steps": 1, "tensorboard": False}))
    assert cli_main(["train", "--config", str(config_file)]) == 0
    assert cli_main(["export", "--config", str(config_file), "--out", str(tmp_path / "export")]) == 0
    trained = checkpoint.load_module_weights(checkpoint.checkpoint_root(tmp_path / "run"), "latest")
    exported = Qwen3VLForConditionalGeneration.from_pretrained(tmp_path / "export").state_dict()
    name = "model.visual.blocks.0.attn.qkv.weight"
    assert torch.equal(exported[name], trained[name])


def test_eval_scores_each_sub_task(full_run, capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = full_run
    assert cli_main(["eval", "--config", str(out / "config.yaml"), "--limit", "8"]) == 0
    result = json.loads(eval_result_path(out, "step-00000004").read_text())
    assert result["samples"] == 8 and result["checkpoint"] == "step-00000004" and result["step"] == 4
    per_subtask = result["per_subtask"]
    assert set(per_subtask) <= {"relative_direction", "count", "distance", "color"}
    assert sum(task["n"] for task in per_subtask.values()) == 8
    metrics = {"relative_direction": "exact_match", "color": "exact_match", "count": "mean_relative_accuracy",
               "distance": "mean_relative_accuracy"}
    assert all(task["metric"] == metrics[name] and 0.0 <= task["score"] <= 1.0 for name, task in per_subtask.items())
    mean = sum(record["score"] for record in result["predictions"]) / 8
    assert result["overall"] == pytest.approx(mean) and len(result["predictions"]) == 8
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["samples"] == 8


@pytest.mark.parametrize(("override", "message"), [
    ("engine.zero_stage=5", "engine.zero_stage: Input should be 0, 1, 2 or 3"),
    ("task.config.max_lenght=3", "task.config.max_lenght: Extra inputs are not permitted"),
    ("task.name=nope", "task.name: unknown task 'nope'"),
    ("data.datasets.spatial.ratio=-1", "data.datasets.0.ratio: Input should be greater than 0"),
    ("data.datasets.missing.ratio=1", "--set data.datasets.missing: no item named 'missing'"),
])
def test_config_errors_are_one_line_naming_the_field(qa_dirs, tmp_path: Path, capsys, override: str,
                                                     message: str) -> None:
    config_file = write_config(tmp_path / "config.yaml", tiny_config(qa_dirs, tmp_path))
    assert cli_main(["train", "--config", str(config_file), "--set", override]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and message in error


def test_unknown_parameter_group_is_named(qa_dirs, tmp_path: Path, capsys) -> None:
    config_file = write_config(tmp_path / "config.yaml", tiny_config(qa_dirs, tmp_path))
    assert cli_main(["train", "--config", str(config_file), "--set", "optim.group_lr={visoin: 1.0e-5}"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("trainer: error: optim.group_lr.visoin: no such parameter group")


def test_a_run_in_epochs_derives_its_steps_from_one_epoch_of_packs(qa_dirs, tmp_path: Path) -> None:
    """run.epochs: the steps are the packs of one epoch (counted by hand here: the epoch's 10 rows in windows
    of 8 and 2, each window packed into 64-token packs) over 2 accumulation steps; logged as `plan`."""
    from trainer.data import DatasetStream, Mixture
    from trainer.engine import single_process_info
    from trainer.loop import build_task
    from trainer.packing import plan_packs

    config = tiny_config(qa_dirs, tmp_path, engine={"zero_stage": 0, "grad_accum_steps": 2},
                         run={"max_steps": None, "epochs": 1, "tensorboard": False})
    config["data"]["datasets"][0]["ratio"] = 0.12  # 42 training spatial rows (every fifth held out) -> 5 per epoch
    config["data"]["datasets"][1]["ratio"] = 0.2  # 27 accepted general rows -> 5 per epoch
    parsed = parse_config(config)
    task = build_task(parsed, single_process_info(parsed.engine))
    mixture = Mixture([DatasetStream(spec, task.schemas(), 0, 0, 1) for spec in parsed.data.datasets])
    lengths = [task.prepare(mixture.next_sample()).length for _ in range(10)]
    packs = len(plan_packs(lengths[:8], 64)) + len(plan_packs(lengths[8:], 64))

    result = train(parsed)
    records = [json.loads(line) for line in (tmp_path / JSONL_NAME).read_text().splitlines()]
    plan = next(record for record in records if record["event"] == "plan")
    assert plan["micro_batches_per_epoch_per_rank"] == packs and plan["rows_per_epoch_per_rank"] == 10
    assert plan["steps"] == packs // 2 >= 1
    assert result.steps == list(range(1, packs // 2 + 1))
