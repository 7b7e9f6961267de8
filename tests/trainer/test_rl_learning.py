"""Learning: the tiny MMDiT on small latents with a closed-form reward closes at least half of the gap between
its initial and the best reward within 30 updates, for Flow-GRPO and DiffusionNFT, and gains more than the
same number of plain flow-matching fine-tuning steps on the base distribution.

Reward: -|probe(z) - target| with probe(z) the mean of a fixed linear probe of the latent (LatentProbeReward);
the best reward is 0, the initial model (zero output layer: samples are the noise) sits near -target.
"""

from __future__ import annotations

import copy

import pytest
import torch

from trainer.models.mmdit import MMDiT, preset_config
from trainer.objectives.diffusion_nft import DiffusionNFTConfig, ema_decay, ema_update, nft_update
from trainer.objectives.flow_grpo import FlowGRPOConfig, grpo_update
from trainer.objectives.flow_matching import FlowMatchingConfig, MMDiTBatch, flow_matching_loss
from trainer.rewards.mixing import per_group_advantages
from trainer.rewards.scorers import LatentProbeReward
from trainer.sampling import euler_sample

LATENT = (16, 1, 4, 4)
TARGET = 1.0
UPDATES = 30
PROBE = LatentProbeReward(seed=0)


def reward(latents: torch.Tensor, _prompts: list[str]) -> torch.Tensor:
    return -(PROBE.values(latents) - TARGET).abs()


def advantage(latents: torch.Tensor, prompts: list[str], group: int, _sources=None) -> torch.Tensor:
    return per_group_advantages(reward(latents, prompts), group)


def setup(seed: int = 0):
    torch.manual_seed(seed)
    model = MMDiT(preset_config("tiny"))
    states = torch.randn(2, 4, 64, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 4, dtype=torch.bool)
    return model, states, mask


def evaluate(model: MMDiT, states: torch.Tensor, mask: torch.Tensor, conditions=()) -> float:
    """Mean reward of deterministic samples from fixed noise (8 per prompt)."""
    noise = torch.randn(16, *LATENT, generator=torch.Generator().manual_seed(99))
    final = euler_sample(model.eval(), noise, states.repeat_interleave(8, 0), mask.repeat_interleave(8, 0),
                         num_steps=4, condition_latents=[c.repeat_interleave(8, 0) for c in conditions])
    return float(reward(final, []).mean())


@pytest.fixture(scope="module")
def plain_finetuning_gain() -> float:
    """The reward gain of UPDATES plain flow-matching steps (deterministic: computed once for both objectives)."""
    model, states, mask = setup()
    initial = evaluate(model, states, mask)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(5)
    for _ in range(UPDATES):  # flow matching on the base distribution (standard normal latents)
        data = torch.randn(8, *LATENT, generator=generator)
        loss, _ = flow_matching_loss(model.train(), MMDiTBatch(data, states.repeat_interleave(4, 0),
                                                               mask.repeat_interleave(4, 0), ()),
                                     FlowMatchingConfig(), generator=generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return evaluate(model, states, mask) - initial


def test_flow_grpo_closes_half_the_gap(plain_finetuning_gain: float) -> None:
    model, states, mask = setup()
    reference = copy.deepcopy(model).requires_grad_(False)
    config = FlowGRPOConfig(group_size=6, num_steps=4, noise_level=0.7, kl_beta=0.0, timestep_fraction=0.5,
                            guidance_scale=1.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(2)
    initial = evaluate(model, states, mask)
    for _ in range(UPDATES):
        losses = grpo_update(model.train(), reference, reward, states, mask, ["a", "b"], LATENT, config, 1.0,
                             generator)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    final = evaluate(model, states, mask)
    assert final - initial >= 0.5 * (0.0 - initial), (initial, final)
    assert final - initial > plain_finetuning_gain


def test_diffusion_nft_closes_half_the_gap(plain_finetuning_gain: float) -> None:
    model, states, mask = setup()
    source = torch.randn(2, *LATENT, generator=torch.Generator().manual_seed(3))
    old = copy.deepcopy(model).requires_grad_(False)
    config = DiffusionNFTConfig(group_size=6, num_steps=4, beta=1.0, ema_max=0.5, ema_ramp=0.05)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(2)
    initial = evaluate(model, states, mask, [source])
    for update in range(1, UPDATES + 1):
        losses = nft_update(model.train(), old, advantage, states, mask, ["a", "b"], [source], LATENT, config, 1.0,
                            generator)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        ema_update(old, model, ema_decay(update, config))
    final = evaluate(model, states, mask, [source])
    assert final - initial >= 0.5 * (0.0 - initial), (initial, final)
    assert final - initial > plain_finetuning_gain

