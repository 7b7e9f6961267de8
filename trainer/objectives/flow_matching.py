"""Flow matching for the MMDiT (report 4.2.1), text-to-image and editing.

Convention (the report's, kept by `trainer.sampling`):
- z0 is Gaussian NOISE, z1 is the clean DATA latent;
- z_t = t * z1 + (1 - t) * z0, so t = 0 is pure noise and t = 1 is data;
- the model predicts the velocity z1 - z0 and the sampler integrates dz/dt = v from t = 0 to t = 1.
This is the reverse of the SD3/diffusers scheduler convention (sigma = 1 is noise there).

Timesteps: logit-normal, t = sigmoid(u), u ~ N(mean, std), then shifted towards noise for larger images
(more tokens keep more signal at a given noise level, so the same t is "easier"): with noise level
s = 1 - t, s' = shift * s / (1 + (shift - 1) * s). The shift is either fixed or grows with the image token
count, log-linearly between (base_tokens, base_shift) and (max_tokens, max_shift).

Editing: the batch carries clean source-image latents as `condition_latents`; they are never noised and
the loss covers only the target's tokens (the model returns only those).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from data_engine.shards import atomic_write_json
from trainer.captions import draw_caption_key
from trainer.core import ExampleError, Sample, StepTotals, Task, TaskConfig, TrainerError, register_task
from trainer.latents import tensor_from_bytes
from trainer.models.mmdit import preset_config


class FlowMatchingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    logit_mean: float = 0.0
    logit_std: float = Field(default=1.0, gt=0)
    shift_mode: Literal["fixed", "resolution"] = "resolution"
    shift: float = Field(default=1.0, gt=0)  # used when shift_mode is "fixed"
    base_tokens: int = Field(default=256, gt=0)  # 256 tokens = a 256x256 image (VAE /8, patch /2)
    max_tokens: int = Field(default=4096, gt=0)  # 4096 tokens = a 1024x1024 image
    base_shift: float = Field(default=math.exp(0.5), gt=0)
    max_shift: float = Field(default=math.exp(1.15), gt=0)
    # Share of samples trained with the text condition dropped, so classifier-free guidance has an
    # unconditional prediction to push away from.
    text_dropout: float = Field(default=0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _token_range(self) -> FlowMatchingConfig:
        if self.max_tokens <= self.base_tokens:
            raise ValueError(f"flow_matching.max_tokens ({self.max_tokens}) must exceed base_tokens ({self.base_tokens})")
        return self


@dataclass
class MMDiTBatch:
    """Cached inputs of one bucket: every latent in the batch has the same shape."""

    latents: torch.Tensor  # [B, C, F, H, W] clean data latents (z1)
    text_states: torch.Tensor  # [B, L, text_dim] MLLM final-norm inputs (trainer/latents.py)
    text_mask: torch.Tensor  # [B, L] bool, True = real token, right padded
    condition_latents: Sequence[torch.Tensor] = field(default_factory=tuple)  # clean source images (editing)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> MMDiTBatch:
        return MMDiTBatch(self.latents.to(device, dtype), self.text_states.to(device, dtype),
                          self.text_mask.to(device), tuple(c.to(device, dtype) for c in self.condition_latents))


def image_token_count(latent_shape: Sequence[int], patch_size: Sequence[int] = (1, 2, 2)) -> int:
    """Tokens of one latent `[C, F, H, W]` (or `[B, C, F, H, W]`) after patchifying."""
    return math.prod(size // patch for size, patch in zip(latent_shape[-3:], patch_size))


def resolution_shift(num_tokens: int, config: FlowMatchingConfig) -> float:
    if config.shift_mode == "fixed":
        return config.shift
    fraction = (num_tokens - config.base_tokens) / (config.max_tokens - config.base_tokens)
    log_shift = math.log(config.base_shift) + fraction * (math.log(config.max_shift) - math.log(config.base_shift))
    return math.exp(log_shift)


def shift_timesteps(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Move t towards noise (t = 0) for shift > 1, in the noise level s = 1 - t."""
    noise_level = 1 - t
    return 1 - shift * noise_level / (1 + (shift - 1) * noise_level)


