"""Flow-GRPO (report 4.2.4, equations 2 and 3): policy-gradient post-training of the text-to-image MMDiT.

The SDE sampler, derived for OUR flow convention (trainer/objectives/flow_matching.py):
    z_t = t z1 + (1 - t) z0,  z0 ~ N(0, I) noise at t = 0,  z1 data at t = 1,  velocity v = z1 - z0,
and sampling runs forward in t (public Flow-GRPO code runs its sigma = 1 - t backwards; nothing is taken
from it but the idea of an Euler-Maruyama step with the same marginals as the ODE).

1. Denoised estimates from one velocity: z = t x + (1 - t) e and v = x - e give
       x_hat = z + (1 - t) v,     e_hat = z - t v.
2. Score of the marginal p_t (a Gaussian blur of the data with std 1 - t around t x):
       grad log p_t(z) = -E[e | z] / (1 - t) = -(z - t v) / (1 - t).
3. For any diffusion g(t) >= 0 the SDE  dz = [v + g^2 / 2 * grad log p_t(z)] dt + g dW  has the marginals of
   the ODE dz = v dt: in the Fokker-Planck equation the extra drift contributes -div(p g^2/2 grad log p)
   = -g^2/2 lap p and the diffusion +g^2/2 lap p; they cancel. Substituting 2.:
       dz = [v - g^2 / (2 (1 - t)) (z - t v)] dt + g dW.
4. Diffusion g(t) = a sqrt((1 - t) / t) with the noise level `a` (large near noise, zero at data, like the
   public choice in its own variable); it diverges at t = 0, so t is clamped below at the grid's first
   positive time `t_min`.
5. One Euler-Maruyama step from t to t + dt is a Gaussian policy step:
       z' ~ N(mean, std^2 I),  mean = z + dt [v - g^2 / (2 (1 - t)) (z - t v)],  std = g sqrt(dt).
   With a = 0 it is exactly the sampler's Euler step z + dt v (trainer/sampling.py). The step's
   log-probability is the Gaussian's log-density, averaged over latent elements (the scale then does not
   depend on the resolution). The KL between the policy's and the reference's step (same std) is
   ||mean_theta - mean_ref||^2 / (2 std^2), averaged over elements as well.

The objective per trained step (G samples per prompt; advantages normalised within the prompt's group):
    ratio = exp(logp_theta(z' | z) - logp_old(z' | z)),
    loss  = mean over kept samples of max(-A ratio, -A clip(ratio, 1 - eps, 1 + eps)) + beta KL(theta || ref).
`logp_old` is recorded while sampling with the same weights, so the first update sees ratio 1; groups whose
rewards have no spread carry no signal and are dropped (weight zero, still run so ranks stay in lockstep).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from trainer.core import StepTotals, register_task
from trainer.rewards.mixing import RewardSpecs, reward_means
from trainer.objectives.flow_matching import MMDiTTaskConfig, MMDiTTextToImageTask, resolution_shift, image_token_count
from trainer.sampling import guided_velocity, sampling_timesteps


class FlowGRPOConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    group_size: int = Field(default=4, ge=2)  # G samples per prompt
    num_steps: int = Field(default=10, ge=1)  # SDE steps per rollout
    noise_level: float = Field(default=0.7, ge=0.0)  # `a` in g(t) = a sqrt((1 - t) / t)
    clip_range: float = Field(default=1e-4, gt=0.0)  # epsilon of the clipped ratio
    kl_beta: float = Field(default=0.04, ge=0.0)  # weight of KL(theta || frozen reference)
    timestep_fraction: float = Field(default=0.6, gt=0.0, le=1.0)  # share of each trajectory's steps trained
    guidance_scale: float = Field(default=4.5, ge=1.0)  # CFG while sampling (and in the trained log-probs)
    advantage_std: Literal["group", "batch"] = "group"  # divide by the group's or the whole batch's std


# ---------------------------------------------------------------- the SDE step (derivation in the docstring)


def diffusion_coefficient(t: torch.Tensor, noise_level: float, t_min: float) -> torch.Tensor:
    return noise_level * torch.sqrt((1 - t) / t.clamp(min=t_min))


@dataclass(frozen=True)
class StepGaussian:
    mean: torch.Tensor  # [B, C, F, H, W]
    std: torch.Tensor  # [B] (0 where the step is deterministic)


def sde_step_gaussian(z: torch.Tensor, velocity: torch.Tensor, t: float, dt: float, noise_level: float,
                      t_min: float) -> StepGaussian:
    tt = torch.full((z.shape[0],), float(t), dtype=z.dtype, device=z.device)
    g = diffusion_coefficient(tt, noise_level, t_min).view(-1, *([1] * (z.dim() - 1)))
    drift = velocity - g.pow(2) / (2 * (1 - t)) * (z - t * velocity)
    return StepGaussian(z + dt * drift, (g * math.sqrt(dt)).flatten())


def step_log_prob(sample: torch.Tensor, gaussian: StepGaussian) -> torch.Tensor:
    """log N(sample; mean, std^2 I) averaged over the latent's elements, `[B]`."""
    std = gaussian.std.view(-1, *([1] * (sample.dim() - 1)))
    log_density = (-(sample - gaussian.mean).pow(2) / (2 * std.pow(2)) - torch.log(std)
                   - 0.5 * math.log(2 * math.pi))
    return log_density.flatten(1).mean(dim=1)


