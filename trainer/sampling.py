"""Euler flow sampler with classifier-free guidance, for text-to-image and editing.

Follows `trainer.objectives.flow_matching`: start from noise z0 at t = 0, step z += dt * v up to t = 1,
where the latent is data. The step grid is uniform in the noise level and then shifted exactly like the
training timesteps, so sampling spends its steps where training put its weight.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from trainer.objectives.flow_matching import shift_timesteps, unconditional_text


def samples_dir(out_dir: Path, checkpoint_tag: str) -> Path:
    """Where `python -m trainer sample` writes a checkpoint's grid by default: `<run.out_dir>/samples/<tag>/`
    holding `grid.png`, `sample-NNN.png` and `samples.json` (checkpoint, prompts, files, settings)."""
    return out_dir / "samples" / checkpoint_tag


def sampling_timesteps(num_steps: int, shift: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """`num_steps + 1` increasing times from 0 (noise) to 1 (data)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    return shift_timesteps(torch.linspace(0.0, 1.0, num_steps + 1, device=device), shift)


def guided_velocity(model: nn.Module, z: torch.Tensor, t: torch.Tensor, text_states: torch.Tensor,
                    text_mask: torch.Tensor, condition_latents: Sequence[torch.Tensor],
                    guidance_scale: float) -> torch.Tensor:
    if guidance_scale == 1.0:
        return model(z, t, text_states, text_mask, condition_latents=condition_latents)
    null_states, null_mask = unconditional_text(text_states, text_mask)
    # One forward pass over [conditional; unconditional]; the edit condition stays in both halves, so
    # guidance pushes along the instruction only.
    velocity = model(torch.cat([z, z]), torch.cat([t, t]), torch.cat([text_states, null_states]),
                     torch.cat([text_mask, null_mask]),
                     condition_latents=[torch.cat([c, c]) for c in condition_latents])
    conditional, unconditional = velocity.chunk(2)
    return unconditional + guidance_scale * (conditional - unconditional)


@torch.no_grad()
def euler_sample(model: nn.Module, noise: torch.Tensor, text_states: torch.Tensor, text_mask: torch.Tensor, *,
                 num_steps: int = 30, guidance_scale: float = 1.0, shift: float = 1.0,
                 condition_latents: Sequence[torch.Tensor] = ()) -> torch.Tensor:
    """Integrate from `noise` (t = 0) to a data latent (t = 1); returns `[B, C, F, H, W]`."""
    times = sampling_timesteps(num_steps, shift, noise.device)
    z = noise
    for t_now, t_next in zip(times[:-1], times[1:]):
        t = t_now.expand(z.shape[0]).to(z.dtype)
        velocity = guided_velocity(model, z, t, text_states, text_mask, condition_latents, guidance_scale)
        z = z + (t_next - t_now).to(z.dtype) * velocity
    return z


def sample_images(model: nn.Module, vae: Any, text_states: Sequence[torch.Tensor], *, latent_shape: Sequence[int],
                  seed: int = 0, num_steps: int = 30, guidance_scale: float = 4.0, shift: float = 1.0,
                  condition_latents: Sequence[torch.Tensor] = ()) -> list[Image.Image]:
    """One image per prompt (text features `[L_i, text_dim]`), same noise seed for every checkpoint.

    `latent_shape` is `[C, F, H, W]` of the bucket to generate; the latents are decoded by the Wan VAE.
    """
    from trainer.latents import decode_latents, tensor_to_image

    parameter = next(model.parameters())
    longest = max(states.shape[0] for states in text_states)
    padded = torch.zeros(len(text_states), longest, text_states[0].shape[1])
    mask = torch.zeros(len(text_states), longest, dtype=torch.bool)
    for row, states in enumerate(text_states):
        padded[row, :states.shape[0]], mask[row, :states.shape[0]] = states, True
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(len(text_states), *latent_shape, generator=generator)
    latents = euler_sample(model, noise.to(parameter), padded.to(parameter), mask.to(parameter.device),
                           num_steps=num_steps, guidance_scale=guidance_scale, shift=shift,
                           condition_latents=[c.to(parameter) for c in condition_latents])
    return [tensor_to_image(pixels) for pixels in decode_latents(vae, latents.float()).cpu()]


def image_grid(images: Sequence[Image.Image], columns: int) -> Image.Image:
    """Images of one size tiled row by row (the per-checkpoint fixed-prompt grid of the report)."""
    width, height = images[0].size
    columns = min(columns, len(images))
    rows = -(-len(images) // columns)
    grid = Image.new("RGB", (columns * width, rows * height), (255, 255, 255))
    for index, image in enumerate(images):
        grid.paste(image, ((index % columns) * width, (index // columns) * height))
    return grid
