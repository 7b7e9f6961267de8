"""DiffusionNFT for the editing MMDiT (report 5.2.4): reward-weighted flow matching on the forward process.

Per rollout (deterministic, CFG-free Euler sampling with the OLD policy from the source-latent condition):
  - the mixed advantage A of each edit (trainer/rewards: per-reward group advantages, weighted sum) becomes
    an optimality probability r = 1/2 + clip(A, -c, c) / (2 c) in [0, 1] (c = `advantage_clip`);
  - on the edit x (data) the model is trained at a fresh (t, noise): z_t = t x + (1 - t) e, target v = x - e;
  - implicit policies from the trained velocity v_theta and the old one v_old (no gradient):
        v+ = (1 - beta) v_old + beta v_theta,    v- = (1 + beta) v_old - beta v_theta;
  - loss = mean over samples of [ r ||v+ - v||^2 + (1 - r) ||v- - v||^2 ], ||.||^2 a mean over the latent's
    D elements. Its gradient with respect to v_theta (B samples) at theta = theta_old, where v+ = v- = v_old:
        2 beta r (v_old - v) / (B D) - 2 beta (1 - r) (v_old - v) / (B D) = 2 beta (2r - 1) (v_old - v) / (B D),
    so r = 1/2 gives no gradient, and r = 1, beta = 1 gives v+ = v_theta: the plain flow-matching loss.

The old policy is an EMA of the trained weights, updated after every optimizer step k (1, 2, ...):
    theta_old <- mu_k theta_old + (1 - mu_k) theta,   mu_k = min(ema_max, ema_ramp * (k - 1)),
so the first update copies theta (mu_1 = 0: the old policy follows closely while the policy moves fastest)
and the decay then grows linearly to `ema_max` (a slower, steadier old policy later on).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from trainer.core import StepTotals, register_task
from trainer.objectives.flow_grpo import Randomness, RolloutGenerators, draw_normal, draw_uniform
from trainer.rewards.mixing import GateConfig, RewardSpecs, reward_means
from trainer.objectives.flow_matching import (MMDiTEditTask, MMDiTTaskConfig, image_token_count, interpolate,
                                              resolution_shift, velocity_target)
from trainer.sampling import euler_sample


class DiffusionNFTConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    beta: float = Field(default=1.0, gt=0.0)  # strength of the implicit policies
    group_size: int = Field(default=4, ge=2)  # rollouts per (source, instruction)
    num_steps: int = Field(default=10, ge=1)  # Euler steps of the deterministic rollouts
    advantage_clip: float = Field(default=1.0, gt=0.0)  # c in r = 1/2 + clip(A, -c, c) / (2c)
    ema_max: float = Field(default=0.9, ge=0.0, lt=1.0)
    ema_ramp: float = Field(default=0.05, ge=0.0)


def optimality_probability(advantages: torch.Tensor, clip: float) -> torch.Tensor:
    return 0.5 + advantages.clamp(-clip, clip) / (2 * clip)


def ema_decay(step: int, config: DiffusionNFTConfig) -> float:
    """mu_k of the module docstring for optimizer step k >= 1."""
    return min(config.ema_max, config.ema_ramp * (step - 1))


@torch.no_grad()
def ema_update(old: nn.Module, model: nn.Module, decay: float) -> None:
    for old_param, param in zip(old.parameters(), model.parameters()):
        old_param.mul_(decay).add_(param.detach().to(old_param.dtype), alpha=1 - decay)


def nft_loss_from_velocities(v_theta: torch.Tensor, v_old: torch.Tensor, target: torch.Tensor, r: torch.Tensor,
                             beta: float) -> torch.Tensor:
    positive = (1 - beta) * v_old + beta * v_theta
    negative = (1 + beta) * v_old - beta * v_theta
    per_sample_pos = (positive.float() - target.float()).pow(2).flatten(1).mean(dim=1)
    per_sample_neg = (negative.float() - target.float()).pow(2).flatten(1).mean(dim=1)
    return (r * per_sample_pos + (1 - r) * per_sample_neg).mean()


def diffusion_nft_loss(model: nn.Module, old: nn.Module, data: torch.Tensor, r: torch.Tensor, beta: float,
                       text_states: torch.Tensor, text_mask: torch.Tensor,
                       condition_latents: Sequence[torch.Tensor] = (), generator: Randomness = None,
                       timesteps: torch.Tensor | None = None) -> torch.Tensor:
    noise = draw_normal(data.shape, generator).to(data)
    if timesteps is None:
        timesteps = draw_uniform(data.shape[0], generator).to(data)
    z = interpolate(noise, data, timesteps)
    v_theta = model(z, timesteps, text_states, text_mask, condition_latents=condition_latents)
    with torch.no_grad():
        v_old = old(z, timesteps, text_states, text_mask, condition_latents=condition_latents)
    return nft_loss_from_velocities(v_theta, v_old, velocity_target(noise, data), r, beta)


# (edits, instructions, group size, source latents or None) -> mixed advantages [B]
# (trainer.rewards.mixing.RewardMixer.group_advantage)
AdvantageFunction = Callable[[torch.Tensor, list[str], int, torch.Tensor | None], torch.Tensor]


def nft_update(model: nn.Module, old: nn.Module, advantage_fn: AdvantageFunction, text_states: torch.Tensor,
               text_mask: torch.Tensor, instructions: list[str], condition_latents: Sequence[torch.Tensor],
               latent_shape: Sequence[int], config: DiffusionNFTConfig, shift: float,
               generator: Randomness) -> dict[str, torch.Tensor]:
    """Deterministic CFG-free rollouts of the old policy (G per prompt), advantages, the NFT loss."""
    group = config.group_size
    states, mask = text_states.repeat_interleave(group, 0), text_mask.repeat_interleave(group, 0)
    conditions = [c.repeat_interleave(group, 0) for c in condition_latents]
    noise = draw_normal((states.shape[0], *latent_shape), generator).to(text_states)
    edits = euler_sample(old, noise, states, mask, num_steps=config.num_steps, guidance_scale=1.0, shift=shift,
                         condition_latents=conditions)
    advantages = advantage_fn(edits, [p for p in instructions for _ in range(group)], group,
                              conditions[0] if conditions else None).to(edits)
    r = optimality_probability(advantages, config.advantage_clip)
    loss = diffusion_nft_loss(model, old, edits, r, config.beta, states, mask, conditions, generator)
    return {"loss": loss, "r_mean": r.mean().detach(), "advantage_abs": advantages.abs().mean().detach()}


class DiffusionNFTTaskConfig(MMDiTTaskConfig):
    nft: DiffusionNFTConfig = Field(default_factory=DiffusionNFTConfig)
    rewards: RewardSpecs = Field(default_factory=lambda: [{"name": "aesthetic", "weight": 1.0}])  # registry specs
    reward_gate: GateConfig = Field(default_factory=GateConfig)  # instruction-following gate of the mixing


@register_task("mmdit_nft_edit")
class DiffusionNFTEditTask(MMDiTEditTask):
    """DiffusionNFT on cached edit triplet shards: source latents condition the rollouts and the loss."""

    config_model = DiffusionNFTTaskConfig
    config: DiffusionNFTTaskConfig

    def build_model(self) -> nn.Module:
        from trainer.rewards import build_reward_mixer

        model = super().build_model()
        self.old = copy.deepcopy(model).requires_grad_(False).eval()
        self.rewards = build_reward_mixer(self.config.rewards, vae=self.config.vae,
                                          gate=self.config.reward_gate.model_dump())
        self.updates = 0
        return model

    def state_dict(self) -> dict[str, Any]:
        return {"old": self.old.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.old.load_state_dict(state["old"])
        self.updates = state["updates"]

    def compute_loss(self, model: Any, batch: dict[str, Any], totals: StepTotals | None = None) -> dict[str, Any]:
        module = getattr(model, "module", model)
        if self.updates:  # the previous call's optimizer step has happened: move the old policy
            ema_update(self.old, module, ema_decay(self.updates, self.config.nft))
        self.updates += 1
        self.old.to(batch["latents"].device)
        latent_shape = batch["latents"].shape[1:]
        shift = resolution_shift(image_token_count(batch["latents"].shape), self.config.flow)
        generators = RolloutGenerators.for_update(batch["seeds"].tolist(), self.config.nft.group_size, self.updates)
        losses = nft_update(model, self.old, self.rewards.group_advantage, batch["text_states"], batch["text_mask"],
                            batch["prompts"], [batch["source_latents"]], latent_shape, self.config.nft, shift,
                            generators)
        return {**losses, **reward_means(self.rewards)}
