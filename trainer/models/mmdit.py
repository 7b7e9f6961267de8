"""The dual-stream MMDiT of JoyAI-Image (report 2.2, Table 1), as a plain torch module.

Layout of one forward pass:
- image latents `[B, 16, F, H, W]` (Wan 2.1 VAE, F frames) are cut into 1x2x2 patches -> image tokens;
  edit conditions (clean source-image latents) are patchified the same way and appended to the image
  tokens, each with its own RoPE frame index (target frames 0..F-1, condition i at F + i) so the model can
  tell them apart; only the target tokens are returned.
- text conditioning: the input of the MLLM's final norm (its last hidden state, unnormed) `[B, L, text_dim]`,
  projected to the hidden size, with a boolean mask `[B, L]` (True = real token, right padded).
- every block keeps separate weights for the image and the text stream (modulation table, q/k/v, per-head
  q/k RMSNorm, output projection, MLP) and runs one joint attention over [image tokens, text tokens].
  The last block's text output is never read, so its text stream is pre-only (as SD3's last block): it
  gives keys and values to the image tokens and owns no query, output projection, MLP or their modulation.
- WanX modulation: the timestep embedding goes through one shared projection to 6 vectors (shift, scale,
  gate for attention and for the MLP); each stream of each block adds its own learned table to them.
- MRoPE (report 2.2, replacing Qwen-Image's MSRoPE): 3-axis RoPE over (frame, row, column) with head-dim
  sections [16, 56, 56] and theta 10000 on every token. Image tokens take their grid position (target
  frames 0..F-1, conditions after them); text tokens follow the image as in Qwen2-VL's MRoPE: text token j
  sits at (s + j, s + j, s + j) with s = 1 + the largest image position on any axis. Every score then
  depends on relative positions only: shifting all positions by a common offset changes nothing.

Imports torch and `trainer.models.attention` only: the GPU benchmark runs it on a bare PyTorch machine.
`trainer.models.mmdit_diffusers` wraps it as a diffusers model for `save_pretrained` / `from_pretrained`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from trainer.models.attention import attention


@dataclass(frozen=True)
class MMDiTConfig:
    hidden_size: int = 4096
    num_layers: int = 40
    num_heads: int = 32
    mlp_ratio: float = 4.0
    in_channels: int = 16
    out_channels: int = 16
    patch_size: tuple[int, int, int] = (1, 2, 2)  # (frames, rows, columns) per token
    text_dim: int = 4096
    rope_axes_dim: tuple[int, int, int] = (16, 56, 56)  # head-dim split over (frame, row, column)
    rope_theta: float = 10_000.0
    timestep_freq_dim: int = 256
    eps: float = 1e-6

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch_size", tuple(self.patch_size))
        object.__setattr__(self, "rope_axes_dim", tuple(self.rope_axes_dim))
        if self.hidden_size % self.num_heads:
            raise ValueError(f"MMDiTConfig.hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if sum(self.rope_axes_dim) != self.head_dim or any(d % 2 for d in self.rope_axes_dim):
            raise ValueError(f"MMDiTConfig.rope_axes_dim {self.rope_axes_dim} must be even and sum to head_dim "
                             f"{self.head_dim}")
        if len(self.patch_size) != 3:
            raise ValueError(f"MMDiTConfig.patch_size must be (frames, rows, columns), got {self.patch_size}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def mlp_dim(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)

    def to_dict(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


# Table 1 for `16b`; `1b` keeps the 128-wide heads and [16, 56, 56] RoPE split for the GPU benchmark;
# `tiny` runs in milliseconds on a CPU for tests and the demo.
PRESETS: dict[str, MMDiTConfig] = {
    "16b": MMDiTConfig(),
    "1b": MMDiTConfig(hidden_size=2048, num_layers=10, num_heads=16),
    "tiny": MMDiTConfig(hidden_size=128, num_layers=2, num_heads=4, text_dim=64, rope_axes_dim=(8, 12, 12)),
}


def preset_config(name: str, **overrides) -> MMDiTConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown MMDiT preset {name!r}; choose from {', '.join(PRESETS)}")
    return MMDiTConfig(**(asdict(PRESETS[name]) | overrides))


# ---------------------------------------------------------------- building blocks


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise and scale in float32, hand back the input's dtype: under bf16 autocast q/k must stay bf16
        # like v, or the attention kernels see mixed dtypes.
        normed = x.float() * torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (normed * self.weight.float()).to(x.dtype)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of t in [0, 1], scaled to [0, 1000] so the frequencies cover the usual range."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = 1000.0 * t.float()[:, None] * freqs[None, :]
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


def rope_angles(positions: torch.Tensor, axes_dim: Sequence[int], theta: float) -> torch.Tensor:
    """Rotation angles `[tokens, head_dim / 2]` for integer positions `[tokens, 3]` (frame, row, column).

    Each axis owns a contiguous block of `axes_dim[a] / 2` rotation pairs of the head dimension.
    """
    blocks = []
    for axis, dim in enumerate(axes_dim):
        freqs = theta ** (-torch.arange(0, dim, 2, device=positions.device, dtype=torch.float64) / dim)
        blocks.append(positions[:, axis, None].double() * freqs[None, :])
    return torch.cat(blocks, dim=-1).float()


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs (x[2i], x[2i+1]) of `x` `[B, tokens, heads, head_dim]` by `angles`."""
    pairs = x.float().unflatten(-1, (-1, 2))
    cos, sin = angles.cos()[None, :, None, :], angles.sin()[None, :, None, :]
    real, imag = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([real * cos - imag * sin, real * sin + imag * cos], dim=-1)
    return rotated.flatten(-2).to(x.dtype)


