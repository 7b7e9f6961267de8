"""Latent and text-feature caching for the MMDiT, so that training never runs the VAE or the MLLM.

- Aspect-ratio buckets: for a stage resolution R (208, 512, 1024) every bucket has about R*R pixels, sides
  multiples of 16 (VAE /8 then patch /2) and an aspect ratio within `max_aspect_ratio`; an image goes to
  the bucket nearest its aspect ratio (in log space), is resized to cover it and centre-cropped.
- Latents: the Wan 2.1 VAE (diffusers `AutoencoderKLWan`) encodes the image as a one-frame video; the
  posterior mode is normalised with the VAE's own per-channel `latents_mean` / `latents_std`, which is what
  the MMDiT trains on and what `decode_latents` undoes.
- Text features: the input of the MLLM's final norm (a forward pre-hook on it: exact whatever the last
  layers add, e.g. Qwen3-VL's deepstack visual features), for the caption wrapped in the chat template; for
  edits, the source image plus the instruction. The MLLM sees the source image at most
  `text_image_max_pixels` (384x384: 144 image tokens), so a 1024p source leaves room for the instruction;
  a prompt longer than `max_text_tokens` is never cut: the row is rejected (`text_too_long`).
- Storage: tensors as float16 bytes plus their shape, in columns added to the upstream rows (stage
  `cache_latents`); upstream caption / edit / multi-view shards are read by the `caption_shards` /
  `edit_shards` / `multiview_collages` readers (on the base of `data_engine/upstream.py`). The job is
  `pipelines/jobs/cache_latents.yaml`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import torch
from PIL import Image
from pydantic import Field

from data_engine.model_refs import resolve_model_path
from data_engine.readers import register_reader
from data_engine.editing.triplet import EDIT_TRIPLET
from data_engine.schemas import CAPTION, MULTIVIEW_SAMPLE
from data_engine.stage import (REJECT_COLUMN, REJECT_DETAIL_COLUMN, Resources, Stage, StageConfig, StageUnavailable,
                               register_stage)
from data_engine.upstream import UpstreamShardsReader

PIXEL_MULTIPLE = 16  # VAE downsamples by 8, the MMDiT patch by 2 more

# ---------------------------------------------------------------- aspect-ratio buckets


def aspect_ratio_buckets(resolution: int, max_aspect_ratio: float = 4.0,
                         multiple: int = PIXEL_MULTIPLE) -> list[tuple[int, int]]:
    """(width, height) buckets of about resolution**2 pixels, sides multiples of `multiple`, sorted by aspect."""
    if resolution % multiple:
        raise ValueError(f"resolution {resolution} is not a multiple of {multiple}")
    area = resolution * resolution
    buckets = set()
    for width in range(multiple, int(resolution * math.sqrt(max_aspect_ratio)) + multiple, multiple):
        height = max(multiple, round(area / width / multiple) * multiple)
        if max(width / height, height / width) <= max_aspect_ratio:
            buckets.add((width, height))
    return sorted(buckets, key=lambda size: size[0] / size[1])


def nearest_bucket(width: int, height: int, buckets: Sequence[tuple[int, int]]) -> tuple[int, int]:
    target = math.log(width / height)
    return min(buckets, key=lambda size: abs(math.log(size[0] / size[1]) - target))


def resize_to_bucket(image: Image.Image, bucket: tuple[int, int]) -> Image.Image:
    """Scale to cover the bucket, then crop its centre."""
    width, height = bucket
    scale = max(width / image.width, height / image.height)
    resized = image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale))),
                           Image.BICUBIC)
    left, top = (resized.width - width) // 2, (resized.height - height) // 2
    return resized.crop((left, top, left + width, top + height))


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB image -> [3, H, W] in [-1, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1)


def tensor_to_image(pixels: torch.Tensor) -> Image.Image:
    array = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(array)


# ---------------------------------------------------------------- tensors <-> columns


def tensor_to_bytes(tensor: torch.Tensor) -> tuple[bytes, list[int]]:
    return tensor.detach().to(torch.float16).contiguous().numpy().tobytes(), list(tensor.shape)


def tensor_from_bytes(data: bytes, shape: Sequence[int]) -> torch.Tensor:
    array = np.frombuffer(data, dtype=np.float16)
    if array.size != math.prod(shape):
        raise ValueError(f"stored tensor has {array.size} values, its shape {list(shape)} needs {math.prod(shape)}")
    return torch.from_numpy(array.reshape(tuple(shape)).astype(np.float32))


# ---------------------------------------------------------------- models


def load_vae(path: str, device: torch.device | str = "cpu") -> Any:
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan.from_pretrained(resolve_model_path(path)).to(device).eval()


def latent_normalisation(vae: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(vae.config.latents_mean, device=device).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=device).view(1, -1, 1, 1, 1)
    return mean, std


@torch.no_grad()
def encode_images(vae: Any, pixels: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [-1, 1] -> normalised latents [B, 16, 1, H/8, W/8]."""
    device = next(vae.parameters()).device
    latents = vae.encode(pixels.to(device)[:, :, None]).latent_dist.mode()
    mean, std = latent_normalisation(vae, device)
    return (latents - mean) / std


