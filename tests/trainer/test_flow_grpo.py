"""Flow-GRPO: the SDE step against torch.distributions and the Euler sampler, ratio/KL at the start,
group advantages and the dropping of zero-spread groups."""

from __future__ import annotations

import copy

import pytest
import torch

from trainer.models.mmdit import MMDiT, preset_config
from trainer.objectives.flow_grpo import (FlowGRPOConfig, flow_grpo_loss, group_advantages, sde_sample,
                                          sde_step_gaussian, step_kl, step_log_prob)
from trainer.sampling import euler_sample

LATENT = (16, 1, 4, 4)


def tiny_model(seed: int = 0) -> MMDiT:
    torch.manual_seed(seed)
    model = MMDiT(preset_config("tiny"))
    torch.nn.init.normal_(model.head.weight, std=0.02)  # a non-zero velocity field
    return model.eval()


def text(batch: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 5, 64, generator=generator), torch.ones(batch, 5, dtype=torch.bool)


def test_step_log_prob_equals_torch_normal() -> None:
    generator = torch.Generator().manual_seed(0)
    z, velocity = torch.randn(3, *LATENT, generator=generator), torch.randn(3, *LATENT, generator=generator)
    gaussian = sde_step_gaussian(z, velocity, t=0.3, dt=0.1, noise_level=0.7, t_min=0.05)
    sample = gaussian.mean + 0.5 * torch.randn(3, *LATENT, generator=generator)
    std = gaussian.std.view(-1, 1, 1, 1, 1).expand_as(sample)
    expected = torch.distributions.Normal(gaussian.mean, std).log_prob(sample).flatten(1).mean(dim=1)
    assert torch.allclose(step_log_prob(sample, gaussian), expected, atol=1e-6, rtol=0)
    # The drift is the derivation's: v - g^2 / (2 (1 - t)) (z - t v), g = a sqrt((1 - t) / t).
    g2 = 0.7**2 * (0.7 / 0.3)
    assert torch.allclose(gaussian.mean, z + 0.1 * (velocity - g2 / (2 * 0.7) * (z - 0.3 * velocity)), atol=1e-6)
    assert torch.allclose(gaussian.std, torch.full((3,), (g2 * 0.1) ** 0.5), atol=1e-6)


def test_noise_level_zero_equals_euler_sampler() -> None:
    model = tiny_model()
    states, mask = text(2)
    noise = torch.randn(2, *LATENT, generator=torch.Generator().manual_seed(3))
    trajectory = sde_sample(model, noise, states, mask, num_steps=5, noise_level=0.0, guidance_scale=3.0, shift=1.6)
    euler = euler_sample(model, noise, states, mask, num_steps=5, guidance_scale=3.0, shift=1.6)
    assert torch.allclose(trajectory.final, euler, atol=1e-6, rtol=0)


def test_sde_keeps_marginal_of_gaussian_data() -> None:
    """Independent check of the drift: for data N(0, s^2) the exact velocity is known in closed form, and the
    SDE's samples must end with std s whatever the noise level (the ODE's marginals)."""
    s = 0.5

    def exact_velocity(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tt = t.view(-1, 1)
        variance = tt**2 * s**2 + (1 - tt) ** 2
        return z * (tt * s**2 - (1 - tt)) / variance  # E[x - e | z] for Gaussian x and e

    generator = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 1, generator=generator)
    steps = 400
    times = torch.linspace(0, 1, steps + 1)
    for t_now, t_next in zip(times[:-1].tolist(), times[1:].tolist()):
        gaussian = sde_step_gaussian(z, exact_velocity(z, torch.full((z.shape[0],), t_now)), t_now,
                                     t_next - t_now, noise_level=0.7, t_min=float(times[1]))
        z = gaussian.mean + gaussian.std.view(-1, 1) * torch.randn(z.shape, generator=generator)
    assert abs(float(z.std()) - s) < 0.03


