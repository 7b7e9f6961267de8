"""decode_image: decode, normalise and measure every image; basic size and darkness thresholds.

Stored bytes: the original file when it is already a plain 8-bit RGB JPEG/PNG/WebP shown as stored, so
no quality is lost; otherwise the normalised RGB pixels re-encoded as PNG (lossless), so every consumer
downstream sees the same pixels without re-applying the normalisation rules. `md5`/`sha256` stay those of
the original file (exact-duplicate detection across sources).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import cv2
import pyarrow as pa
from PIL import Image
from pydantic import Field

from data_engine.ops.image_decode import DecodedImage, DecodePolicy, DecodeReject, decode_image
from data_engine.ops.image_stats import basic_image_stats
from data_engine.curation.presets import PresetConfig
from data_engine.stage import REJECT_COLUMN, REJECT_DETAIL_COLUMN, Resources, Stage, register_stage, stored_threshold

_STORED_AS_IS = ("JPEG", "PNG", "WEBP")
STAT_COLUMNS = ("brightness", "contrast", "entropy", "saturation", "sharpness")


class DecodeImageConfig(PresetConfig):
    preset_op = "decode_image"
    max_pixels: int = Field(default=89_478_485, gt=0)
    max_file_bytes: int = Field(default=64 * 2**20, gt=0)
    animated: Literal["reject", "first_frame"] = "reject"
    # Thresholds (decisions, re-appliable by `pipelines redecide`); 0 disables each.
    min_side: int = Field(default=0, ge=0)  # keep when min(width, height) > min_side
    max_aspect_ratio: float = Field(default=0.0, ge=0)  # keep when long side / short side <= this
    min_brightness: float = Field(default=0.0, ge=0, le=255)  # mean luma below this is "too dark"


@register_stage
class DecodeImageStage(Stage[DecodeImageConfig]):
    op = "decode_image"
    Config = DecodeImageConfig
    default_resources = Resources(num_cpus=1, batch_size=32)
    decision_reasons = frozenset({"too_small", "aspect_ratio", "too_dark"})
    threshold_fields = frozenset({"min_side", "max_aspect_ratio", "min_brightness"})

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (
            pa.field("source_format", pa.string()),
            pa.field("source_mode", pa.string()),
            pa.field("extension_mismatch", pa.bool_()),
            pa.field("reencoded", pa.bool_()),
        ) + tuple(pa.field(name, pa.float32()) for name in STAT_COLUMNS)

    def replaced_columns(self) -> tuple[str, ...]:
        return ("image_bytes", "image_format", "width", "height", "md5", "sha256")

    def setup(self) -> None:
        cv2.setNumThreads(1)  # one worker per core; OpenCV's own threads would oversubscribe it
        self.policy = DecodePolicy(max_pixels=self.config.max_pixels, max_file_bytes=self.config.max_file_bytes,
                                   animated=self.config.animated)

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        rows = [self._process_one(data, name) for data, name in
                zip(batch.column("image_bytes").to_pylist(), batch.column("upstream_id").to_pylist())]
        return {name: [row.get(name) for row in rows] for name in self.result_columns()}

    def _process_one(self, data: bytes | None, name: str) -> dict[str, Any]:
        result = decode_image(data or b"", name=name, policy=self.policy)
        if isinstance(result, DecodeReject):
            # The bytes cannot become an image under any threshold, so they are not kept.
            return {"image_bytes": None, REJECT_COLUMN: result.reason, REJECT_DETAIL_COLUMN: result.detail}
        stored, stored_format, reencoded = self._stored_bytes(data, result)
        return {
            "image_bytes": stored, "image_format": stored_format, "width": result.width, "height": result.height,
            "md5": result.md5, "sha256": result.sha256, "source_format": result.format,
            "source_mode": result.mode_before, "extension_mismatch": result.extension_mismatch,
            "reencoded": reencoded, **basic_image_stats(result.rgb),
        }

    @staticmethod
    def _stored_bytes(data: bytes, decoded: DecodedImage) -> tuple[bytes, str, bool]:
        as_is = (decoded.format in _STORED_AS_IS and decoded.mode_before == "RGB" and decoded.n_frames == 1
                 and not decoded.orientation_applied and not decoded.alpha_composited)
        if as_is:
            return data, decoded.format, False
        buffer = io.BytesIO()
        Image.fromarray(decoded.rgb).save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue(), "PNG", True

    def decide(self, scores: pa.Table) -> list[str | None]:
        config = self.config
        min_brightness = stored_threshold(config.min_brightness, scores.schema.field("brightness").type)
        decisions: list[str | None] = []
        for width, height, brightness in zip(scores.column("width").to_pylist(), scores.column("height").to_pylist(),
                                             scores.column("brightness").to_pylist()):
            short, long = sorted((width, height))
            if config.min_side and short <= config.min_side:
                decisions.append("too_small")
            elif config.max_aspect_ratio and long / short > config.max_aspect_ratio:
                decisions.append("aspect_ratio")
            elif brightness < min_brightness:
                decisions.append("too_dark")
            else:
                decisions.append(None)
        return decisions
