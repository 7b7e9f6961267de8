"""The `video_files` reader of the `video_pairs` job: videos -> shots -> sampled sharp frames -> candidate pairs.

Input forms:
- a directory: every file with one of `extensions` is one video (its relative path is its `video_id`);
- `procedural://N?seed=S`: N procedural videos (data_engine.editing.procedural_video) encoded with PyAV in
  `procedural_container` and decoded from memory like a file.
Decoding is PyAV's, one pass per video (`decode_threads` codec threads, 1 by default: one task per core).
Containers read: mp4, webm, mkv (`formats`); a file another extension lists (mov, avi) is `unsupported_format`.
Every video becomes rows (`video_pair` schema), one per candidate pair of sampled frames of one shot
(data_engine.editing.shots, data_engine.editing.pairs), plus:
- one rejected row for a video that yields nothing: `zero_length` (no bytes, or no frame decoded),
  `unreadable` (the container or stream cannot be opened: a truncated or corrupt file), `unsupported_format`,
  `no_video_stream`, `decode_error` (a frame fails mid-stream), `too_short` (fewer than `min_frames` frames or
  shorter than `min_duration_s`);
- one rejected row per sampled frame dropped as `blurred_frame`, with its sharpness and the video's threshold.
Each frame carries its video id, shot id and timestamp (the frame's presentation time in seconds).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import PurePosixPath
from typing import Any, Literal

import av
import cv2
import numpy as np
import pyarrow as pa
from av.video.reformatter import VideoReformatter
from pydantic import BaseModel, ConfigDict, Field

from data_engine.editing.pairs import PairingConfig, change_score, shot_pairs
from data_engine.editing.procedural_video import encode_video, procedural_spec
from data_engine.editing.shots import (DecodedFrame, FrameSamplingConfig, SampledFrame, ShotsAndFrames, iter_shot_frames,
                                       split_sharp, track_shots)
from data_engine.readers import (InputError, Reader, ReaderConfig, list_input_files, procedural_item, procedural_items,
                                 register_reader, row_id)
from data_engine.schemas import VIDEO_PAIR

SUPPORTED_FORMATS = (".mp4", ".webm", ".mkv")


class VideoError(Exception):
    """A video that yields no frames to pair; `reason` is the row's reject code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class ProceduralVideosConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    frames: int = Field(default=96, ge=1)
    width: int = Field(default=64, ge=16)
    height: int = Field(default=48, ge=16)
    fps: int = Field(default=24, ge=1)


class VideoFilesConfig(ReaderConfig):
    kind: Literal["video_files"] = "video_files"
    shard_rows: int = Field(default=4, gt=0)  # videos per shard (each yields many pair rows)
    extensions: tuple[str, ...] = (".mp4", ".webm", ".mkv", ".mov", ".avi")  # listed; only `formats` are read
    formats: tuple[Literal[".mp4", ".webm", ".mkv"], ...] = SUPPORTED_FORMATS
    decode_threads: int = Field(default=1, ge=1)
    min_frames: int = Field(default=8, ge=2)
    min_duration_s: float = Field(default=0.0, ge=0)
    sampling: FrameSamplingConfig = FrameSamplingConfig()
    pairing: PairingConfig = PairingConfig()
    procedural: ProceduralVideosConfig = ProceduralVideosConfig()
    procedural_container: Literal["mp4", "webm", "mkv"] = "mkv"


def _scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(2, round(width * scale)), max(2, round(height * scale))


def _decoded_frames(container: Any, stream: Any, fps: Fraction, config: VideoFilesConfig) -> Iterator[DecodedFrame]:
    sampling = config.sampling
    width, height = stream.codec_context.width, stream.codec_context.height
    detect_size = (sampling.detection_width, max(2, round(height * sampling.detection_width / width)))
    stored_size = _scaled_size(width, height, sampling.image_max_side)
    # One reformatter per output size keeps its swscale context (and filter tables) across frames, where
    # `frame.reformat` builds a new one per call: half the cost of the detection copy, the same pixels. One
    # thread each: PyAV's default (0, automatic) starts a thread pool per call, which made the detection copy
    # 4x slower and let one read task take more than its core.
    detection_scaler, stored_scaler = VideoReformatter(), VideoReformatter()
    for index, frame in enumerate(container.decode(stream)):
        timestamp = frame.time if frame.time is not None else index / float(fps)
        detection = detection_scaler.reformat(frame, width=detect_size[0], height=detect_size[1], format="bgr24",
                                              threads=1).to_ndarray()

        def to_rgb(frame: Any = frame) -> np.ndarray:
            return stored_scaler.reformat(frame, width=stored_size[0], height=stored_size[1], format="rgb24",
                                          threads=1).to_ndarray()

        yield DecodedFrame(index, float(timestamp), detection, to_rgb)


