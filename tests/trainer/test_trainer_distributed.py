"""Several CPU processes through the real launchers: the `deepspeed` launcher with two processes on one node,
and two torchrun "nodes" meeting on 127.0.0.1, both with an unchanged config file (gloo, fp32)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from tests.trainer.conftest import REPO, clean_env, tiny_config, write_config
from trainer import checkpoint
from trainer.run_log import JSONL_NAME


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def step_records(out: Path) -> list[dict]:
    return [r for r in map(json.loads, (out / JSONL_NAME).read_text().splitlines()) if r["event"] == "step"]


def torchrun(*launcher_args: str, config: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "torch.distributed.run", *launcher_args, "-m", "trainer", "train",
               "--config", str(config)]
    return subprocess.Popen(command, cwd=REPO, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def test_two_processes_zero2_with_accumulation_under_the_deepspeed_launcher(qa_dirs, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", tiny_config(
        qa_dirs, tmp_path / "run", engine={"zero_stage": 2, "grad_accum_steps": 2},
        run={"max_steps": 2, "tensorboard": False}))
    # The launcher adds --local_rank=N to the command line; the CLI must accept it.
    command = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", "2", "--master_port",
               str(free_port()), "--module", "trainer", "train", "--config", str(config)]
    process = subprocess.Popen(command, cwd=REPO, env=clean_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    records = step_records(tmp_path / "run")
    assert [r["step"] for r in records] == [1, 2]
    tag = checkpoint.resolve_tag(checkpoint.checkpoint_root(tmp_path / "run"), None)
    saved = checkpoint.checkpoint_root(tmp_path / "run") / tag
    assert (saved / "rank-00000.pt").is_file() and (saved / "rank-00001.pt").is_file()


def test_two_nodes_rendezvous_on_loopback(qa_dirs, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", tiny_config(
        qa_dirs, tmp_path / "run", run={"max_steps": 2, "tensorboard": False}))
    port = str(free_port())
    nodes = [torchrun("--nnodes", "2", "--node_rank", str(rank), "--nproc_per_node", "1",
                      "--master_addr", "127.0.0.1", "--master_port", port, config=config) for rank in (0, 1)]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    for node, output in zip(nodes, outputs):
        assert node.returncode == 0, output[-3000:]
    start = next(r for r in map(json.loads, (tmp_path / "run" / JSONL_NAME).read_text().splitlines())
                 if r["event"] == "start")
    assert start["world_size"] == 2
    assert [r["step"] for r in step_records(tmp_path / "run")] == [1, 2]


def test_two_grpo_ranks_give_the_one_rank_first_step(tmp_path: Path) -> None:
    """Flow-GRPO's first step over 4 prompts: two ranks with 2 prompts each (torchrun, gloo) log the loss and
    reward of one rank with all 4 (rollout noise is drawn per prompt, not per rank position), and step to the
    same weights. The first GRPO loss is 0 by construction (ratio 1, mean advantage 0, KL 0) but its gradient
    is not: with Adam's eps far above the gradients, step 1 moves each weight by about -lr g / eps, so equal
    weights mean equal (rank-averaged) gradients."""
    import pytest
    import torch

    from trainer.latents import write_synthetic_latent_shards

    write_synthetic_latent_shards(tmp_path / "latents", 4, resolution=32, shard_rows=4)

    def config(name: str, micro_batch: int) -> Path:
        return write_config(tmp_path / f"{name}.yaml", {
            "task": {"name": "mmdit_grpo_t2i", "config": {
                "preset": "tiny", "grpo": {"group_size": 2, "num_steps": 2, "guidance_scale": 2.0},
                "rewards": [{"name": "latent_probe"}]}},
            "data": {"window": micro_batch, "datasets": [{"name": "shapes", "path": str(tmp_path / "latents")}]},
            "optim": {"lr": 1.0, "eps": 1.0e3, "grad_clip": 0.0, "warmup_steps": 0},
            "engine": {"zero_stage": 0, "micro_batch_size": micro_batch},
            "run": {"out_dir": str(tmp_path / name), "max_steps": 1, "progress": False, "tensorboard": False}})

    processes = [torchrun("--nproc_per_node", "1", "--master_port", str(free_port()), config=config("one", 4)),
                 torchrun("--nproc_per_node", "2", "--master_port", str(free_port()), config=config("two", 2))]
    for process in processes:
        output, _ = process.communicate(timeout=900)
        assert process.returncode == 0, output[-3000:]
    one, two = (step_records(tmp_path / name)[0] for name in ("one", "two"))
    for key in ("loss", "reward_mean", "reward/latent_probe", "kl"):
        assert two[key] == pytest.approx(one[key], rel=1e-5, abs=1e-7), key
    weights = [checkpoint.load_module_weights(checkpoint.checkpoint_root(tmp_path / name), "latest")
               for name in ("one", "two")]
    assert max(float((weights[0][k] - weights[1][k]).abs().max()) for k in weights[0]) < 1e-8
