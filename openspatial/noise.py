"""What a real RGB-D video pipeline gets wrong, applied to exact procedural frames (for lifting jobs and figures).

Every field is one documented error source; the defaults are the model `benchmarks/lifting.py` and the README
report against:
- depth: a per-pixel Gaussian whose sigma grows with distance, `base + quadratic * (z - 0.4 m)^2` (the
  structured-light model of Nguyen et al. 2012: about 1.2 mm at 0.5 m, 2 cm at 3 m, 6 cm at 6 m), times a
  per-frame scale error (a monocular metric depth model is off by a percent or so per frame); no reading
  beyond `depth_max_m`;
- depth holes: round blobs of unknown depth (0) covering about `hole_fraction` of every frame (shiny, dark and
  grazing surfaces return nothing);
- masks: each instance's mask grown or shrunk by up to `mask_boundary_pixels`, where growing takes pixels
  from the NEIGHBOURING objects too (a segmenter bleeds across a contact edge, not only into background);
- missed detections: each instance is absent from a frame with probability `missed_detection_rate`;
- ids: every frame's ids are drawn afresh (`shuffle_ids`), as a per-frame 2D segmenter gives them, so nothing
  downstream may rely on an id meaning the same object in two frames;
- poses: each camera rotated by a random axis and a Gaussian angle (`pose_rotation_deg`) and moved by a
  Gaussian offset (`pose_translation_m` per axis), SLAM drift at room scale.
"""

from __future__ import annotations

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from openspatial.scene import Frame

_MAX_FRAME_ID = 60000  # per-frame ids are drawn below this (uint16 instance PNGs)


class ObservationNoise(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    depth_sigma_base_m: float = Field(default=0.0012, ge=0)
    depth_sigma_quadratic: float = Field(default=0.0019, ge=0)  # metres per square metre beyond 0.4 m
    depth_scale_sigma: float = Field(default=0.01, ge=0)  # per-frame global scale error
    depth_max_m: float = Field(default=8.0, gt=0)
    hole_fraction: float = Field(default=0.02, ge=0, lt=1)
    hole_radius_pixels: int = Field(default=4, ge=1)
    mask_boundary_pixels: int = Field(default=2, ge=0)
    missed_detection_rate: float = Field(default=0.1, ge=0, le=1)
    shuffle_ids: bool = True
    pose_rotation_deg: float = Field(default=0.5, ge=0)
    pose_translation_m: float = Field(default=0.02, ge=0)

    @classmethod
    def none(cls) -> ObservationNoise:
        """Exact observations (ids still consistent across frames): the clean reference."""
        return cls(depth_sigma_base_m=0, depth_sigma_quadratic=0, depth_scale_sigma=0, hole_fraction=0,
                   mask_boundary_pixels=0, missed_detection_rate=0, shuffle_ids=False, pose_rotation_deg=0,
                   pose_translation_m=0, depth_max_m=1e3)


def depth_sigma(depth: np.ndarray, noise: ObservationNoise) -> np.ndarray:
    return noise.depth_sigma_base_m + noise.depth_sigma_quadratic * np.maximum(depth - 0.4, 0.0) ** 2


def _noisy_depth(depth: np.ndarray, noise: ObservationNoise, rng: np.random.Generator) -> np.ndarray:
    known = (depth > 0) & (depth <= noise.depth_max_m)
    scale = rng.normal(1.0, noise.depth_scale_sigma)
    noisy = (depth + rng.normal(0.0, 1.0, depth.shape) * depth_sigma(depth, noise)) * scale
    noisy = np.where(known & (noisy > 0), noisy, 0.0).astype(np.float32)
    if noise.hole_fraction:
        height, width = depth.shape
        holes = np.zeros(depth.shape, np.uint8)
        count = rng.poisson(noise.hole_fraction * height * width / (np.pi * noise.hole_radius_pixels ** 2))
        for x, y in zip(rng.integers(0, width, count), rng.integers(0, height, count)):
            cv2.circle(holes, (int(x), int(y)), noise.hole_radius_pixels, 1, -1)
        noisy[holes == 1] = 0.0
    return noisy


def _noisy_masks(instances: np.ndarray, noise: ObservationNoise, rng: np.random.Generator) -> np.ndarray:
    noisy = instances.copy()
    ids = [int(i) for i in np.unique(instances) if i != 0]
    for track_id in rng.permutation(ids) if ids else []:
        mask = (instances == track_id).astype(np.uint8)
        if rng.random() < noise.missed_detection_rate:
            noisy[(mask == 1) & (noisy == track_id)] = 0
            continue
        radius = int(rng.integers(-noise.mask_boundary_pixels, noise.mask_boundary_pixels + 1))
        if radius == 0:
            continue
        kernel = np.ones((2 * abs(radius) + 1,) * 2, np.uint8)
        if radius > 0:
            noisy[cv2.dilate(mask, kernel) == 1] = track_id  # bleeds into background and neighbours alike
        else:
            noisy[(mask == 1) & (cv2.erode(mask, kernel) == 0) & (noisy == track_id)] = 0
    return noisy


def _jittered_pose(pose: np.ndarray, noise: ObservationNoise, rng: np.random.Generator) -> np.ndarray:
    axis = rng.normal(size=3)
    angle = np.radians(rng.normal(0.0, noise.pose_rotation_deg))
    rotation, _ = cv2.Rodrigues(axis / np.linalg.norm(axis) * angle)
    jittered = pose.copy()
    jittered[:3, :3] = rotation @ pose[:3, :3]
    jittered[:3, 3] += rng.normal(0.0, noise.pose_translation_m, 3)
    return jittered


def noisy_frames(frames: list[Frame], categories: dict[int, str], noise: ObservationNoise,
                 seed: int | list[int]) -> tuple[list[Frame], list[dict[int, str]]]:
    """Copies of rendered frames (exact depth, instance ids = object ids) as a video pipeline would see them,
    with each frame's id -> category table (the only labels a per-frame segmenter gives)."""
    rng = np.random.default_rng(seed)
    noisy, labels = [], []
    for frame in frames:
        instances = _noisy_masks(frame.instances, noise, rng)
        present = [int(i) for i in np.unique(instances) if i != 0]
        new_ids = (rng.choice(np.arange(1, _MAX_FRAME_ID), len(present), replace=False) if noise.shuffle_ids
                   else np.array(present, dtype=int))
        lookup = np.zeros(int(instances.max()) + 1, dtype=np.int32)
        lookup[present] = new_ids
        noisy.append(Frame(frame.frame_id, frame.width, frame.height, frame.intrinsics.copy(),
                           _jittered_pose(frame.pose, noise, rng), frame.image,
                           _noisy_depth(frame.depth, noise, rng), lookup[instances]))
        labels.append({int(new): categories[old] for old, new in zip(present, new_ids)})
    return noisy, labels
