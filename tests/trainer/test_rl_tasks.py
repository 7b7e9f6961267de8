"""The RL tasks on cached shards: the rows' own captions / instructions and source images reach the rewards, and
a run through the shared loop (ZeRO stage 0, one process) logs reward, KL and per-reward means."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from data_engine.shards import read_shard, shard_paths
from data_engine.stage_runner import apply_stage
from tests.trainer.test_mmdit_task import edit_rows
from trainer.config import parse_config
from trainer.core import RunContext, Sample
from trainer.latents import (CacheLatentsConfig, CacheLatentsStage, decode_latents, load_vae, tensor_from_bytes,
                             tensor_to_image, write_synthetic_latent_shards)
from trainer.loop import train
from trainer.objectives.diffusion_nft import DiffusionNFTEditTask, DiffusionNFTTaskConfig
from trainer.objectives.flow_grpo import FlowGRPOTask, FlowGRPOTaskConfig
from trainer.rewards import RewardInput, RewardOutput
from trainer.rewards.mixing import RewardMixer, WeightedReward
from trainer.rewards.scorers import LatentProbeReward

GROUP = 2


class RecordingReward(LatentProbeReward):
    """The latent probe, keeping the reward inputs it was given."""

    def __init__(self, needs_source_images: bool = False) -> None:
        super().__init__()
        self.needs_source_images = needs_source_images
        self.inputs: list[RewardInput] = []

    def score(self, batch: RewardInput) -> RewardOutput:
        self.inputs.append(batch)
        return super().score(batch)


@pytest.fixture(scope="module")
def latent_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rl-latents")
    write_synthetic_latent_shards(out, 4, resolution=32, shard_rows=4)
    return out


def context(tmp_path: Path) -> RunContext:
    return RunContext(0, 1, torch.device("cpu"), torch.float32, tmp_path)


def test_grpo_rewards_get_each_rows_drawn_caption(latent_dir: Path, tmp_path: Path) -> None:
    config = FlowGRPOTaskConfig.model_validate({"grpo": {"group_size": GROUP, "num_steps": 2, "guidance_scale": 1.0}})
    task = FlowGRPOTask(config, context(tmp_path), micro_batch_size=4)
    model = task.build_model()
    recorder = RecordingReward()
    task.rewards = RewardMixer({"probe": WeightedReward(recorder, 1.0, None)})
    rows = read_shard(shard_paths(latent_dir)[0]).to_pylist()
    batch = task.collate([task.prepare(Sample(row, "shapes", False, seed=n)) for n, row in enumerate(rows)])
    losses = task.compute_loss(model, batch)
    assert float(losses["reward/probe"]) == pytest.approx(float(recorder.values(recorder.inputs[0].latents).mean()))
    prompts = recorder.inputs[0].prompts
    for number, row in enumerate(rows):
        # the caption whose cached features conditioned this row's rollouts, found by comparing the features
        length = int(batch["text_mask"][number].sum())
        keys = [feature["key"] for feature in row["text_features"]
                if torch.equal(tensor_from_bytes(feature["states"], (feature["tokens"], row["text_dim"])),
                               batch["text_states"][number, :length])]
        assert len(keys) == 1
        assert prompts[number * GROUP:(number + 1) * GROUP] == [dict(row["captions"])[keys[0]]] * GROUP


def test_nft_rewards_get_the_instruction_and_the_source_image(tmp_path: Path) -> None:
    stage = CacheLatentsStage(CacheLatentsConfig(kind="edit", resolution=64, torch_threads=1))
    stage.setup()
    processed, _ = apply_stage(stage, edit_rows(), batch_size=4)
    row = processed.to_pylist()[0]
    config = DiffusionNFTTaskConfig.model_validate({"nft": {"group_size": GROUP, "num_steps": 2}})
    task = DiffusionNFTEditTask(config, context(tmp_path), micro_batch_size=1)
    model = task.build_model()
    recorder = RecordingReward(needs_source_images=True)
    task.rewards = RewardMixer({"probe": WeightedReward(recorder, 1.0, None)}, vae="tiny:wan_vae")
    losses = task.compute_loss(model, task.collate([task.prepare(Sample(row, "edits", False, seed=0))]))
    assert torch.isfinite(losses["loss"]) and "reward/probe" in losses
    seen = recorder.inputs[0]
    assert seen.prompts == ["make the square blue"] * GROUP
    source = tensor_from_bytes(row["source_latent"], row["source_latent_shape"])[None]
    expected = tensor_to_image(decode_latents(load_vae("tiny:wan_vae"), source)[0])
    assert len(seen.source_images) == GROUP
    for image in seen.source_images:  # a batch of two decodes like one, up to rounding
        assert np.abs(np.asarray(image, dtype=int) - np.asarray(expected, dtype=int)).max() <= 1


def test_grpo_task_trains_and_logs_reward_and_kl(latent_dir: Path, tmp_path: Path) -> None:
    config = {
        "task": {"name": "mmdit_grpo_t2i", "config": {
            "preset": "tiny", "grpo": {"group_size": 2, "num_steps": 3, "guidance_scale": 2.0},
            "rewards": [{"name": "latent_probe", "weight": 1.0}]}},
        "data": {"window": 4, "datasets": [{"name": "shapes", "path": str(latent_dir)}]},
        "optim": {"lr": 1e-3, "warmup_steps": 0},
        "engine": {"zero_stage": 0, "micro_batch_size": 2},
        "run": {"out_dir": str(tmp_path / "run"), "max_steps": 2, "log_every": 1, "progress": False,
                "tensorboard": False},
    }
    result = train(parse_config(config))
    assert result.steps == [1, 2]
    logged = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    steps = [entry for entry in logged if entry["event"] == "step"]
    assert len(steps) == 2, logged
    assert {"kl", "ratio_mean", "reward_mean", "reward/latent_probe"} <= set(steps[0])
    # one reward of weight 1: the weighted sum is that reward
    assert steps[0]["reward_mean"] == pytest.approx(steps[0]["reward/latent_probe"], abs=1e-6)


@pytest.fixture(scope="module")
def edit_latent_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Cached edit latents of two accepted triplets (the edit_rows pair, its undecodable row left out)."""
    from data_engine.output_dir import standalone_manifest, write_manifest
    from data_engine.editing.triplet import EDIT_TRIPLET
    from data_engine.shards import write_shard

    out = tmp_path_factory.mktemp("rl-edit-latents")
    stage = CacheLatentsStage(CacheLatentsConfig(kind="edit", resolution=32, torch_threads=1))
    stage.setup()
    processed, _ = apply_stage(stage, edit_rows().take([0, 0]), batch_size=4)
    schema = EDIT_TRIPLET.arrow(stage.output_fields())
    write_shard(out, 0, processed.select(schema.names).cast(schema), [])
    write_manifest(out, standalone_manifest(EDIT_TRIPLET, "edit_latents", {}, [2]))
    return out


