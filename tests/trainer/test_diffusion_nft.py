"""DiffusionNFT: the gradient at theta = theta_old, r = 1/2, the flow-matching limit and the EMA schedule."""

from __future__ import annotations

import copy

import pytest
import torch

from trainer.models.mmdit import MMDiT, preset_config
from trainer.objectives.diffusion_nft import (DiffusionNFTConfig, diffusion_nft_loss, ema_decay, ema_update,
                                              nft_loss_from_velocities, optimality_probability)
from trainer.objectives.flow_matching import MMDiTBatch, flow_matching_loss, FlowMatchingConfig

SHAPE = (3, 16, 1, 4, 4)


@pytest.mark.parametrize("beta", [0.3, 1.0, 2.0])
def test_gradient_at_old_policy(beta: float) -> None:
    generator = torch.Generator().manual_seed(0)
    v_old, target = torch.randn(SHAPE, generator=generator), torch.randn(SHAPE, generator=generator)
    r = torch.tensor([0.0, 0.25, 0.9])
    v_theta = v_old.clone().requires_grad_(True)
    nft_loss_from_velocities(v_theta, v_old, target, r, beta).backward()
    batch, elements = SHAPE[0], v_old[0].numel()
    expected = 2 * beta * (2 * r - 1).view(-1, 1, 1, 1, 1) * (v_old - target) / (batch * elements)
    assert torch.allclose(v_theta.grad, expected, atol=1e-6, rtol=0)


def test_half_probability_gives_zero_gradient() -> None:
    torch.manual_seed(0)
    model = MMDiT(preset_config("tiny"))
    torch.nn.init.normal_(model.head.weight, std=0.02)
    old = copy.deepcopy(model)
    data, states = torch.randn(2, 16, 1, 4, 4), torch.randn(2, 5, 64)
    mask = torch.ones(2, 5, dtype=torch.bool)
    loss = diffusion_nft_loss(model, old, data, torch.full((2,), 0.5), 0.7, states, mask,
                              generator=torch.Generator().manual_seed(1))
    loss.backward()
    assert max(float(p.grad.abs().max()) for p in model.parameters() if p.grad is not None) < 1e-7


def test_r_one_beta_one_is_flow_matching() -> None:
    torch.manual_seed(0)
    model = MMDiT(preset_config("tiny"))
    torch.nn.init.normal_(model.head.weight, std=0.02)
    old = copy.deepcopy(model)
    torch.nn.init.normal_(old.head.weight, std=0.05)  # a different old policy must not matter at beta = 1
    data, states = torch.randn(2, 16, 1, 4, 4), torch.randn(2, 5, 64)
    mask = torch.ones(2, 5, dtype=torch.bool)
    t = torch.tensor([0.2, 0.7])
    nft = diffusion_nft_loss(model, old, data, torch.ones(2), 1.0, states, mask,
                             generator=torch.Generator().manual_seed(3), timesteps=t)
    noise = torch.randn(data.shape, generator=torch.Generator().manual_seed(3))
    reference, _ = flow_matching_loss(model.eval(), MMDiTBatch(data, states, mask, ()), FlowMatchingConfig(),
                                      timesteps=t, noise=noise)
    # the same sum in another order (per-sample means first): equal to float32 rounding
    assert abs(float(nft.detach()) - float(reference.detach())) < 1e-6


def test_ema_schedule_values() -> None:
    config = DiffusionNFTConfig(ema_max=0.9, ema_ramp=0.05)
    for step, expected in [(1, 0.0), (2, 0.05), (5, 0.2), (19, 0.9), (100, 0.9)]:
        assert ema_decay(step, config) == pytest.approx(min(0.9, 0.05 * (step - 1)), abs=1e-12)
        assert ema_decay(step, config) == pytest.approx(expected, abs=1e-12)
    old, new = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    before = old.weight.detach().clone()
    ema_update(old, new, 0.2)
    assert torch.allclose(old.weight, 0.2 * before + 0.8 * new.weight)


def test_optimality_probability_clips_and_rescales() -> None:
    r = optimality_probability(torch.tensor([-5.0, -1.0, 0.0, 0.5, 3.0]), clip=1.0)
    assert torch.allclose(r, torch.tensor([0.0, 0.0, 0.5, 0.75, 1.0]))