def sample_timesteps(batch_size: int, num_tokens: int, config: FlowMatchingConfig,
                     generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    u = torch.randn(batch_size, generator=generator, device=device) * config.logit_std + config.logit_mean
    return shift_timesteps(torch.sigmoid(u), resolution_shift(num_tokens, config))


def interpolate(noise: torch.Tensor, data: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """z_t = t * z1 + (1 - t) * z0 with z0 = noise, z1 = data; t `[B]` broadcast over the latent dims."""
    t = t.view(-1, *([1] * (data.dim() - 1))).to(data.dtype)
    return t * data + (1 - t) * noise


def velocity_target(noise: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    return data - noise


def drop_text(batch: MMDiTBatch, keep: torch.Tensor) -> MMDiTBatch:
    """Replace the text condition of samples where `keep` is False by the unconditional (empty) one."""
    text_states = batch.text_states * keep.view(-1, 1, 1).to(batch.text_states.dtype)
    text_mask = batch.text_mask & keep.view(-1, 1)
    return MMDiTBatch(batch.latents, text_states, text_mask, batch.condition_latents)


def unconditional_text(text_states: torch.Tensor, text_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The empty condition used by text dropout and by classifier-free guidance: zero states, no real tokens."""
    return torch.zeros_like(text_states), torch.zeros_like(text_mask, dtype=torch.bool)


def flow_matching_loss(model: nn.Module, batch: MMDiTBatch, config: FlowMatchingConfig,
                       generator: torch.Generator | None = None,
                       timesteps: torch.Tensor | None = None,
                       noise: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean squared velocity error over the target latents; `timesteps` / `noise` fix the draws (evaluation).

    Metrics stay detached tensors so that logging them does not force a device sync every step.
    """
    data = batch.latents
    device = data.device
    if noise is None:
        noise = torch.randn(data.shape, generator=generator, device=device, dtype=data.dtype)
    if timesteps is None:
        timesteps = sample_timesteps(data.shape[0], image_token_count(data.shape), config, generator, device)
    if config.text_dropout > 0 and model.training:
        keep = torch.rand(data.shape[0], generator=generator, device=device) >= config.text_dropout
        batch = drop_text(batch, keep)
    prediction = model(interpolate(noise, data, timesteps), timesteps, batch.text_states, batch.text_mask,
                       condition_latents=batch.condition_latents)
    loss = (prediction.float() - velocity_target(noise, data).float()).pow(2).mean()
    return loss, {"t_mean": timesteps.detach().mean()}


# ---------------------------------------------------------------- the trainer task over cached latent shards


class SampleConfig(BaseModel):
    """The fixed-prompt sample grid written per checkpoint (`Task.write_samples`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompts: list[str] = Field(default_factory=lambda: ["a red square", "a blue circle", "a green square",
                                                        "a yellow circle"], min_length=1)
    # Edits: one source image file per prompt (the prompts are then instructions); empty for text-to-image.
    source_images: list[str] = Field(default_factory=list)
    # Edits from shards instead: the first `edit_count` accepted rows of this edit-triplet directory give the
    # instructions and source images (trainer.latents.read_edit_pairs); `prompts` is then unused.
    edit_shards: Path | None = None
    edit_count: int = Field(default=4, ge=1)
    width: int = Field(default=64, gt=0)
    height: int = Field(default=64, gt=0)
    num_steps: int = Field(default=30, ge=1)
    guidance_scale: float = Field(default=4.0, ge=1.0)
    seed: int = 0
    columns: int = Field(default=4, ge=1)

    @model_validator(mode="after")
    def _sources_match_prompts(self) -> SampleConfig:
        if self.source_images and len(self.source_images) != len(self.prompts):
            raise ValueError(f"sample.source_images has {len(self.source_images)} files for "
                             f"{len(self.prompts)} prompts")
        if self.width % 16 or self.height % 16:
            raise ValueError(f"sample.width/height {self.width}x{self.height} must be multiples of 16")
        return self


class MMDiTTaskConfig(TaskConfig):
    preset: str = "tiny"  # trainer.models.mmdit.PRESETS
    init_from: str | None = None  # a diffusers directory written by `python -m trainer export` to start from
    attention_backend: str = "auto"
    flow: FlowMatchingConfig = Field(default_factory=FlowMatchingConfig)
    eval_timesteps: int = Field(default=8, ge=1)  # fixed t grid of the held-out flow loss
    # Used only for sampling (training reads cached latents and features): local paths or tiny:<name>.
    vae: str = "tiny:wan_vae"
    text_encoder: str = "tiny:qwen3vl"
    sample: SampleConfig = Field(default_factory=SampleConfig)


@dataclass(frozen=True)
class LatentExample:
    latent: torch.Tensor  # [C, F, H, W]
    text_states: torch.Tensor  # [L, text_dim]
    source_latent: torch.Tensor | None  # [C, F, H, W] for edits
    prompt: str = ""  # the text behind text_states: the drawn caption, or the edit instruction (RL rewards read it)
    seed: int = 0  # the sample's seed (RL rollouts draw their noise from it, whatever the rank layout)


def cached_prompt_text(row: dict[str, Any], key: str) -> str:
    """The text whose features `cache_latents` stored under `key`: a caption (`<type>/<lang>`) of a caption row,
    or the instruction of an edit row (key `instruction`)."""
    if key == "instruction":
        return row.get("instruction") or ""
    return dict(row.get("captions") or []).get(key, "")


class MMDiTFlowTask(Task):
    """Flow matching on rows cached by the `cache_latents` stage (text-to-image: caption shards)."""

    config_model = MMDiTTaskConfig
    config: MMDiTTaskConfig

    def build_model(self) -> nn.Module:
        from trainer.models.mmdit_diffusers import MMDiTTransformerModel

        if self.config.init_from:
            model = MMDiTTransformerModel.from_pretrained(self.config.init_from)
        else:
            model = MMDiTTransformerModel.from_mmdit_config(preset_config(self.config.preset))
        model.attention_backend = self.config.attention_backend
        self.text_dim = model.mmdit_config.text_dim
        return model

    @classmethod
    def meta_model(cls, config: MMDiTTaskConfig) -> nn.Module:
        from trainer.models.mmdit_diffusers import MMDiTTransformerModel

        with torch.device("meta"):
            if config.init_from and (Path(config.init_from) / "config.json").is_file():
                return MMDiTTransformerModel.from_config(MMDiTTransformerModel.load_config(config.init_from))
            return MMDiTTransformerModel.from_mmdit_config(preset_config(config.preset))

    def enable_activation_checkpointing(self, model: nn.Module) -> None:
        model.gradient_checkpointing = True

    def prepare(self, sample: Sample) -> LatentExample:
        row = sample.row
        if row.get("latent") is None or not row.get("text_features"):
            raise ExampleError("not_cached: the row has no latent or text features; run the cache_latents job")
        if row.get("text_dim") != self.text_dim:
            raise TrainerError(f"{sample.dataset}: cached text_dim {row.get('text_dim')} != the model's text_dim "
                               f"{self.text_dim} (task.config.preset {self.config.preset})")
        features = {feature["key"]: feature for feature in row["text_features"]}
        key = draw_caption_key(list(features), row.get("caption_sampling"), sample.seed, row["id"])
        feature = features[key]
        source = None
        if row.get("source_latent") is not None:
            source = tensor_from_bytes(row["source_latent"], row["source_latent_shape"])
        return LatentExample(tensor_from_bytes(row["latent"], row["latent_shape"]),
                             tensor_from_bytes(feature["states"], (feature["tokens"], row["text_dim"])), source,
                             cached_prompt_text(row, key), sample.seed)

    def plan_micro_batches(self, examples: Sequence[LatentExample]) -> list[list[int]]:
        """Micro-batches of one bucket each (same latent shape), buckets in order of first appearance."""
        by_shape: dict[tuple, list[int]] = {}
        for index, example in enumerate(examples):
            shape = (tuple(example.latent.shape),
                     None if example.source_latent is None else tuple(example.source_latent.shape))
            by_shape.setdefault(shape, []).append(index)
        size = self.micro_batch_size
        return [indices[start:start + size] for indices in by_shape.values() for start in range(0, len(indices), size)]

    def collate(self, examples: Sequence[LatentExample]) -> dict[str, Any]:
        longest = max(example.text_states.shape[0] for example in examples)
        text_states = torch.zeros(len(examples), longest, examples[0].text_states.shape[1])
        text_mask = torch.zeros(len(examples), longest, dtype=torch.bool)
        for row, example in enumerate(examples):
            text_states[row, :example.text_states.shape[0]] = example.text_states
            text_mask[row, :example.text_states.shape[0]] = True
        batch = {"latents": torch.stack([example.latent for example in examples]), "text_states": text_states,
                 "text_mask": text_mask, "prompts": [example.prompt for example in examples],
                 "seeds": torch.tensor([example.seed for example in examples], dtype=torch.int64)}
        if examples[0].source_latent is not None:
            batch["source_latents"] = torch.stack([example.source_latent for example in examples])
        return batch

    @staticmethod
    def as_batch(batch: dict[str, Any]) -> MMDiTBatch:
        sources = (batch["source_latents"],) if "source_latents" in batch else ()
        return MMDiTBatch(batch["latents"], batch["text_states"], batch["text_mask"], sources)

    def compute_loss(self, model: Any, batch: dict[str, Any], totals: StepTotals | None = None) -> dict[str, Any]:
        # A mean over the micro-batch's samples: a step's micro-batches hold micro_batch_size samples each
        # (a bucket's last one fewer), so the per-sample weight is close to uniform without step totals.
        loss, metrics = flow_matching_loss(model, self.as_batch(batch), self.config.flow)
        return {"loss": loss, "t_mean": metrics["t_mean"]}

    def evaluate(self, model: Any, samples: Iterable[Sample]) -> dict[str, Any]:
        """Held-out flow loss on a fixed grid of t and fixed noise per sample (no text dropout)."""
        model.eval()
        grid = (torch.arange(self.config.eval_timesteps) + 0.5) / self.config.eval_timesteps
        losses = []
        with torch.no_grad():
            for sample in samples:
                batch = self.to_device(self.collate([self.prepare(sample)]))
                mmdit_batch = self.as_batch(batch)
                count = len(grid)
                repeated = MMDiTBatch(mmdit_batch.latents.expand(count, *mmdit_batch.latents.shape[1:]),
                                      mmdit_batch.text_states.expand(count, -1, -1),
                                      mmdit_batch.text_mask.expand(count, -1),
                                      tuple(c.expand(count, *c.shape[1:]) for c in mmdit_batch.condition_latents))
                noise = torch.randn(repeated.latents.shape, generator=torch.Generator().manual_seed(sample.seed))
                loss, _ = flow_matching_loss(model, repeated, self.config.flow, timesteps=grid.to(repeated.latents),
                                             noise=noise.to(repeated.latents))
                losses.append(float(loss))
        if not losses:
            raise TrainerError(f"task {self.name}: no samples to evaluate")
        return {"flow_loss": sum(losses) / len(losses), "samples": len(losses)}

    def generate_images(self, model: nn.Module, prompts: Sequence[str],
                        sources: Sequence[Image.Image] = ()) -> list[Image.Image]:
        """One image per prompt at the configured sample settings (`task.config.sample`); edits: `sources` holds
        each prompt's source image, resized to the sample bucket and given as the condition latent."""
        from trainer.latents import (PromptTooLong, TextFeatureEncoder, encode_images, image_to_tensor, load_vae,
                                     resize_to_bucket)
        from trainer.sampling import sample_images

        settings = self.config.sample
        if sources and len(sources) != len(prompts):
            raise TrainerError(f"{len(prompts)} prompts but {len(sources)} source images")
        device = next(model.parameters()).device
        # Loaded once per task and device: an evaluation loop generates one image per call.
        if getattr(self, "_sampling_models", (None,))[0] != device:
            self._sampling_models = (device, load_vae(self.config.vae, device),
                                     TextFeatureEncoder(self.config.text_encoder, device))
        _, vae, encoder = self._sampling_models
        bucket = (settings.width, settings.height)
        sources = [resize_to_bucket(image.convert("RGB"), bucket) for image in sources]
        try:
            features = [encoder.encode(prompt, sources[n] if sources else None) for n, prompt in enumerate(prompts)]
        except PromptTooLong as exc:
            raise TrainerError(f"task.config.sample.prompts: {exc}") from None
        conditions = [encode_images(vae, torch.stack([image_to_tensor(image) for image in sources]))] if sources else []
        latent_shape = (model.mmdit_config.in_channels, 1, settings.height // 8, settings.width // 8)
        return sample_images(model.eval(), vae, features, latent_shape=latent_shape, seed=settings.seed,
                             num_steps=settings.num_steps, guidance_scale=settings.guidance_scale,
                             shift=resolution_shift(image_token_count(latent_shape), self.config.flow),
                             condition_latents=conditions)

    def write_samples(self, model: nn.Module, out_dir: Path, checkpoint: str) -> Path:
        """Images for the configured prompts (edits: with their source images), their grid (`grid.png`,
        prompts row by row) and `samples.json` listing checkpoint, prompts and files; returns the grid."""
        from trainer.latents import read_edit_pairs
        from trainer.sampling import image_grid

        settings = self.config.sample
        if settings.edit_shards is not None:
            pairs = read_edit_pairs(settings.edit_shards, settings.edit_count)
            prompts, source_names = [pair.instruction for pair in pairs], [pair.row_id for pair in pairs]
            sources = [pair.source_image() for pair in pairs]
        else:
            prompts, source_names = settings.prompts, settings.source_images
            sources = [Image.open(path) for path in settings.source_images]
        images = self.generate_images(model, prompts, sources)
        out_dir.mkdir(parents=True, exist_ok=True)
        for number, image in enumerate(images):
            image.save(out_dir / f"sample-{number:03d}.png")
        grid_path = out_dir / "grid.png"
        image_grid(images, settings.columns).save(grid_path)
        atomic_write_json(out_dir / "samples.json", {
            "checkpoint": checkpoint, "grid": grid_path.name, "columns": min(settings.columns, len(images)),
            "samples": [{"prompt": prompt, "image": f"sample-{number:03d}.png",
                         "source_image": source_names[number] if source_names else None}
                        for number, prompt in enumerate(prompts)],
            "settings": settings.model_dump(mode="json", exclude={"prompts", "source_images"})})
        return grid_path


@register_task("mmdit_t2i")
class MMDiTTextToImageTask(MMDiTFlowTask):
    schema = "caption"


@register_task("mmdit_edit")
class MMDiTEditTask(MMDiTFlowTask):
    """Editing (report 5.2): the source image's clean latents are the condition tokens."""

    schema = "edit_triplet"

    def prepare(self, sample: Sample) -> LatentExample:
        example = super().prepare(sample)
        if example.source_latent is None:
            raise ExampleError("no_source: the edit row has no cached source_latent")
        return example