def step_kl(policy: StepGaussian, reference: StepGaussian) -> torch.Tensor:
    """KL between two steps of equal std, averaged over elements, `[B]`."""
    std = policy.std.view(-1, *([1] * (policy.mean.dim() - 1)))
    return ((policy.mean - reference.mean).pow(2) / (2 * std.pow(2))).flatten(1).mean(dim=1)


class RolloutGenerators:
    """Random streams for one update that do not depend on the data-parallel layout: rollout i draws its noise
    from its own generator (seeded from its prompt's sample seed), batch-level draws (which steps to train)
    come from `shared`, seeded alike on every rank. Two ranks holding half the prompts each then draw exactly
    what one rank holding all of them draws."""

    def __init__(self, rollout_seeds: Sequence[int], shared_seed: int) -> None:
        self.rollouts = [torch.Generator().manual_seed(seed) for seed in rollout_seeds]
        self.shared = torch.Generator().manual_seed(shared_seed)

    @classmethod
    def for_update(cls, sample_seeds: Sequence[int], group_size: int, update: int) -> RolloutGenerators:
        mix = 1_000_003
        return cls([((int(seed) * mix + update) * mix + member) % 2**62 for seed in sample_seeds
                    for member in range(group_size)], update)


Randomness = torch.Generator | RolloutGenerators | None


def draw_normal(shape: Sequence[int], generator: Randomness) -> torch.Tensor:
    if isinstance(generator, RolloutGenerators):
        if shape[0] != len(generator.rollouts):
            raise ValueError(f"{shape[0]} rows drawn from {len(generator.rollouts)} rollout generators")
        return torch.stack([torch.randn(tuple(shape[1:]), generator=g) for g in generator.rollouts])
    return torch.randn(tuple(shape), generator=generator)


def draw_uniform(count: int, generator: Randomness) -> torch.Tensor:
    if isinstance(generator, RolloutGenerators):
        return torch.cat([torch.rand(1, generator=g) for g in generator.rollouts])
    return torch.rand(count, generator=generator)


def shared_generator(generator: Randomness) -> torch.Generator | None:
    return generator.shared if isinstance(generator, RolloutGenerators) else generator


@dataclass
class Trajectory:
    """SDE rollouts: latents z_0..z_K `[K + 1, B, ...]`, their step log-probs `[K, B]` and the time grid."""

    latents: torch.Tensor
    log_probs: torch.Tensor
    times: torch.Tensor

    @property
    def final(self) -> torch.Tensor:
        return self.latents[-1]