@torch.no_grad()
def decode_latents(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """Normalised latents [B, 16, 1, h, w] -> pixels [B, 3, 8h, 8w] in [-1, 1]."""
    device = next(vae.parameters()).device
    mean, std = latent_normalisation(vae, device)
    return vae.decode(latents.to(device) * std + mean).sample[:, :, 0].clamp(-1, 1)


TEXT_IMAGE_MAX_PIXELS = 384 * 384  # the source image as the MLLM sees it for edit features: 144 tokens


class PromptTooLong(ValueError):
    """A prompt (with its image) has more tokens than the text features may hold; cutting it would drop
    instruction tokens."""


class TextFeatureEncoder:
    """Qwen3-VL features as the MMDiT reads them: the input of the final norm (the last hidden state, unnormed)."""

    def __init__(self, path: str, device: torch.device | str = "cpu", max_tokens: int = 512,
                 image_max_pixels: int = TEXT_IMAGE_MAX_PIXELS) -> None:
        from transformers import AutoModelForImageTextToText

        from trainer.models.qwen_vl import load_processor

        model_dir = resolve_model_path(path)
        self.processor = load_processor(model_dir, None, image_max_pixels)
        size = self.processor.image_processor.size  # the minimum may not exceed the cap
        size["shortest_edge"] = min(size["shortest_edge"], image_max_pixels)
        self.model = AutoModelForImageTextToText.from_pretrained(model_dir).to(device).eval()
        self.device = device
        self.max_tokens = max_tokens
        self._captured: list[torch.Tensor] = []
        self.model.model.language_model.norm.register_forward_pre_hook(self._capture)

    @property
    def hidden_size(self) -> int:
        return self.model.config.text_config.hidden_size

    def _capture(self, _module: Any, inputs: tuple[torch.Tensor, ...]) -> None:
        self._captured.append(inputs[0])

    @torch.no_grad()
    def encode(self, text: str, image: Image.Image | None = None) -> torch.Tensor:
        """[tokens, hidden] for one prompt (with its image for edits); `PromptTooLong` past `max_tokens`."""
        content: list[dict[str, Any]] = [{"type": "image", "image": image}] if image is not None else []
        content.append({"type": "text", "text": text})
        inputs = self.processor.apply_chat_template([{"role": "user", "content": content}], tokenize=True,
                                                    return_dict=True, return_tensors="pt")
        tokens = int(inputs["input_ids"].shape[1])
        if tokens > self.max_tokens:
            merge = self.processor.image_processor.merge_size
            image_tokens = int(inputs["image_grid_thw"].prod()) // merge**2 if image is not None else 0
            raise PromptTooLong(f"{tokens} prompt tokens ({image_tokens} of them image) > max_text_tokens "
                                f"{self.max_tokens}")
        self._captured.clear()
        self.model.model(**{key: value.to(self.device) for key, value in inputs.items()})
        return self._captured[-1][0].float().cpu()


# ---------------------------------------------------------------- readers of upstream shards


@register_reader
class CaptionShardsReader(UpstreamShardsReader, kind="caption_shards", schema=CAPTION):
    """Caption rows as they are (the input of latent caching and of rebalancing)."""


@register_reader
class EditShardsReader(UpstreamShardsReader, kind="edit_shards", schema=EDIT_TRIPLET):
    """Edit triplets as they are (the input of edit latent caching)."""


@register_reader
class MultiviewCollagesReader(UpstreamShardsReader, kind="multiview_collages", schema=CAPTION,
                              upstream_schema=MULTIVIEW_SAMPLE):
    """Multi-view samples (report 4.1.5) as caption rows: the collage of views is the image to generate, the
    dense and structured captions are its prompts (report 4.2.1 mixes them into the 1024p stage)."""

    def carry(self, source: dict[str, Any]) -> dict[str, Any]:
        collage = source["collage"] or {}
        captions = [(key, text) for key, text in (("extended_long/en", source["dense_caption"]),
                                                  ("structured/en", source["structured_caption"])) if text]
        return {"license": source["license"], "image_bytes": collage.get("bytes"), "image_uri": collage.get("uri"),
                "width": collage.get("width"), "height": collage.get("height"), "sha256": collage.get("sha256"),
                "captions": captions, "reject_reason": source["reject_reason"], "reject_stage": source["reject_stage"],
                "reject_detail": source["reject_detail"]}


# ---------------------------------------------------------------- edit pairs


@dataclass(frozen=True)
class EditPair:
    """What the trainer takes from an edit row: the instruction and the encoded source and target images."""

    instruction: str
    source_bytes: bytes | None
    target_bytes: bytes | None
    row_id: str = ""

    def source_image(self) -> Image.Image:
        return Image.open(io.BytesIO(self.source_bytes or b"")).convert("RGB")


def edit_pair(row: dict[str, Any]) -> EditPair:
    """The trainer's one reader of an edit row (edit latent caching, the DiffusionNFT sample grid): every edit
    source (spatial-edit renders, text edits, video pairs) writes `edit_triplet` rows, so a change of the triplet
    format is one edit here."""
    return EditPair(row.get("instruction") or "", (row.get("source_image") or {}).get("bytes"),
                    (row.get("target_image") or {}).get("bytes"), row.get("id") or "")


def read_edit_pairs(path: Path, limit: int) -> list[EditPair]:
    """The first `limit` accepted edit pairs of an edit-triplet shard directory, in file order."""
    from trainer.config import DatasetSpec
    from trainer.data import iter_accepted

    samples = iter_accepted(DatasetSpec(name="edits", path=path), (EDIT_TRIPLET.name,), "all")
    return [edit_pair(sample.row) for sample, _ in zip(samples, range(limit))]


# ---------------------------------------------------------------- the caching stage

TEXT_FEATURE = pa.struct([("key", pa.string()), ("tokens", pa.int32()), ("states", pa.binary())])
LATENT_COLUMNS = ("latent", "latent_shape", "bucket_width", "bucket_height", "text_features", "text_dim",
                  "source_latent", "source_latent_shape")


class CacheLatentsConfig(StageConfig):
    vae: str = "tiny:wan_vae"  # a local diffusers directory of the Wan 2.1 VAE, or tiny:wan_vae
    text_encoder: str = "tiny:qwen3vl"  # a local Qwen3-VL directory, or tiny:qwen3vl
    kind: Literal["t2i", "edit"] = "t2i"  # caption rows (image + captions) or edit triplets
    resolution: int = Field(default=512, gt=0)  # bucket area is resolution**2 (208, 512, 1024 stages)
    max_aspect_ratio: float = Field(default=4.0, ge=1.0)
    # Caption keys ("<type>/<lang>") whose features are cached; None caches every caption of the row, so the
    # trainer can still sample caption type and language.
    caption_keys: tuple[str, ...] | None = None
    max_text_tokens: int = Field(default=512, gt=0)  # a longer prompt rejects the row (`text_too_long`)
    text_image_max_pixels: int = Field(default=TEXT_IMAGE_MAX_PIXELS, gt=0)  # edits: the source as the MLLM sees it
    device: str = "cpu"
    torch_threads: int | None = Field(default=None, gt=0)


@register_stage
class CacheLatentsStage(Stage[CacheLatentsConfig]):
    op = "cache_latents"
    Config = CacheLatentsConfig
    default_resources = Resources(num_cpus=1, batch_size=8, concurrency=1)
    uses_model = True

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (
            pa.field("latent", pa.binary()),  # float16, C-order, shape latent_shape = [C, F, H, W]
            pa.field("latent_shape", pa.list_(pa.int32())),
            pa.field("bucket_width", pa.int32()),  # pixels of the bucket the image was fitted to
            pa.field("bucket_height", pa.int32()),
            pa.field("text_features", pa.list_(TEXT_FEATURE)),  # float16 [tokens, text_dim] per prompt
            pa.field("text_dim", pa.int32()),
            pa.field("source_latent", pa.binary()),  # edits: the source image, fitted to the same bucket
            pa.field("source_latent_shape", pa.list_(pa.int32())),
        )

    def preflight(self) -> None:
        from trainer.tiny_models import TinyModelsError

        for field in ("vae", "text_encoder"):
            try:
                path = resolve_model_path(getattr(self.config, field))
            except TinyModelsError as exc:
                raise StageUnavailable(f"{self.name}.{field}: {exc}") from None
            if not path.is_dir():
                raise StageUnavailable(f"{self.name}.{field}: {path} is not a directory")

    def setup(self) -> None:
        if self.config.torch_threads:
            torch.set_num_threads(self.config.torch_threads)
        self.buckets = aspect_ratio_buckets(self.config.resolution, self.config.max_aspect_ratio)
        self.vae = load_vae(self.config.vae, self.config.device)
        self.text_encoder = TextFeatureEncoder(self.config.text_encoder, self.config.device,
                                               self.config.max_text_tokens, self.config.text_image_max_pixels)

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        rows = [self._process_one(row) for row in batch.to_pylist()]
        names = LATENT_COLUMNS + (REJECT_COLUMN, REJECT_DETAIL_COLUMN)
        return {name: [row.get(name) for row in rows] for name in names}

    def _process_one(self, row: dict[str, Any]) -> dict[str, Any]:
        if self.config.kind == "t2i":
            target_bytes, source_bytes = row["image_bytes"], None
            prompts = self._caption_prompts(row)
        else:
            pair = edit_pair(row)
            target_bytes, source_bytes = pair.target_bytes, pair.source_bytes
            prompts = {"instruction": pair.instruction} if pair.instruction else {}
        if not prompts:
            return {REJECT_COLUMN: "no_text", REJECT_DETAIL_COLUMN: "no caption/instruction to condition on"}
        try:
            target = Image.open(io.BytesIO(target_bytes or b"")).convert("RGB")
            source = Image.open(io.BytesIO(source_bytes)).convert("RGB") if self.config.kind == "edit" else None
        except (OSError, ValueError, TypeError) as exc:
            return {REJECT_COLUMN: "undecodable_image", REJECT_DETAIL_COLUMN: str(exc)}
        bucket = nearest_bucket(target.width, target.height, self.buckets)
        pixels = [image_to_tensor(resize_to_bucket(target, bucket))]
        if source is not None:
            pixels.append(image_to_tensor(resize_to_bucket(source, bucket)))
        latents = encode_images(self.vae, torch.stack(pixels)).cpu()
        latent, latent_shape = tensor_to_bytes(latents[0])
        result = {"latent": latent, "latent_shape": latent_shape, "bucket_width": bucket[0],
                  "bucket_height": bucket[1], "text_dim": self.text_encoder.hidden_size}
        if source is not None:
            result["source_latent"], result["source_latent_shape"] = tensor_to_bytes(latents[1])
        features = []
        for key, text in prompts.items():
            try:
                states = self.text_encoder.encode(text, source)
            except PromptTooLong as exc:
                return {REJECT_COLUMN: "text_too_long", REJECT_DETAIL_COLUMN: f"{key}: {exc}"}
            features.append({"key": key, "tokens": states.shape[0], "states": tensor_to_bytes(states)[0]})
        result["text_features"] = features
        return result

    def _caption_prompts(self, row: dict[str, Any]) -> dict[str, str]:
        captions = dict(row.get("captions") or [])
        keys = self.config.caption_keys if self.config.caption_keys is not None else sorted(captions)
        return {key: captions[key] for key in keys if captions.get(key)}


# ---------------------------------------------------------------- synthetic shards for tests and the tiny config

SHAPE_COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40)}
SHAPES = ("square", "circle")


