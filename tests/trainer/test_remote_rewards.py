"""A reward hosted by a Ray actor (configuration only) scores like the same reward in the trainer process."""

from __future__ import annotations

import pytest
import torch

from trainer.core import TrainerError
from trainer.rewards import RewardInput, build_reward


def test_a_ray_hosted_reward_scores_like_the_local_one(ray_local) -> None:
    latents = torch.randn(3, 16, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    batch = RewardInput(prompts=["a", "b", "c"], latents=latents)
    hosted = build_reward({"name": "latent_probe", "seed": 3, "remote": {"num_cpus": 0.25}})
    local = build_reward({"name": "latent_probe", "seed": 3})
    assert hosted.needs_images is False and hosted.needs_source_images is False
    assert hosted.score(batch).scores == local.score(batch).scores
    worker_pid = ray_local.get(hosted.actor.__ray_call__.remote(lambda host: __import__("os").getpid()))
    assert worker_pid != __import__("os").getpid()


def test_a_bad_remote_section_is_a_one_line_error() -> None:
    with pytest.raises(TrainerError, match="rewards.latent_probe.remote"):
        build_reward({"name": "latent_probe", "remote": {"num_gpu": 1}})