def test_ratio_one_and_kl_zero_before_first_update() -> None:
    model = tiny_model()
    reference = copy.deepcopy(model)
    config = FlowGRPOConfig(group_size=2, num_steps=4, noise_level=0.7, guidance_scale=2.0, kl_beta=0.1)
    states, mask = text(4)
    noise = torch.randn(4, *LATENT, generator=torch.Generator().manual_seed(1))
    trajectory = sde_sample(model, noise, states, mask, num_steps=4, noise_level=0.7, guidance_scale=2.0,
                            generator=torch.Generator().manual_seed(2))
    advantages, keep = group_advantages(torch.tensor([1.0, 0.0, 0.5, 2.0]), 2)
    losses = flow_grpo_loss(model.train(), reference, trajectory, advantages, keep, [0, 1, 2, 3], config, states, mask)
    assert float(losses["ratio_max_dev"]) < 1e-5
    assert float(losses["kl"]) == 0.0
    losses["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_group_advantages_mean_zero_std_one() -> None:
    rewards = torch.tensor([0.1, 0.9, 0.4, 0.3, 0.4, 0.4, 0.4, 0.4, 3.0, -1.0, 2.0, 5.0])
    advantages, keep = group_advantages(rewards, 4)
    grouped, kept = advantages.view(3, 4), keep.view(3, 4)
    assert kept[1].sum() == 0 and torch.all(grouped[1] == 0)  # zero spread: dropped
    for g in (0, 2):
        assert abs(float(grouped[g].mean())) < 1e-6
        assert abs(float(grouped[g].std(unbiased=False)) - 1) < 1e-6
    batch_advantages, _ = group_advantages(rewards, 4, "batch")
    assert torch.allclose(batch_advantages.view(3, 4)[0], (rewards[:4] - rewards[:4].mean()) / rewards.std(unbiased=False))


def test_an_unscored_sample_is_left_out_of_its_group() -> None:
    """A NaN reward (a judge answer that did not parse) is unknown: the group's other samples alone are
    normalised, and the unscored one carries no advantage and no weight."""
    nan = float("nan")
    rewards = torch.tensor([0.1, nan, 0.9, 0.5, nan, 0.2, 0.2, 0.2])
    advantages, keep = group_advantages(rewards, 4)
    known = torch.tensor([0.1, 0.9, 0.5])
    assert torch.allclose(advantages[[0, 2, 3]], (known - known.mean()) / known.std(unbiased=False), atol=1e-6)
    assert advantages[1] == 0 and keep.tolist() == [1, 0, 1, 1, 0, 0, 0, 0]  # second group: no spread left
    batch_advantages, _ = group_advantages(rewards, 4, "batch")
    scored = rewards[~rewards.isnan()]
    assert torch.allclose(batch_advantages[[0, 2, 3]], (known - known.mean()) / scored.std(unbiased=False), atol=1e-6)


def test_zero_spread_groups_give_no_gradient() -> None:
    model = tiny_model()
    config = FlowGRPOConfig(group_size=2, num_steps=3, guidance_scale=1.0, kl_beta=0.0)
    states, mask = text(2)
    noise = torch.randn(2, *LATENT, generator=torch.Generator().manual_seed(1))
    trajectory = sde_sample(model, noise, states, mask, num_steps=3, noise_level=0.7, guidance_scale=1.0,
                            generator=torch.Generator().manual_seed(2))
    advantages, keep = group_advantages(torch.tensor([0.3, 0.3]), 2)
    losses = flow_grpo_loss(model.train(), model, trajectory, advantages, keep, [0, 1, 2], config, states, mask)
    losses["loss"].backward()
    assert all(p.grad is None or float(p.grad.abs().max()) == 0.0 for p in model.parameters())


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_kl_of_equal_steps_is_zero(beta: float) -> None:
    z = torch.randn(2, *LATENT)
    gaussian = sde_step_gaussian(z, z * beta, 0.4, 0.1, 0.7, 0.1)
    assert torch.all(step_kl(gaussian, gaussian) == 0)