def rl_config(task: str, data: Path, out: Path) -> dict:
    objective = {"grpo": {"group_size": 2, "num_steps": 2, "guidance_scale": 2.0}} if task == "mmdit_grpo_t2i" \
        else {"nft": {"group_size": 2, "num_steps": 2, "ema_ramp": 0.3}}
    return {"task": {"name": task, "config": {"preset": "tiny", **objective,
                                               "rewards": [{"name": "latent_probe", "weight": 1.0}]}},
            "data": {"window": 2, "datasets": [{"name": "rows", "path": str(data)}]},
            "optim": {"lr": 1e-3, "warmup_steps": 0},
            "engine": {"zero_stage": 0, "micro_batch_size": 2},
            "run": {"out_dir": str(out), "max_steps": 4, "save_every": 2, "log_every": 1, "progress": False,
                    "tensorboard": False}}


@pytest.mark.parametrize("task", ["mmdit_grpo_t2i", "mmdit_nft_edit"])
def test_resume_after_step_two_repeats_the_uninterrupted_run(task: str, latent_dir: Path, edit_latent_dir: Path,
                                                             tmp_path: Path) -> None:
    """Killed after its step-2 checkpoint (only that one survives), the run resumes to the same rewards, losses
    and weights at step 4: the rollout generator and the NFT old policy travel with the checkpoint."""
    import shutil

    from trainer import checkpoint

    data = latent_dir if task == "mmdit_grpo_t2i" else edit_latent_dir
    uninterrupted = train(parse_config(rl_config(task, data, tmp_path / "full")))
    crashed = tmp_path / "crashed"
    root = checkpoint.checkpoint_root(crashed)
    root.mkdir(parents=True)
    shutil.copytree(checkpoint.checkpoint_root(tmp_path / "full") / checkpoint.step_tag(2), root / checkpoint.step_tag(2))
    (root / checkpoint.LATEST_NAME).write_text(json.dumps({"tag": checkpoint.step_tag(2), "step": 2}))
    resumed = train(parse_config(rl_config(task, data, crashed)))
    assert resumed.start_step == 2 and resumed.steps == [3, 4]
    assert resumed.losses == uninterrupted.losses[2:]

    def logged(run: Path) -> list[float]:
        return [entry["reward/latent_probe"] for entry in map(json.loads, (run / "train_log.jsonl").read_text()
                                                                     .splitlines()) if entry["event"] == "step"]

    assert logged(crashed) == logged(tmp_path / "full")[2:]
    final = [checkpoint.load_module_weights(checkpoint.checkpoint_root(run), "latest") for run in (tmp_path / "full", crashed)]
    assert final[0].keys() == final[1].keys()
    assert all(torch.equal(final[0][name], final[1][name]) for name in final[0])
