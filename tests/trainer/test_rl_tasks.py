"""The RL tasks through the shared loop (ZeRO stage 0, one process): reward and KL land in train_log.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

from trainer.config import parse_config
from trainer.latents import write_synthetic_latent_shards
from trainer.loop import train


def test_grpo_task_trains_and_logs_reward_and_kl(tmp_path: Path) -> None:
    data = tmp_path / "latents"
    write_synthetic_latent_shards(data, 4, resolution=32, shard_rows=4)
    config = {
        "task": {"name": "mmdit_grpo_t2i", "config": {
            "preset": "tiny", "grpo": {"group_size": 2, "num_steps": 3, "guidance_scale": 2.0},
            "rewards": [{"name": "latent_probe", "weight": 1.0}]}},
        "data": {"window": 4, "datasets": [{"name": "shapes", "path": str(data)}]},
        "optim": {"lr": 1e-3, "warmup_steps": 0},
        "engine": {"zero_stage": 0, "micro_batch_size": 2},
        "run": {"out_dir": str(tmp_path / "run"), "max_steps": 2, "log_every": 1, "progress": False,
                "tensorboard": False},
    }
    result = train(parse_config(config))
    assert result.steps == [1, 2]
    logged = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    steps = [entry for entry in logged if "reward_mean" in json.dumps(entry)]
    assert len(steps) == 2, logged
    assert '"kl"' in json.dumps(steps[0]) and '"ratio_mean"' in json.dumps(steps[0])
