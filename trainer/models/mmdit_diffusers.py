"""The MMDiT as a diffusers model: `save_pretrained` / `from_pretrained` with a `config.json`.

Kept apart from `trainer.models.mmdit` so that module stays importable with torch alone. The class is the
plain `MMDiT` plus diffusers' mixins, so its state-dict keys are the plain module's: weights trained with
the plain module load here unchanged, and the other way round.
"""

from __future__ import annotations

from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from trainer.models.mmdit import MMDiT, MMDiTConfig


class MMDiTTransformerModel(MMDiT, ModelMixin, ConfigMixin):
    config_name = "config.json"
    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(self, hidden_size: int = 4096, num_layers: int = 40, num_heads: int = 32, mlp_ratio: float = 4.0,
                 in_channels: int = 16, out_channels: int = 16, patch_size: tuple[int, int, int] = (1, 2, 2),
                 text_dim: int = 4096, rope_axes_dim: tuple[int, int, int] = (16, 56, 56),
                 rope_theta: float = 10_000.0, timestep_freq_dim: int = 256, eps: float = 1e-6) -> None:
        MMDiT.__init__(self, MMDiTConfig(
            hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads, mlp_ratio=mlp_ratio,
            in_channels=in_channels, out_channels=out_channels, patch_size=tuple(patch_size), text_dim=text_dim,
            rope_axes_dim=tuple(rope_axes_dim), rope_theta=rope_theta, timestep_freq_dim=timestep_freq_dim, eps=eps))

    @classmethod
    def from_mmdit_config(cls, config: MMDiTConfig) -> MMDiTTransformerModel:
        return cls(**config.to_dict())
