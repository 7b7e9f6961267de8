"""Shots and frames (report 5.1.3): shot boundaries, uniform sampling inside each shot, sharpness.

- Shot detection runs PySceneDetect's detectors on small copies of every decoded frame (`detection_width`
  wide): `content` (HSV + edge difference between neighbouring frames against a fixed threshold),
  `adaptive` (the same score against a rolling average, steadier under camera motion) or `transnetv2`
  (PySceneDetect's TransNetV2 detector on an ONNX export loaded from `model_path`; a missing path is a
  one-line config error). A shot is a half-open frame range [start, end): a cut at frame 48 of 96 frames
  gives shots (0, 48) and (48, 96).
- Detection is streamed: a detector may report a cut up to its lag (`event_buffer_length`, the flash
  filter's `min_scene_len`, TransNetV2's windows) after the frame, so frames wait in a delay line that long
  and leave it with their final shot. Only frames on the sampling grid are kept, so memory is the delay line
  plus the sampled frames, whatever the video's length.
- Sampling: frames at `sample_fps` from the start of each shot (every frame when the video is slower).
- Sharpness: variance of the Laplacian of the sampled frame's grey levels. A frame is blurred below
  max(`min_sharpness`, `relative_sharpness` x the median of its own video's sampled frames): the relative
  part adapts to each video's content (a foggy landscape is softer than a street), the floor removes frames
  that are blurred everywhere in a video whose median is blurred too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

# TransNetV2 predicts over windows of 100 frames advanced by 50 and reports a batch after every 100 frames,
# so a cut is known at most this many frames after it happened (its PySceneDetect detector declares no lag).
TRANSNET_MAX_LAG_FRAMES = 200


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContentDetectorConfig(_Config):
    kind: Literal["content"] = "content"
    threshold: float = Field(default=27.0, gt=0)  # PySceneDetect's default content score for a cut
    min_scene_len: int = Field(default=8, ge=1)  # frames; a cut closer than this to the last one is merged


class AdaptiveDetectorConfig(_Config):
    kind: Literal["adaptive"] = "adaptive"
    adaptive_threshold: float = Field(default=3.0, gt=0)
    window_width: int = Field(default=2, ge=1)
    min_content_val: float = Field(default=15.0, ge=0)
    min_scene_len: int = Field(default=8, ge=1)


class TransNetV2DetectorConfig(_Config):
    kind: Literal["transnetv2"] = "transnetv2"
    model_path: str  # the ONNX export of TransNetV2 (input uint8 [batch, 100, 27, 48, 3], output "output")
    threshold: float = Field(default=0.5, gt=0, lt=1)
    min_scene_len: int = Field(default=8, ge=1)

    @field_validator("model_path")
    @classmethod
    def _exists(cls, path: str) -> str:
        if not Path(path).is_file():
            raise ValueError(f"TransNetV2 model {path} is not a file (an ONNX export of TransNetV2)")
        return path


ShotDetectorConfig = Annotated[ContentDetectorConfig | AdaptiveDetectorConfig | TransNetV2DetectorConfig,
                               Field(discriminator="kind")]


class FrameSamplingConfig(_Config):
    detector: ShotDetectorConfig = ContentDetectorConfig()
    detection_width: int = Field(default=96, ge=16)  # frames are shrunk to this width for shot detection
    sample_fps: float = Field(default=4.0, gt=0)  # frames kept per second of each shot
    image_max_side: int = Field(default=512, ge=16)  # sampled frames are stored (and scored) at this size
    relative_sharpness: float = Field(default=0.35, ge=0, le=1)  # x the video's median sharpness
    min_sharpness: float = Field(default=20.0, ge=0)  # absolute floor on the variance of the Laplacian


def make_detector(config: ContentDetectorConfig | AdaptiveDetectorConfig | TransNetV2DetectorConfig) -> Any:
    from scenedetect import AdaptiveDetector, ContentDetector

    if isinstance(config, ContentDetectorConfig):
        return ContentDetector(threshold=config.threshold, min_scene_len=config.min_scene_len)
    if isinstance(config, AdaptiveDetectorConfig):
        return AdaptiveDetector(adaptive_threshold=config.adaptive_threshold, window_width=config.window_width,
                                min_content_val=config.min_content_val, min_scene_len=config.min_scene_len)
    from scenedetect.detectors.transnet_v2 import TransnetV2Detector

    return TransnetV2Detector(model_path=config.model_path, threshold=config.threshold,
                              min_scene_len=config.min_scene_len, onnx_providers=["CPUExecutionProvider"])


def detector_lag(config: ContentDetectorConfig | AdaptiveDetectorConfig | TransNetV2DetectorConfig,
                 detector: Any) -> int:
    """Frames by which a cut may be reported late: the detector's own buffer plus its flash filter."""
    lag = detector.event_buffer_length + config.min_scene_len
    return lag + TRANSNET_MAX_LAG_FRAMES if isinstance(config, TransNetV2DetectorConfig) else lag