@torch.no_grad()
def sde_sample(model: nn.Module, noise: torch.Tensor, text_states: torch.Tensor, text_mask: torch.Tensor, *,
               num_steps: int, noise_level: float, guidance_scale: float, shift: float = 1.0,
               condition_latents: Sequence[torch.Tensor] = (), generator: Randomness = None) -> Trajectory:
    times = sampling_timesteps(num_steps, shift, noise.device)
    t_min = float(times[1])
    z, latents, log_probs = noise, [noise], []
    for t_now, t_next in zip(times[:-1].tolist(), times[1:].tolist()):
        t = torch.full((z.shape[0],), t_now, dtype=z.dtype, device=z.device)
        velocity = guided_velocity(model, z, t, text_states, text_mask, condition_latents, guidance_scale)
        gaussian = sde_step_gaussian(z, velocity, t_now, t_next - t_now, noise_level, t_min)
        if noise_level > 0:
            fresh = draw_normal(z.shape, generator).to(z.device, z.dtype)
            z = gaussian.mean + gaussian.std.view(-1, *([1] * (z.dim() - 1))) * fresh
            log_probs.append(step_log_prob(z, gaussian))
        else:
            z = gaussian.mean
            log_probs.append(torch.zeros(z.shape[0], device=z.device))
        latents.append(z)
    return Trajectory(torch.stack(latents), torch.stack(log_probs), times)


# ---------------------------------------------------------------- advantages and the clipped objective


def group_advantages(rewards: torch.Tensor, group_size: int, std_over: str = "group",
                     min_spread: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, keep) for rewards `[P * G]` ordered prompt by prompt; groups with no spread: A 0, keep 0.

    Per group (reward - group mean) / std with the population std of the group (`std_over="group"`) or of
    the whole batch (`"batch"`), so a kept group has mean 0 and, with group std, std 1. A NaN reward (a judge
    whose answer did not parse) is unknown, not low: the statistics use the group's other samples and that
    sample gets A 0, keep 0."""
    grouped = rewards.view(-1, group_size).double()
    known = ~torch.isnan(grouped)
    count = known.sum(dim=1, keepdim=True).clamp(min=1)
    mean = torch.where(known, grouped, 0.0).sum(dim=1, keepdim=True) / count
    centred = torch.where(known, grouped - mean, 0.0)
    group_std = (centred.pow(2).sum(dim=1, keepdim=True) / count).sqrt()
    keep = (group_std > min_spread) & known
    if std_over == "group":
        scale = group_std
    else:
        scale = rewards.double()[~torch.isnan(rewards)].std(unbiased=False).expand_as(group_std)
    advantages = torch.where(keep, centred / scale.clamp(min=min_spread), torch.zeros_like(centred))
    return advantages.flatten().to(rewards.dtype), keep.flatten().to(rewards.dtype)


def clipped_policy_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                        clip_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample PPO-clip loss and the ratio, `[B]` each."""
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip_range, 1 + clip_range)
    return torch.maximum(unclipped, clipped), ratio


def trained_step_indices(num_steps: int, fraction: float, generator: torch.Generator | None = None) -> list[int]:
    count = max(1, math.ceil(fraction * num_steps))
    return sorted(torch.randperm(num_steps, generator=generator)[:count].tolist())


def flow_grpo_loss(model: nn.Module, reference: nn.Module, trajectory: Trajectory, advantages: torch.Tensor,
                   keep: torch.Tensor, steps: Sequence[int], config: FlowGRPOConfig, text_states: torch.Tensor,
                   text_mask: torch.Tensor, condition_latents: Sequence[torch.Tensor] = ()) -> dict[str, torch.Tensor]:
    """The GRPO loss over the trained steps of one rollout batch (mean over kept samples and steps)."""
    t_min = float(trajectory.times[1])
    kept = keep.sum().clamp(min=1.0)
    policy_total, kl_total, ratios = 0.0, 0.0, []
    for index in steps:
        z, z_next = trajectory.latents[index], trajectory.latents[index + 1]
        t_now, t_next = float(trajectory.times[index]), float(trajectory.times[index + 1])
        t = torch.full((z.shape[0],), t_now, dtype=z.dtype, device=z.device)
        velocity = guided_velocity(model, z, t, text_states, text_mask, condition_latents, config.guidance_scale)
        policy = sde_step_gaussian(z, velocity, t_now, t_next - t_now, config.noise_level, t_min)
        per_sample, ratio = clipped_policy_loss(step_log_prob(z_next, policy), trajectory.log_probs[index],
                                                advantages, config.clip_range)
        policy_total = policy_total + (per_sample * keep).sum() / kept
        if config.kl_beta > 0:
            with torch.no_grad():
                ref_velocity = guided_velocity(reference, z, t, text_states, text_mask, condition_latents,
                                               config.guidance_scale)
            ref = sde_step_gaussian(z, ref_velocity, t_now, t_next - t_now, config.noise_level, t_min)
            kl_total = kl_total + (step_kl(policy, ref) * keep).sum() / kept
        ratios.append(ratio.detach())
    policy_loss = policy_total / len(steps)
    kl = kl_total / len(steps) if config.kl_beta > 0 else torch.zeros((), device=advantages.device)
    ratio_all = torch.stack(ratios)
    return {"loss": policy_loss + config.kl_beta * kl, "policy_loss": policy_loss.detach(), "kl": kl.detach(),
            "ratio_mean": ratio_all.mean(), "ratio_max_dev": (ratio_all - 1).abs().max()}