def draw_shape_image(colour: str, shape: str, size: tuple[int, int]) -> Image.Image:
    from PIL import ImageDraw

    image = Image.new("RGB", size, (235, 235, 235))
    width, height = size
    box = (width // 4, height // 4, 3 * width // 4, 3 * height // 4)
    draw = ImageDraw.Draw(image)
    (draw.rectangle if shape == "square" else draw.ellipse)(box, fill=SHAPE_COLOURS[colour])
    return image


def synthetic_caption_rows(rows: int, size: tuple[int, int]) -> pa.Table:
    """Caption-schema rows of drawn shapes whose captions name colour and shape (a learnable pairing)."""
    records = []
    for number in range(rows):
        colour = list(SHAPE_COLOURS)[number % len(SHAPE_COLOURS)]
        shape = SHAPES[(number // len(SHAPE_COLOURS)) % len(SHAPES)]
        buffer = io.BytesIO()
        draw_shape_image(colour, shape, size).save(buffer, format="PNG")
        records.append({
            "id": f"synthetic-shapes-{number:06d}", "source_dataset": "synthetic_shapes",
            "upstream_id": str(number), "license": "generated", "image_bytes": buffer.getvalue(),
            "image_format": "PNG", "width": size[0], "height": size[1],
            "captions": [("short/en", f"a {colour} {shape}"), ("long/en", f"a {colour} {shape} on a grey background")],
        })
    return pa.Table.from_pylist(records, schema=CAPTION.arrow())


def write_synthetic_latent_shards(out_dir: Path, rows: int, *, resolution: int = 64, shard_rows: int = 32,
                                  vae: str = "tiny:wan_vae", text_encoder: str = "tiny:qwen3vl") -> None:
    """Drawn-shape images through the real `cache_latents` stage (no Ray) into caption + latent shards."""
    from data_engine.output_dir import standalone_manifest, write_manifest
    from data_engine.shards import write_shard
    from data_engine.stage_runner import apply_stage

    stage = CacheLatentsStage(CacheLatentsConfig(vae=vae, text_encoder=text_encoder, resolution=resolution,
                                                 torch_threads=1))
    stage.setup()
    schema = CAPTION.arrow(stage.output_fields())
    out_dir.mkdir(parents=True, exist_ok=True)
    table = synthetic_caption_rows(rows, (resolution, resolution))
    shard_rows_written = []
    for shard_id, start in enumerate(range(0, rows, shard_rows)):
        processed, stats = apply_stage(stage, table.slice(start, shard_rows), batch_size=8)
        write_shard(out_dir, shard_id, processed.select(schema.names).cast(schema), [stats.to_json()])
        shard_rows_written.append(processed.num_rows)
    write_manifest(out_dir, standalone_manifest(
        CAPTION, "synthetic_t2i_latents",
        {"rows": rows, "resolution": resolution, "vae": vae, "text_encoder": text_encoder}, shard_rows_written))
