"""Flow matching convention, timestep sampling, the Euler sampler, and the overfitting check."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.models.mmdit import MMDiT, preset_config
from trainer.objectives.flow_matching import (FlowMatchingConfig, MMDiTBatch, flow_matching_loss,
                                              image_token_count, interpolate, resolution_shift,
                                              sample_timesteps, shift_timesteps, velocity_target)
from trainer.sampling import euler_sample, sampling_timesteps


def test_interpolation_convention_noise_at_zero_data_at_one():
    noise, data = torch.randn(2, 16, 1, 4, 4), torch.randn(2, 16, 1, 4, 4)
    torch.testing.assert_close(interpolate(noise, data, torch.zeros(2)), noise)
    torch.testing.assert_close(interpolate(noise, data, torch.ones(2)), data)
    t = torch.tensor([0.25, 0.75])
    z_t = interpolate(noise, data, t)
    # moving along the target velocity for the remaining time lands exactly on the data
    torch.testing.assert_close(z_t + (1 - t).view(-1, 1, 1, 1, 1) * velocity_target(noise, data), data)


def test_resolution_shift_grows_with_tokens_and_moves_t_towards_noise():
    config = FlowMatchingConfig()
    assert resolution_shift(256, config) == pytest.approx(math.exp(0.5))
    assert resolution_shift(4096, config) == pytest.approx(math.exp(1.15))
    assert resolution_shift(1024, config) < resolution_shift(4096, config)
    t = torch.linspace(0.05, 0.95, 10)
    assert torch.all(shift_timesteps(t, 3.0) < t) and torch.all(shift_timesteps(t, 0.5) > t)
    assert shift_timesteps(torch.tensor([0.0, 1.0]), 3.0).tolist() == [0.0, 1.0]
    assert FlowMatchingConfig(shift_mode="fixed", shift=2.0).shift == resolution_shift(10, FlowMatchingConfig(
        shift_mode="fixed", shift=2.0))
    with pytest.raises(ValueError, match="max_tokens"):
        FlowMatchingConfig(base_tokens=100, max_tokens=50)


def test_logit_normal_timesteps_statistics():
    generator = torch.Generator().manual_seed(0)
    config = FlowMatchingConfig(shift_mode="fixed", shift=1.0, logit_mean=0.0, logit_std=1.0)
    t = sample_timesteps(20_000, 256, config, generator)
    assert 0 < float(t.min()) and float(t.max()) < 1
    logits = torch.log(t / (1 - t))
    assert float(logits.mean()) == pytest.approx(0.0, abs=0.03)
    assert float(logits.std()) == pytest.approx(1.0, abs=0.03)
    high_res = sample_timesteps(20_000, 4096, FlowMatchingConfig(), generator)
    assert float(high_res.mean()) < float(t.mean())  # larger images train at noisier t


def test_sampling_grid_runs_from_noise_to_data():
    times = sampling_timesteps(10, 3.0)
    assert times[0] == 0 and times[-1] == 1 and torch.all(times[1:] > times[:-1])
    with pytest.raises(ValueError, match="num_steps"):
        sampling_timesteps(0, 1.0)


def test_token_count():
    assert image_token_count((16, 1, 128, 128)) == 4096
    assert image_token_count((2, 16, 1, 26, 26)) == 169


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matrices: thread hand-offs cost more than they save, and the test machine's cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def overfit(one_thread):
    """The tiny MMDiT trained on 4 latents with distinct text features until it memorises them."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    data = torch.randn(4, 16, 1, 4, 4, generator=generator)
    text = torch.randn(4, 3, 64, generator=generator)
    batch = MMDiTBatch(data, text, torch.ones(4, 3, dtype=torch.bool))
    config = FlowMatchingConfig(shift_mode="fixed", shift=1.0, text_dropout=0.0)
    model = MMDiT(preset_config("tiny"))
    # One fixed set of (noise, t) draws, 16 per latent, measures the loss before and after training.
    repeats = 16
    eval_batch = MMDiTBatch(data.repeat(repeats, 1, 1, 1, 1), text.repeat(repeats, 1, 1),
                            batch.text_mask.repeat(repeats, 1))
    eval_noise = torch.randn(eval_batch.latents.shape, generator=generator)
    eval_t = sample_timesteps(eval_batch.latents.shape[0], 4, config, generator)

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(flow_matching_loss(model, eval_batch, config, timesteps=eval_t, noise=eval_noise)[0])

    initial = eval_loss()
    steps = 250
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    train_batch = MMDiTBatch(data.repeat(4, 1, 1, 1, 1), text.repeat(4, 1, 1), batch.text_mask.repeat(4, 1))
    model.train()
    for _ in range(steps):
        loss, _ = flow_matching_loss(model, train_batch, config, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval(), batch, initial, eval_loss()


def test_tiny_mmdit_overfits_to_under_5_percent(overfit):
    _, _, initial, final = overfit
    assert initial > 1.0  # |z1 - z0|^2 of unit-variance data and noise is about 2 at the zero-initialised start
    assert final < 0.05 * initial


def test_sampler_reproduces_training_latents(overfit):
    model, batch, _, _ = overfit
    noise = torch.randn(batch.latents.shape, generator=torch.Generator().manual_seed(7))
    samples = euler_sample(model, noise, batch.text_states, batch.text_mask, num_steps=30)
    relative_error = (samples - batch.latents).pow(2).mean(dim=(1, 2, 3, 4)) / batch.latents.pow(2).mean(
        dim=(1, 2, 3, 4))
    assert torch.all(relative_error < 0.1), relative_error
    # each text condition leads to its own latent, not to an average of the training set
    nearest = torch.cdist(samples.flatten(1), batch.latents.flatten(1)).argmin(dim=1)
    assert nearest.tolist() == [0, 1, 2, 3]


def test_guidance_scale_one_equals_plain_conditional(overfit):
    model, batch, _, _ = overfit
    noise = torch.randn(batch.latents.shape, generator=torch.Generator().manual_seed(8))
    plain = euler_sample(model, noise, batch.text_states, batch.text_mask, num_steps=4)
    guided = euler_sample(model, noise, batch.text_states, batch.text_mask, num_steps=4, guidance_scale=3.0)
    assert plain.shape == guided.shape and not torch.allclose(plain, guided)
