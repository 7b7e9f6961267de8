"""Rewards hosted by Ray actors, so a cluster can run the reward models on their own (GPU) nodes.

A reward spec with a `remote` section is built inside a Ray actor with those resources, and the trainer holds a
proxy with the same `Reward` interface; nothing else changes (configuration only):

    rewards:
      - name: pickscore
        model_path: /models/PickScore_v1
        remote: {num_gpus: 1, resources: {reward_node: 1}}   # custom resource of the reward nodes

The trainer joins the cluster at `remote.address` (default: `RAY_ADDRESS`, else a Ray already started in the
process, else a local one). Each rank gets its own actor; a batch travels to it as the `RewardInput` (images,
prompts, latents) and comes back as the `RewardOutput`.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from trainer.rewards import Reward, RewardInput, RewardOutput


class RemoteRewardConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str | None = None  # Ray address; None: RAY_ADDRESS, a Ray this process runs, or a local one
    num_cpus: float = Field(default=1.0, ge=0)
    num_gpus: float = Field(default=0.0, ge=0)
    resources: dict[str, float] = Field(default_factory=dict)  # e.g. {reward_node: 1} to pin reward nodes


class RewardHost:
    """The actor body: builds the reward where it runs and scores batches."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from trainer.rewards import build_reward

        self.reward = build_reward(spec)

    def needs(self) -> tuple[bool, bool]:
        return self.reward.needs_images, self.reward.needs_source_images

    def score(self, batch: RewardInput) -> RewardOutput:
        return self.reward.score(batch)


def join_ray(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
    else:
        from data_engine.executor import init_local_ray

        init_local_ray()


class RayHostedReward(Reward):
    """A proxy with the hosted reward's interface."""

    def __init__(self, spec: dict[str, Any], remote: RemoteRewardConfig) -> None:
        import ray

        join_ray(remote.address)
        host = ray.remote(RewardHost).options(num_cpus=remote.num_cpus, num_gpus=remote.num_gpus,
                                              resources=remote.resources or None)
        self.actor = host.remote(spec)
        self.needs_images, self.needs_source_images = ray.get(self.actor.needs.remote())

    def score(self, batch: RewardInput) -> RewardOutput:
        import ray

        return ray.get(self.actor.score.remote(batch))
