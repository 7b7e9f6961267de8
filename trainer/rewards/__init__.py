"""Reward models for RL post-training (Flow-GRPO, DiffusionNFT), behind one interface and one registry.

A reward scores a batch of generated images: `Reward.score(RewardInput) -> RewardOutput` (one float per
image plus a details dict per image: the OCR text read back, the parse failure of a judge, ...).
Rewards are built from config specs `{name: <registered name>, weight: w, ...reward options}`;
`RewardMixer` combines them (trainer/rewards/mixing.py). Registered: `aesthetic`, `clip_score`, `ocr`,
`latent_probe` (trainer/rewards/scorers.py); `vlm_instruction_following`, `vlm_consistency`, `naturalness`
(trainer/rewards/judge.py). A reward that cannot score an image says why in its details and scores NaN.
A spec with `remote: {num_gpus, resources, address}` runs the reward in a Ray actor (trainer/rewards/remote.py);
one with `http: {url, timeout_s}` calls a reward service (`python -m trainer.rewards serve`, trainer/rewards/http.py).
`check_reward_spec` validates a spec without building it (the task configs call it at load time).
"""

from __future__ import annotations

import inspect
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

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        """Validate options beyond their names without loading a model (raise ValueError); nested specs, backends."""


SPEC_KEYS = ("name", "weight", "role", "remote", "http", "key")  # how a reward is mixed and hosted, not its options
ROLES = ("instruction", "consistency")

_REWARDS: dict[str, Callable[..., Reward]] = {}


def register_reward(name: str):
    def register(factory: Callable[..., Reward]) -> Callable[..., Reward]:
        if name in _REWARDS:
            raise TrainerError(f"reward {name!r} registered twice")
        _REWARDS[name] = factory
        factory.name = name
        return factory

    return register


def registered_reward(name: Any) -> Callable[..., Reward]:
    import trainer.rewards.judge  # noqa: F401  (registers the VLM editing rewards)
    import trainer.rewards.scorers  # noqa: F401  (registers the built-in rewards)

    if name not in _REWARDS:
        raise TrainerError(f"rewards: unknown reward {name!r}; known: {', '.join(sorted(_REWARDS))}")
    return _REWARDS[name]


def check_reward_spec(spec: Any) -> None:
    """Raise ValueError naming the reward and the field when `spec` could not be built (no model is loaded):
    an unknown name or option, a role, weight, `remote` or `http` section that does not validate."""
    from pydantic import ValidationError

    from trainer.config import first_validation_error
    from trainer.rewards.http import HttpRewardConfig
    from trainer.rewards.remote import RemoteRewardConfig

    if not isinstance(spec, dict):
        raise ValueError(f"a reward spec is a mapping with a `name`, got {spec!r}")
    try:
        factory = registered_reward(spec.get("name"))
    except TrainerError as exc:
        raise ValueError(str(exc)) from None
    name = spec["name"]
    if spec.get("role") not in (None, *ROLES):
        raise ValueError(f"rewards.{name}.role: {spec['role']!r} is not one of {', '.join(ROLES)}")
    if not isinstance(spec.get("weight", 1.0), (int, float)) or isinstance(spec.get("weight"), bool):
        raise ValueError(f"rewards.{name}.weight: {spec['weight']!r} is not a number")
    options = {key: value for key, value in spec.items() if key not in SPEC_KEYS}
    host_models = {"remote": RemoteRewardConfig, "http": HttpRewardConfig}
    hosts = [section for section in host_models if spec.get(section) is not None]
    if len(hosts) > 1:
        raise ValueError(f"rewards.{name}: set at most one of `remote` and `http`")
    for section in hosts:
        try:
            host_models[section].model_validate(spec[section])
        except ValidationError as exc:
            raise ValueError(f"rewards.{name}.{section}.{first_validation_error(exc)}") from None
    if hosts == ["http"]:
        if options:
            raise ValueError(f"rewards.{name}: {', '.join(sorted(options))}: a served reward's options belong in "
                             f"the service's config, not the trainer's")
        return
    parameters = inspect.signature(factory).parameters
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        raise ValueError(f"rewards.{name}: unknown option(s) {', '.join(unknown)}; "
                         f"known: {', '.join(parameters) or 'none'}")
    missing = [key for key, parameter in parameters.items()
               if parameter.default is inspect.Parameter.empty and key not in options]
    if missing:
        raise ValueError(f"rewards.{name}: missing option(s) {', '.join(missing)}")
    factory.check_options(options)


def build_reward(spec: dict[str, Any]) -> Reward:
    try:
        check_reward_spec(spec)
    except ValueError as exc:
        raise TrainerError(str(exc)) from None
    name, factory = spec["name"], registered_reward(spec["name"])
    options = {key: value for key, value in spec.items() if key not in SPEC_KEYS}
    if spec.get("http") is not None:
        from trainer.rewards.http import HttpReward, HttpRewardConfig

        return HttpReward(name, HttpRewardConfig(**spec["http"]), needs_images=factory.needs_images,
                          needs_source_images=factory.needs_source_images, key=spec.get("key"))
    if spec.get("remote") is not None:
        from trainer.rewards.remote import RayHostedReward, RemoteRewardConfig

        return RayHostedReward({"name": name, **options}, RemoteRewardConfig(**spec["remote"]))
    return factory(**options)


def build_reward_mixer(specs: list[dict[str, Any]], vae: str | None = None, gate: dict[str, Any] | None = None):
    from trainer.rewards.mixing import RewardMixer

    return RewardMixer.from_specs(specs, vae=vae, gate=gate)