def grid_positions(frames: int, rows: int, columns: int, frame_offset: int, device: torch.device) -> torch.Tensor:
    """(frame, row, column) of every token of a patch grid in row-major order, `[tokens, 3]`."""
    grid = torch.meshgrid(torch.arange(frames, device=device) + frame_offset, torch.arange(rows, device=device),
                          torch.arange(columns, device=device), indexing="ij")
    return torch.stack([axis.flatten() for axis in grid], dim=-1)


def with_text_positions(image_positions: torch.Tensor, text_tokens: int) -> torch.Tensor:
    """[image positions; text positions] `[image + text tokens, 3]`: text token j at (s + j) on all three
    axes, s = 1 + the largest image position (MRoPE's rule for text after vision)."""
    start = int(image_positions.max()) + 1 if image_positions.numel() else 0
    text = torch.arange(start, start + text_tokens, device=image_positions.device)[:, None].expand(-1, 3)
    return torch.cat([image_positions, text])


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class StreamLayers(nn.Module):
    """The weights one stream (image or text) owns inside a dual-stream block."""

    def __init__(self, config: MMDiTConfig) -> None:
        super().__init__()
        hidden = config.hidden_size
        # WanX modulation table: added to the shared timestep projection, one row per shift/scale/gate.
        self.modulation = nn.Parameter(torch.randn(1, 6, hidden) / hidden**0.5)
        self.norm_attn = nn.LayerNorm(hidden, eps=config.eps, elementwise_affine=False)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.q_norm = RMSNorm(config.head_dim, config.eps)
        self.k_norm = RMSNorm(config.head_dim, config.eps)
        self.attn_out = nn.Linear(hidden, hidden)
        self.norm_mlp = nn.LayerNorm(hidden, eps=config.eps, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(hidden, config.mlp_dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(config.mlp_dim, hidden))
        self.num_heads = config.num_heads

    def modulation_terms(self, time_projection: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Six `[B, 1, hidden]` vectors: attention shift, scale, gate, MLP shift, scale, gate."""
        return tuple((self.modulation + time_projection).unsqueeze(2).unbind(dim=1))

    def qkv_heads(self, x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = modulate(self.norm_attn(x), shift, scale)
        q, k, v = self.qkv(h).unflatten(-1, (3, self.num_heads, -1)).unbind(dim=2)
        return self.q_norm(q), self.k_norm(k), v

    def finish(self, x: torch.Tensor, attended: torch.Tensor, terms: tuple[torch.Tensor, ...]) -> torch.Tensor:
        _, _, gate_attn, shift_mlp, scale_mlp, gate_mlp = terms
        x = x + gate_attn * self.attn_out(attended.flatten(-2))
        return x + gate_mlp * self.mlp(modulate(self.norm_mlp(x), shift_mlp, scale_mlp))


class KeyValueStreamLayers(nn.Module):
    """A pre-only text stream (the last block): keys and values for the image tokens to attend to, nothing
    else, since the text output of the last block is discarded (SD3's `context_pre_only`)."""

    def __init__(self, config: MMDiTConfig) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.modulation = nn.Parameter(torch.randn(1, 2, hidden) / hidden**0.5)  # attention shift, scale
        self.norm_attn = nn.LayerNorm(hidden, eps=config.eps, elementwise_affine=False)
        self.kv = nn.Linear(hidden, 2 * hidden)
        self.k_norm = RMSNorm(config.head_dim, config.eps)
        self.num_heads = config.num_heads

    def kv_heads(self, x: torch.Tensor, time_projection: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift, scale = (self.modulation + time_projection[:, :2]).unsqueeze(2).unbind(dim=1)
        k, v = self.kv(modulate(self.norm_attn(x), shift, scale)).unflatten(-1, (2, self.num_heads, -1)).unbind(dim=2)
        return self.k_norm(k), v


class DualStreamBlock(nn.Module):
    def __init__(self, config: MMDiTConfig, text_pre_only: bool = False) -> None:
        super().__init__()
        self.image = StreamLayers(config)
        self.text = KeyValueStreamLayers(config) if text_pre_only else StreamLayers(config)

    def forward(self, image: torch.Tensor, text: torch.Tensor, time_projection: torch.Tensor,
                rope: torch.Tensor, key_mask: torch.Tensor | None, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
        """`rope`: angles of every token, [image tokens, text tokens]. A pre-only text stream returns `text`
        unchanged (nothing reads it)."""
        image_terms = self.image.modulation_terms(time_projection)
        qi, ki, vi = self.image.qkv_heads(image, *image_terms[:2])
        pre_only = isinstance(self.text, KeyValueStreamLayers)
        if pre_only:
            kt, vt = self.text.kv_heads(text, time_projection)
            # The attention kernels take one token layout for q, k and v: the text rows of q are zeros and
            # their outputs are dropped.
            qt = torch.zeros_like(kt)
        else:
            text_terms = self.text.modulation_terms(time_projection)
            qt, kt, vt = self.text.qkv_heads(text, *text_terms[:2])
        q = apply_rope(torch.cat([qi, qt], dim=1), rope)
        k = apply_rope(torch.cat([ki, kt], dim=1), rope)
        attended = attention(q, k, torch.cat([vi, vt], dim=1), key_mask, backend)
        image_attended, text_attended = attended.split([image.shape[1], text.shape[1]], dim=1)
        image = self.image.finish(image, image_attended, image_terms)
        if pre_only:
            return image, text
        return image, self.text.finish(text, text_attended, text_terms)


# ---------------------------------------------------------------- the model


class MMDiT(nn.Module):
    def __init__(self, config: MMDiTConfig) -> None:
        super().__init__()
        self.mmdit_config = config
        hidden = config.hidden_size
        patch_volume = math.prod(config.patch_size)
        self.patch_embed = nn.Linear(config.in_channels * patch_volume, hidden)
        self.text_embed = nn.Sequential(nn.Linear(config.text_dim, hidden), nn.GELU(approximate="tanh"),
                                        nn.Linear(hidden, hidden))
        self.time_embed = nn.Sequential(nn.Linear(config.timestep_freq_dim, hidden), nn.SiLU(),
                                        nn.Linear(hidden, hidden))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))
        self.blocks = nn.ModuleList(DualStreamBlock(config, text_pre_only=index == config.num_layers - 1)
                                    for index in range(config.num_layers))
        self.head_modulation = nn.Parameter(torch.randn(1, 2, hidden) / hidden**0.5)
        self.head_norm = nn.LayerNorm(hidden, eps=config.eps, elementwise_affine=False)
        self.head = nn.Linear(hidden, config.out_channels * patch_volume)
        # A zero output layer starts every prediction at 0, so early steps do not fight a random field.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.attention_backend = "auto"
        self.gradient_checkpointing = False

    # -- patches

    def patchify(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, C, F, H, W] -> [B, tokens, C * pf * ph * pw], tokens in (frame, row, column) order."""
        pf, ph, pw = self.mmdit_config.patch_size
        b, c, f, h, w = latents.shape
        if f % pf or h % ph or w % pw:
            raise ValueError(f"latent grid {f}x{h}x{w} is not divisible by patch size {self.mmdit_config.patch_size}")
        x = latents.reshape(b, c, f // pf, pf, h // ph, ph, w // pw, pw)
        return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, (f // pf) * (h // ph) * (w // pw), c * pf * ph * pw)

    def unpatchify(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        pf, ph, pw = self.mmdit_config.patch_size
        gf, gh, gw = grid
        b = tokens.shape[0]
        x = tokens.reshape(b, gf, gh, gw, self.mmdit_config.out_channels, pf, ph, pw)
        return x.permute(0, 4, 1, 5, 2, 6, 3, 7).reshape(b, self.mmdit_config.out_channels, gf * pf, gh * ph, gw * pw)

    def token_grid(self, latents: torch.Tensor) -> tuple[int, int, int]:
        return tuple(size // patch for size, patch in zip(latents.shape[2:], self.mmdit_config.patch_size))

    # -- forward

    def forward(self, latents: torch.Tensor, timestep: torch.Tensor, text_states: torch.Tensor,
                text_mask: torch.Tensor | None = None,
                condition_latents: Sequence[torch.Tensor] = ()) -> torch.Tensor:
        """Velocity prediction `[B, out_channels, F, H, W]` for the target `latents` at `timestep` `[B]`.

        `condition_latents`: clean latents `[B, C, F_i, H_i, W_i]` of source images for editing.
        """
        batch = latents.shape[0]
        grid = self.token_grid(latents)
        image = self.patch_embed(self.patchify(latents))
        positions = [grid_positions(*grid, frame_offset=0, device=latents.device)]
        frame_offset = grid[0]
        for condition in condition_latents:
            condition_grid = self.token_grid(condition)
            image = torch.cat([image, self.patch_embed(self.patchify(condition.to(latents.dtype)))], dim=1)
            positions.append(grid_positions(*condition_grid, frame_offset=frame_offset, device=latents.device))
            frame_offset += condition_grid[0]
        text = self.text_embed(text_states.to(image.dtype))
        all_positions = with_text_positions(torch.cat(positions), text.shape[1])
        rope = rope_angles(all_positions, self.mmdit_config.rope_axes_dim, self.mmdit_config.rope_theta)
        key_mask = None
        if text_mask is not None:
            image_mask = torch.ones(batch, image.shape[1], dtype=torch.bool, device=latents.device)
            key_mask = torch.cat([image_mask, text_mask.bool()], dim=1)

        time_embedding = self.time_embed(timestep_embedding(timestep, self.mmdit_config.timestep_freq_dim).to(image.dtype))
        time_projection = self.time_projection(time_embedding).unflatten(1, (6, -1))
        for block in self.blocks:
            if self.gradient_checkpointing and self.training:
                image, text = checkpoint(block, image, text, time_projection, rope, key_mask, self.attention_backend,
                                         use_reentrant=False)
            else:
                image, text = block(image, text, time_projection, rope, key_mask, self.attention_backend)

        target_tokens = image[:, :math.prod(grid)]
        shift, scale = (self.head_modulation + time_embedding[:, None, :]).unsqueeze(2).unbind(dim=1)
        out = self.head(modulate(self.head_norm(target_tokens), shift, scale))
        return self.unpatchify(out, grid)


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def stream_matmul_parameters(model: MMDiT) -> tuple[int, int]:
    """Linear-layer weights an image token and a text token pass through, over all blocks (for FLOP
    estimates: the last block's text stream computes keys and values only)."""
    def linear_weights(module: nn.Module) -> int:
        return sum(layer.weight.numel() for layer in module.modules() if isinstance(layer, nn.Linear))

    return (sum(linear_weights(block.image) for block in model.blocks),
            sum(linear_weights(block.text) for block in model.blocks))
