"""Mixing several rewards into one training signal (report 5.2.4).

- Per-reward group advantages: each reward is normalised within its prompt group first (so a reward's scale
  does not decide its influence), then the advantages are summed with the configured weights.
- Instruction-following-prioritised gating: a reward with `role: consistency` is multiplied by a gate of the
  reward with `role: instruction` before anything else,
      gate(IF) = clip((IF - floor) / (threshold - floor), 0, 1),    consistency' = gate(IF) * consistency,
  default floor 0.3, threshold 0.7 (scores in [0, 1]). An edit that ignores the instruction (IF <= floor)
  gets no credit for leaving the image unchanged, whatever its consistency, so "do nothing" never wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from trainer.core import TrainerError
from trainer.rewards import Reward, RewardInput, build_reward, check_reward_spec


def validate_reward_specs(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every spec buildable (trainer.rewards.check_reward_spec), keys distinct, at most one instruction role."""
    for spec in specs:
        check_reward_spec(spec)
    keys = [spec.get("key", spec["name"]) for spec in specs]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise ValueError(f"rewards: {', '.join(twice)} listed twice (give one a distinct `key`)")
    if [spec.get("role") for spec in specs].count("instruction") > 1:
        raise ValueError("rewards: at most one reward has role 'instruction'")
    return specs


# The task configs' `rewards:` list, validated at load time (no model loaded).
RewardSpecs = Annotated[list[dict[str, Any]], Field(min_length=1), AfterValidator(validate_reward_specs)]


class GateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    floor: float = Field(default=0.3, ge=0.0)
    threshold: float = Field(default=0.7, gt=0.0)

    @model_validator(mode="after")
    def _ordered(self) -> GateConfig:
        if self.threshold <= self.floor:
            raise ValueError(f"gate.threshold {self.threshold} must exceed gate.floor {self.floor}")
        return self


def instruction_gate(instruction: torch.Tensor, config: GateConfig) -> torch.Tensor:
    return ((instruction - config.floor) / (config.threshold - config.floor)).clamp(0.0, 1.0)


def gated_scores(scores: dict[str, torch.Tensor], roles: dict[str, str], config: GateConfig) -> dict[str, torch.Tensor]:
    instruction = [name for name, role in roles.items() if role == "instruction"]
    if not instruction:
        return scores
    gate = instruction_gate(scores[instruction[0]], config)
    return {name: gate * value if roles.get(name) == "consistency" else value for name, value in scores.items()}


def per_group_advantages(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    from trainer.objectives.flow_grpo import group_advantages

    return group_advantages(scores, group_size)[0]


@dataclass
class WeightedReward:
    reward: Reward
    weight: float
    role: str | None


class RewardMixer:
    def __init__(self, rewards: dict[str, WeightedReward], vae: str | None = None,
                 gate: GateConfig | None = None) -> None:
        roles = [r.role for r in rewards.values() if r.role]
        if roles.count("instruction") > 1 or any(role not in ("instruction", "consistency") for role in roles):
            raise TrainerError("rewards: roles are 'instruction' (at most one) or 'consistency'")
        self.rewards = rewards
        self.gate = gate or GateConfig()
        self.vae_path = vae
        self.vae: Any = None
        self.last_means: dict[str, float] = {}
        self.last_unscored: dict[str, float] = {}

    @classmethod
    def from_specs(cls, specs: list[dict[str, Any]], vae: str | None = None,
                   gate: dict[str, Any] | None = None) -> RewardMixer:
        try:
            validate_reward_specs(specs)
        except ValueError as exc:
            raise TrainerError(str(exc)) from None
        rewards = {}
        for spec in specs:
            rewards[spec.get("key", spec["name"])] = WeightedReward(build_reward(spec), float(spec.get("weight", 1.0)),
                                                                    spec.get("role"))
        return cls(rewards, vae, GateConfig(**(gate or {})))

    def _images(self, latents: torch.Tensor) -> list:
        from trainer.latents import decode_latents, load_vae, tensor_to_image

        if self.vae is None:
            if self.vae_path is None:
                raise TrainerError("rewards: an image reward needs a VAE to decode the latents")
            self.vae = load_vae(self.vae_path, latents.device)
        with torch.no_grad():
            return [tensor_to_image(pixels) for pixels in decode_latents(self.vae, latents.float()).cpu()]

    def scores(self, latents: torch.Tensor, prompts: list[str],
               source_latents: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Gated raw scores per reward, `[B]` each; `source_latents` are the edits' sources (one per latent).
        The batch means of the raw scores stay in `last_means` for the training log."""
        entries = self.rewards.values()
        images = self._images(latents) if any(r.reward.needs_images for r in entries) else []
        sources = None
        if any(r.reward.needs_source_images for r in entries):
            if source_latents is None:
                raise TrainerError("rewards: an edit reward needs the source images, this task gives none")
            sources = self._images(source_latents)
        batch = RewardInput(prompts=prompts, images=images, latents=latents.detach(), source_images=sources)
        raw = {name: torch.tensor(entry.reward.score(batch).scores, dtype=torch.float32)
               for name, entry in self.rewards.items()}
        self.last_means = {name: float(value.nanmean()) for name, value in raw.items()}
        self.last_unscored = {name: float(value.isnan().float().mean()) for name, value in raw.items()}
        return gated_scores(raw, {name: entry.role for name, entry in self.rewards.items() if entry.role}, self.gate)

    def latent_reward(self, latents: torch.Tensor, prompts: list[str],
                      source_latents: torch.Tensor | None = None) -> torch.Tensor:
        """The weighted sum of the gated scores (Flow-GRPO normalises it per group itself)."""
        scores = self.scores(latents, prompts, source_latents)
        return sum(self.rewards[name].weight * value for name, value in scores.items())

    def group_advantage(self, latents: torch.Tensor, prompts: list[str], group_size: int,
                        source_latents: torch.Tensor | None = None) -> torch.Tensor:
        """Per-reward group advantages of the gated scores, weighted and summed (DiffusionNFT)."""
        scores = self.scores(latents, prompts, source_latents)
        return sum(self.rewards[name].weight * per_group_advantages(value, group_size)
                   for name, value in scores.items())


def reward_means(mixer: RewardMixer) -> dict[str, torch.Tensor]:
    """The last scored batch's mean raw score per reward (`reward/<key>`, over the scored images) and the share
    of images a reward could not score (`unscored/<key>`: a judge answer that did not parse), for the log."""
    return {**{f"reward/{name}": torch.tensor(value) for name, value in mixer.last_means.items()},
            **{f"unscored/{name}": torch.tensor(value) for name, value in mixer.last_unscored.items()}}