# ---------------------------------------------------------------- the trainer task


class FlowGRPOTaskConfig(MMDiTTaskConfig):
    grpo: FlowGRPOConfig = Field(default_factory=FlowGRPOConfig)
    rewards: RewardSpecs = Field(default_factory=lambda: [{"name": "aesthetic", "weight": 1.0}])  # registry specs


RewardFunction = Callable[[torch.Tensor, list[str]], torch.Tensor]  # (final latents, prompts) -> [B]


def repeat_groups(tensor: torch.Tensor, group_size: int) -> torch.Tensor:
    return tensor.repeat_interleave(group_size, dim=0)


def grpo_update(model: nn.Module, reference: nn.Module, reward_fn: RewardFunction, text_states: torch.Tensor,
                text_mask: torch.Tensor, prompts: list[str], latent_shape: Sequence[int], config: FlowGRPOConfig,
                shift: float, generator: Randomness) -> dict[str, torch.Tensor]:
    """Rollout G samples per prompt with the current weights, score them, return the loss of one update."""
    group = config.group_size
    states, mask = repeat_groups(text_states, group), repeat_groups(text_mask, group)
    device = text_states.device
    noise = draw_normal((states.shape[0], *latent_shape), generator).to(device, text_states.dtype)
    was_training = model.training
    model.eval()
    trajectory = sde_sample(model, noise, states, mask, num_steps=config.num_steps, noise_level=config.noise_level,
                            guidance_scale=config.guidance_scale, shift=shift, generator=generator)
    model.train(was_training)
    rewards = reward_fn(trajectory.final, [p for p in prompts for _ in range(group)]).to(device)
    advantages, keep = group_advantages(rewards, group, config.advantage_std)
    steps = trained_step_indices(config.num_steps, config.timestep_fraction, shared_generator(generator))
    losses = flow_grpo_loss(model, reference, trajectory, advantages.to(noise.dtype), keep.to(noise.dtype), steps,
                            config, states, mask)
    losses["reward_mean"] = rewards.mean().detach()
    losses["kept_fraction"] = keep.mean().detach()
    return losses


@register_task("mmdit_grpo_t2i")
class FlowGRPOTask(MMDiTTextToImageTask):
    """Flow-GRPO on the cached caption shards: their text features are the prompts; the cached latent gives
    only the bucket shape to sample at. The frozen reference is a copy of the initial weights."""

    config_model = FlowGRPOTaskConfig
    config: FlowGRPOTaskConfig

    def build_model(self) -> nn.Module:
        model = super().build_model()
        self.reference = copy.deepcopy(model).requires_grad_(False).eval()
        self.updates = 0
        from trainer.rewards import build_reward_mixer

        self.rewards = build_reward_mixer(self.config.rewards, vae=self.config.vae)
        return model

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = state["updates"]

    def compute_loss(self, model: Any, batch: dict[str, Any], totals: StepTotals | None = None) -> dict[str, Any]:
        latent_shape = batch["latents"].shape[1:]
        shift = resolution_shift(image_token_count(batch["latents"].shape), self.config.flow)
        self.reference.to(batch["latents"].device)
        self.updates += 1
        generators = RolloutGenerators.for_update(batch["seeds"].tolist(), self.config.grpo.group_size, self.updates)
        losses = grpo_update(model, self.reference, self.rewards.latent_reward, batch["text_states"],
                             batch["text_mask"], batch["prompts"], latent_shape, self.config.grpo, shift, generators)
        return {**losses, **reward_means(self.rewards)}
