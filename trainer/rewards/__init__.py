"""Reward models for RL post-training (Flow-GRPO, DiffusionNFT), behind one interface and one registry.

A reward scores a batch of generated images: `Reward.score(RewardInput) -> RewardOutput` (one float per
image plus a details dict per image: the OCR text read back, the parse failure of a judge, ...).
Rewards are built from config specs `{name: <registered name>, weight: w, ...reward options}`;
`RewardMixer` combines them (trainer/rewards/mixing.py). Registered: `aesthetic`, `clip_score`, `ocr`,
`latent_probe` (trainer/rewards/scorers.py); `vlm_instruction_following`, `vlm_consistency`, `naturalness`
(trainer/rewards/judge.py). A reward that cannot score an image says why in its details and scores NaN.
A spec with `remote: {num_gpus, resources, address}` runs the reward in a Ray actor (trainer/rewards/remote.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from trainer.core import TrainerError


@dataclass
class RewardInput:
    prompts: list[str]  # text-to-image prompts, or edit instructions
    images: list[Image.Image] = field(default_factory=list)  # decoded generations (empty if no reward needs them)
    latents: torch.Tensor | None = None  # the generations' latents [B, C, F, H, W]
    source_images: list[Image.Image] | None = None  # edits: the images that were edited


@dataclass
class RewardOutput:
    scores: list[float]
    details: list[dict[str, Any]]


class Reward:
    """Base of a reward model; `needs_images` False means it reads latents only (no VAE decode);
    `needs_source_images` True means it compares an edit with its source (the source latents are decoded too)."""

    name = ""
    needs_images = True
    needs_source_images = False

    def score(self, batch: RewardInput) -> RewardOutput:
        raise NotImplementedError


_REWARDS: dict[str, Callable[..., Reward]] = {}


def register_reward(name: str):
    def register(factory: Callable[..., Reward]) -> Callable[..., Reward]:
        if name in _REWARDS:
            raise TrainerError(f"reward {name!r} registered twice")
        _REWARDS[name] = factory
        factory.name = name
        return factory

    return register


def build_reward(spec: dict[str, Any]) -> Reward:
    import trainer.rewards.judge  # noqa: F401  (registers the VLM editing rewards)
    import trainer.rewards.scorers  # noqa: F401  (registers the built-in rewards)

    options = {key: value for key, value in spec.items() if key not in ("name", "weight", "role", "remote")}
    name = spec.get("name")
    if name not in _REWARDS:
        raise TrainerError(f"rewards: unknown reward {name!r}; known: {', '.join(sorted(_REWARDS))}")
    if spec.get("remote") is not None:
        from pydantic import ValidationError

        from trainer.rewards.remote import RayHostedReward, RemoteRewardConfig

        try:
            remote = RemoteRewardConfig(**spec["remote"])
        except (ValidationError, TypeError) as exc:
            raise TrainerError(f"rewards.{name}.remote: {str(exc).splitlines()[-1].strip()}") from None
        return RayHostedReward({"name": name, **options}, remote)
    try:
        return _REWARDS[name](**options)
    except TypeError as exc:
        raise TrainerError(f"rewards.{name}: {exc}") from None


def build_reward_mixer(specs: list[dict[str, Any]], vae: str | None = None, gate: dict[str, Any] | None = None):
    from trainer.rewards.mixing import RewardMixer

    return RewardMixer.from_specs(specs, vae=vae, gate=gate)