def read_video(source: str | bytes, name: str, config: VideoFilesConfig) -> ShotsAndFrames:
    """Shots and sampled frames of one video (a local path or the encoded bytes); VideoError when it yields none."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in config.formats:
        raise VideoError("unsupported_format", f"{suffix or 'no extension'} is not one of {list(config.formats)}")
    if (len(source) if isinstance(source, bytes) else os.path.getsize(source)) == 0:
        raise VideoError("zero_length", "the file is empty")
    try:
        container = av.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError("unreadable", f"{type(exc).__name__}: {exc}") from None
    with container:
        if not container.streams.video:
            raise VideoError("no_video_stream", f"container {container.format.name} has no video stream")
        stream = container.streams.video[0]
        stream.codec_context.thread_count = config.decode_threads
        fps = stream.average_rate or stream.guessed_rate
        if not stream.codec_context.width or not fps:
            raise VideoError("unreadable", f"stream 0 has no frame size or rate ({stream.codec_context.name})")
        try:
            found = track_shots(_decoded_frames(container, stream, Fraction(fps), config), Fraction(fps),
                                config.sampling)
        except av.error.FFmpegError as exc:
            raise VideoError("decode_error", f"{type(exc).__name__}: {exc}") from None
    if found.frame_count == 0:
        raise VideoError("zero_length", "no frame decoded")
    duration = found.frame_count / float(fps)
    if found.frame_count < config.min_frames or duration < config.min_duration_s:
        raise VideoError("too_short", f"{found.frame_count} frames, {duration:.3f} s; need {config.min_frames} "
                                      f"frames and {config.min_duration_s} s")
    return found


# Stored PNG (deflate level 0, no row filter): lossless, ~0.5 ms a 512x288 frame against ~15 ms at level 1,
# which was 40% of the job's time. The bytes are compressed once, by the shard's zstd Parquet codec: shards
# come out ~20% larger than with deflate level 1 (benchmarks/results/video_pairs.json notes).
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 0, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]


def encode_png(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), PNG_PARAMS)
    if not ok:
        raise ValueError(f"PNG encoding failed for a {rgb.shape} frame")
    return data.tobytes()


class _RowMaker:
    def __init__(self, config: VideoFilesConfig, video_id: str) -> None:
        self.config, self.video_id = config, video_id

    def row(self, suffix: str, **values: Any) -> dict[str, Any]:
        upstream_id = f"{self.video_id}#{suffix}"
        return {"id": row_id(self.config.source_dataset, upstream_id), "source_dataset": self.config.source_dataset,
                "upstream_id": upstream_id, "license": self.config.license, "video_id": self.video_id, **values}


def video_rows(found: ShotsAndFrames, video_id: str, config: VideoFilesConfig) -> list[dict[str, Any]]:
    """Pair rows of one video, plus a rejected row per blurred sampled frame."""
    make = _RowMaker(config, video_id)
    threshold, sharp = split_sharp(found.frames, config.sampling)
    rows = [make.row(f"frame{frame.index}", shot_id=frame.shot_id, source_frame_index=frame.index,
                     source_timestamp_s=frame.timestamp_s, source_sharpness=frame.sharpness,
                     sharpness_threshold=threshold, reject_reason="blurred_frame", reject_stage="read",
                     reject_detail=f"sharpness {frame.sharpness:.2f} < {threshold:.2f} (max of floor "
                                   f"{config.sampling.min_sharpness} and {config.sampling.relative_sharpness} x the "
                                   f"video's median)")
            for frame, keep in zip(found.frames, sharp) if not keep]
    kept = [frame for frame, keep in zip(found.frames, sharp) if keep]
    png: dict[int, bytes] = {}

    def encoded(frame: SampledFrame) -> bytes:
        if frame.index not in png:
            png[frame.index] = encode_png(frame.rgb)
        return png[frame.index]

    for shot_frames in iter_shot_frames(kept):
        for source, target in shot_pairs(shot_frames, config.pairing):
            rows.append(make.row(
                f"{source.index}-{target.index}", shot_id=source.shot_id, pair_id=f"{video_id}#{source.index}-"
                f"{target.index}", source_frame_index=source.index, target_frame_index=target.index,
                source_timestamp_s=source.timestamp_s, target_timestamp_s=target.timestamp_s,
                source_image=encoded(source), target_image=encoded(target), width=source.rgb.shape[1],
                height=source.rgb.shape[0], source_sharpness=source.sharpness, target_sharpness=target.sharpness,
                sharpness_threshold=threshold,
                change_score=change_score(source.grey, target.grey, config.pairing.pixel_delta)))
    return rows


@register_reader
class VideoFilesReader(Reader):
    kind = "video_files"
    Config = VideoFilesConfig
    schema = VIDEO_PAIR
    input_schemes = ("procedural",)

    def list_items(self, input_uri: str) -> list[str]:
        generated = procedural_items(input_uri)
        if generated is not None:
            return generated
        extensions = {e.lower() for e in self.config.extensions}
        items = list_input_files(self.location(input_uri), lambda name: PurePosixPath(name).suffix.lower() in extensions)
        if not items:
            raise InputError(f"input {input_uri!r}: no files with extensions {sorted(extensions)}")
        return items

    def item_bytes(self, input_uri: str, items: Sequence[str]) -> list[int] | None:
        if procedural_items(input_uri) is not None:
            return None
        root = self.location(input_uri)
        return [(root / item).size() for item in items]

    def _source(self, input_uri: str, item: str) -> tuple[str | bytes, str]:
        """The video to open (a local path, or bytes) and the name whose extension says its container."""
        generated = procedural_item(item)
        if generated is not None:
            seed, index = generated
            procedural = self.config.procedural
            spec = procedural_spec(seed, index, procedural.frames, procedural.width, procedural.height,
                                   procedural.fps)
            container = self.config.procedural_container
            return encode_video(spec, container), f"{item}.{container}"
        location = self.location(input_uri) / item
        return (str(location.local_path) if location.is_local else location.read_bytes()), item

    def read_items(self, input_uri: str, items: Sequence[str]) -> pa.Table:
        cv2.setNumThreads(1)  # one read task per core
        rows: list[dict[str, Any]] = []
        for item in items:
            try:
                source, name = self._source(input_uri, item)
                rows += video_rows(read_video(source, name, self.config), item, self.config)
            except (VideoError, OSError) as exc:
                reason = exc.reason if isinstance(exc, VideoError) else "unreadable"
                rows.append(_RowMaker(self.config, item).row("video", reject_reason=reason, reject_stage="read",
                                                             reject_detail=str(exc)))
        return pa.Table.from_pylist(rows, schema=self.schema.arrow())

