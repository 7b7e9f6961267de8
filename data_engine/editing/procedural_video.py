"""Short procedural videos with known content, encoded with PyAV: the demo's video input and the tests' ground truth.

Every video is a textured backdrop with a few coloured shapes that move at constant speed, and one of:
- `hard_cut`: two shots (different backdrop and shapes), the second starting exactly at frame `frames // 2`;
- `blurred_stretch`: one shot whose middle third goes out of focus and back (Gaussian blur ramping up over
  `BLUR_RAMP_FRAMES` frames, then full, then down again);
- `still_then_moving`: one shot whose shapes stand still up to the middle frame (identical frames), then move.
The frame pixels are a pure function of (kind, seed, frame index), so tests state expected shots, blurred
frames and still stretches by construction (`VideoSpec`), never from the code under test.

CLI: ``python -m data_engine.editing.procedural_video --out DIR [--n N] [--seed S]`` writes N videos in turn
as mp4 (H.264), webm (VP9) and mkv (FFV1) plus the broken inputs a reader must refuse.
"""

from __future__ import annotations

import argparse
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np

VideoKind = Literal["hard_cut", "blurred_stretch", "still_then_moving"]
VIDEO_KINDS: tuple[VideoKind, ...] = ("hard_cut", "blurred_stretch", "still_then_moving")
# container extension -> (codec, pixel format); FFV1 is lossless, so mkv frames decode to exactly what was drawn.
CONTAINERS: dict[str, tuple[str, str]] = {"mp4": ("libx264", "yuv420p"), "webm": ("libvpx-vp9", "yuv420p"),
                                         "mkv": ("ffv1", "yuv444p")}
BLUR_SIGMA = 3.0
BLUR_RAMP_FRAMES = 4


@dataclass(frozen=True)
class VideoSpec:
    kind: VideoKind
    seed: int
    frames: int = 96
    width: int = 64
    height: int = 48
    fps: int = 24

    @property
    def cut_frame(self) -> int | None:
        return self.frames // 2 if self.kind == "hard_cut" else None

    @property
    def blur_stretch(self) -> range:
        """Frames with any blur (the ramps included)."""
        return range(self.frames // 3, 2 * self.frames // 3) if self.kind == "blurred_stretch" else range(0)

    @property
    def blurred_frames(self) -> range:
        """Frames blurred at full strength."""
        stretch = self.blur_stretch
        return range(stretch.start + BLUR_RAMP_FRAMES - 1, stretch.stop - BLUR_RAMP_FRAMES + 1) if stretch else stretch

    def blur_sigma(self, index: int) -> float:
        stretch = self.blur_stretch
        if index not in stretch:
            return 0.0
        return BLUR_SIGMA * min(1.0, (index - stretch.start + 1) / BLUR_RAMP_FRAMES,
                                (stretch.stop - index) / BLUR_RAMP_FRAMES)

    @property
    def still_frames(self) -> range:
        """Frames identical to frame 0: the shapes start moving after frame `frames // 2`."""
        return range(self.frames // 2 + 1) if self.kind == "still_then_moving" else range(0)


def _backdrop(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A sharp texture (blocks of random colour over a gradient) so the Laplacian sees edges everywhere."""
    gradient = np.linspace(0, 1, width)[None, :, None] * rng.uniform(60, 160, size=3)
    blocks = rng.uniform(0, 120, size=(height // 4 + 1, width // 4 + 1, 3))
    texture = np.kron(blocks, np.ones((4, 4, 1)))[:height, :width]
    return np.clip(gradient + texture, 0, 255)


def _shapes(rng: np.random.Generator, width: int, height: int, count: int = 3) -> list[dict]:
    return [{"colour": tuple(int(c) for c in rng.integers(0, 256, size=3)),
             "start": rng.uniform([0.2 * width, 0.2 * height], [0.8 * width, 0.8 * height]),
             "velocity": rng.uniform(-0.6, 0.6, size=2) * (width / 64),
             "radius": int(rng.integers(max(2, width // 16), max(3, width // 6)))} for _ in range(count)]


def render_frame(spec: VideoSpec, index: int) -> np.ndarray:
    """Frame `index` of the video as an HxWx3 uint8 RGB array."""
    shot = 1 if spec.cut_frame is not None and index >= spec.cut_frame else 0
    rng = np.random.default_rng([spec.seed, shot])
    image = _backdrop(rng, spec.width, spec.height)
    shot_start = spec.cut_frame if shot else 0
    moving_since = spec.frames // 2 if spec.kind == "still_then_moving" else 0
    elapsed = max(0, index - max(shot_start, moving_since))
    for shape in _shapes(rng, spec.width, spec.height):
        x, y = shape["start"] + shape["velocity"] * elapsed
        cv2.circle(image, (int(round(x)), int(round(y))), shape["radius"], shape["colour"], thickness=-1)
    image = image.astype(np.uint8)
    sigma = spec.blur_sigma(index)
    if sigma > 0:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    return image


def encode_video(spec: VideoSpec, container: str = "mkv", frames: int | None = None) -> bytes:
    """The video encoded with PyAV in `container` (mp4, webm or mkv); `frames` limits how many are written."""
    codec, pixel_format = CONTAINERS[container]
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="matroska" if container == "mkv" else container) as output:
        stream = output.add_stream(codec, rate=spec.fps)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, pixel_format
        if codec == "libx264":
            stream.options = {"crf": "10", "preset": "veryfast"}
        elif codec == "libvpx-vp9":
            stream.options = {"crf": "10", "b": "0", "deadline": "realtime", "cpu-used": "8"}
        for index in range(spec.frames if frames is None else frames):
            frame = av.VideoFrame.from_ndarray(render_frame(spec, index), format="rgb24")
            output.mux(stream.encode(frame))
        output.mux(stream.encode())
    return buffer.getvalue()


def procedural_spec(seed: int, index: int, frames: int, width: int, height: int, fps: int) -> VideoSpec:
    """The `index`-th video of stream `seed`: kinds in turn, each with its own random content."""
    return VideoSpec(VIDEO_KINDS[index % len(VIDEO_KINDS)], seed * 100_003 + index, frames, width, height, fps)


def write_demo_videos(out: Path, n: int = 6, seed: int = 0) -> dict[str, str]:
    """N procedural videos (mp4, webm, mkv in turn) and three inputs a reader must refuse; returns what each
    file is (its expected outcome)."""
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    containers = tuple(CONTAINERS)
    for index in range(n):
        spec = procedural_spec(seed, index, 96, 64, 48, 24)
        name = f"{index:03d}_{spec.kind}.{containers[index % len(containers)]}"
        (out / name).write_bytes(encode_video(spec, containers[index % len(containers)]))
        written[name] = spec.kind
    good = encode_video(procedural_spec(seed, 0, 96, 64, 48, 24), "mp4")
    broken = {"broken_truncated.mp4": (good[: len(good) // 3], "unreadable"),
              "zero_length.webm": (b"", "zero_length"),
              "too_short.mkv": (encode_video(procedural_spec(seed, 1, 96, 64, 48, 24), "mkv", frames=3), "too_short")}
    for name, (data, outcome) in broken.items():
        (out / name).write_bytes(data)
        written[name] = outcome
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_engine.editing.procedural_video", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name, what in write_demo_videos(args.out, args.n, args.seed).items():
        print(f"{args.out / name}: {what}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