def shots_from_cuts(cuts: Iterable[int], frame_count: int) -> list[tuple[int, int]]:
    """Half-open [start, end) shots of a video of `frame_count` frames cut before each frame in `cuts`."""
    bounds = [0] + sorted({cut for cut in cuts if 0 < cut < frame_count}) + [frame_count]
    return [(start, end) for start, end in zip(bounds, bounds[1:])] if frame_count else []


def on_sampling_grid(offset: int, step: float) -> bool:
    """Whether the frame `offset` frames into its shot is one of round(k * step), k = 0, 1, ..."""
    return round(round(offset / step) * step) == offset


def sharpness(grey: np.ndarray) -> float:
    """Variance of the Laplacian of a uint8 grey image: high where there are sharp edges, near 0 when blurred.
    The 3x3 Laplacian of uint8 levels lies within +-1020, so int16 holds it exactly and is filtered at half the
    cost of float64; the variance is then taken in float64 as before."""
    if grey.dtype != np.uint8:
        raise ValueError(f"sharpness: a uint8 grey image, got {grey.dtype}")
    return float(cv2.Laplacian(grey, cv2.CV_16S).astype(np.float64).var())


def sharpness_threshold(scores: Iterable[float], relative: float, floor: float) -> float:
    """The video's own blur threshold: max(floor, relative x the median of its frames' sharpness)."""
    values = list(scores)
    return max(floor, relative * float(np.median(values))) if values else floor


@dataclass
class SampledFrame:
    """One frame kept by sampling, at its stored size."""

    index: int  # decode order
    timestamp_s: float
    shot_id: int
    rgb: np.ndarray
    grey: np.ndarray
    sharpness: float


@dataclass(frozen=True)
class DecodedFrame:
    """What the decoder hands over: the frame's index and time, a small BGR copy for the detector, and a
    callable that converts the full frame only when it is sampled."""

    index: int
    timestamp_s: float
    detection_bgr: np.ndarray
    to_rgb: Any  # () -> HxWx3 uint8 RGB at the stored size


@dataclass
class ShotsAndFrames:
    shots: list[tuple[int, int]]
    frames: list[SampledFrame]
    frame_count: int


def track_shots(decoded: Iterable[DecodedFrame], fps: Fraction, config: FrameSamplingConfig) -> ShotsAndFrames:
    """Detect shots over every decoded frame and keep the frames on each shot's sampling grid (one pass)."""
    from scenedetect import FrameTimecode

    detector = make_detector(config.detector)
    lag = detector_lag(config.detector, detector)
    step = max(1.0, float(fps) / config.sample_fps)
    cuts: list[int] = []
    waiting: deque[DecodedFrame] = deque()
    sampled: list[SampledFrame] = []

    def release(frame: DecodedFrame) -> None:
        shot_start = max((cut for cut in cuts if cut <= frame.index), default=0)
        if on_sampling_grid(frame.index - shot_start, step):
            rgb = frame.to_rgb()
            grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            shot_id = sum(1 for cut in cuts if cut <= frame.index)
            sampled.append(SampledFrame(frame.index, frame.timestamp_s, shot_id, rgb, grey, sharpness(grey)))

    def add_cuts(found: list) -> None:
        for timecode in found:
            cut = timecode.frame_num
            if waiting and cut < waiting[0].index:
                raise RuntimeError(f"shot detector reported a cut at frame {cut} after the frame left the delay "
                                   f"line ({lag} frames); its lag is larger than declared")
            cuts.append(cut)

    frame_count = 0
    last = None
    for frame in decoded:
        last = FrameTimecode(frame.index, fps=fps)
        add_cuts(detector.process_frame(last, frame.detection_bgr))
        waiting.append(frame)
        frame_count = frame.index + 1
        while waiting and waiting[0].index < frame.index - lag:
            release(waiting.popleft())
    if last is not None:
        add_cuts(detector.post_process(last))
    while waiting:
        release(waiting.popleft())
    return ShotsAndFrames(shots_from_cuts(cuts, frame_count), sampled, frame_count)


def split_sharp(frames: list[SampledFrame], config: FrameSamplingConfig) -> tuple[float, list[bool]]:
    """The video's blur threshold and, per frame, whether it is sharp enough to keep."""
    threshold = sharpness_threshold((f.sharpness for f in frames), config.relative_sharpness, config.min_sharpness)
    return threshold, [frame.sharpness >= threshold for frame in frames]


def iter_shot_frames(frames: list[SampledFrame]) -> Iterator[list[SampledFrame]]:
    """The frames of each shot in order (frames come sorted by index, so shots are contiguous)."""
    current: list[SampledFrame] = []
    for frame in frames:
        if current and frame.shot_id != current[-1].shot_id:
            yield current
            current = []
        current.append(frame)
    if current:
        yield current
