"""3D lifting: 2D instance masks + depth + poses -> gravity-aligned OBBs kept by multi-view cycle consistency.

Input contract (what upstream video models provide, one `Frame` per sampled video frame):
- `depth`: metric depth in metres (0 = unknown), from a depth model or sensor, aligned with the image;
- `intrinsics`, `pose`: pinhole K and camera-to-world pose (OpenCV camera, Z-up world) from SfM/SLAM;
- `instances`: (H, W) int map of track ids (0 = background), i.e. 2D instance masks with ids consistent
  across frames from a video tracker; `categories` maps each track id to its label.

Per track: erode each mask (depth at mask borders mixes foreground and background), back-project, merge all
frames, drop outliers by distance to the median, fit a gravity-aligned box (yaw from the minimum-area
rectangle of the ground-plane footprint, extents from robust percentiles), then project the box into every
frame that observes the track and keep it only if its footprint agrees with the observed mask
(IoU >= `min_view_iou`) in at least `min_consistent_views` views and `min_consistent_fraction` of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from openspatial.conventions import OrientedBox, rotation_z
from openspatial.projection import back_project_pixels, project_box
from openspatial.scene import Frame


class LiftingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_mask_pixels: int = Field(default=50, ge=1)  # a frame observes a track when its mask is this large
    erode_pixels: int = Field(default=1, ge=0)
    max_points_per_frame: int = Field(default=2000, gt=0)  # uniform subsample for speed
    outlier_mad: float = Field(default=4.0, gt=0)  # drop points farther than this many MADs from the median
    extent_percentile: float = Field(default=3.0, ge=0, lt=50)  # robust min/max per box axis
    min_points: int = Field(default=100, ge=4)
    min_view_iou: float = Field(default=0.4, ge=0, le=1)
    min_consistent_views: int = Field(default=2, ge=1)
    min_consistent_fraction: float = Field(default=0.6, ge=0, le=1)
    near: float = Field(default=0.05, gt=0)


@dataclass
class LiftedBox:
    track_id: int
    category: str
    box: OrientedBox | None
    view_ious: dict[int, float]  # frame index -> IoU of the projected box with the observed mask
    reject_reason: str | None
    reject_detail: str | None = None


def track_pixels(frame: Frame) -> dict[int, np.ndarray]:
    """Flat pixel indices of every track in a frame, from one sort of the instance map."""
    flat = frame.instances.ravel()
    order = np.argsort(flat, kind="stable")
    ids, starts, counts = np.unique(flat[order], return_index=True, return_counts=True)
    return {int(i): order[s:s + c] for i, s, c in zip(ids, starts, counts) if i != 0}


def _track_mask(frame: Frame, flat_indices: np.ndarray, pad: int) -> tuple[np.ndarray, int, int]:
    """The track's mask cropped to its bounding box grown by `pad`, and the crop's top-left corner."""
    rows, cols = np.divmod(flat_indices, frame.width)
    top, left = max(int(rows.min()) - pad, 0), max(int(cols.min()) - pad, 0)
    bottom, right = min(int(rows.max()) + pad + 1, frame.height), min(int(cols.max()) + pad + 1, frame.width)
    crop = np.zeros((bottom - top, right - left), np.uint8)
    crop[rows - top, cols - left] = 1
    return crop, top, left


def _track_points(frames: list[Frame], pixels: list[dict[int, np.ndarray]], track_id: int, config: LiftingConfig,
                  rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    kernel = np.ones((2 * config.erode_pixels + 1,) * 2, np.uint8)
    clouds, observing = [], []
    for index, frame in enumerate(frames):
        flat = pixels[index].get(track_id)
        if flat is None or len(flat) < config.min_mask_pixels:
            continue
        observing.append(index)
        crop, top, left = _track_mask(frame, flat, config.erode_pixels)
        core = cv2.erode(crop, kernel) if config.erode_pixels else crop
        rows, cols = np.nonzero(core)
        rows, cols = rows + top, cols + left
        keep = frame.depth[rows, cols] > 0
        rows, cols = rows[keep], cols[keep]
        if len(rows) > config.max_points_per_frame:
            chosen = rng.choice(len(rows), config.max_points_per_frame, replace=False)
            rows, cols = rows[chosen], cols[chosen]
        clouds.append(back_project_pixels(frame, rows, cols))
    return (np.concatenate(clouds) if clouds else np.zeros((0, 3))), observing


def _remove_outliers(points: np.ndarray, mad_factor: float) -> np.ndarray:
    median = np.median(points, axis=0)
    deviation = np.abs(points - median)
    mad = np.maximum(np.median(deviation, axis=0), 1e-3)
    return points[np.all(deviation <= mad_factor * 1.4826 * mad, axis=1)]


def fit_gravity_aligned_box(points: np.ndarray, percentile: float) -> OrientedBox:
    """Yaw from the minimum-area rectangle of the footprint; extents from robust percentiles in that frame."""
    (_, _), (_, _), angle = cv2.minAreaRect(points[:, :2].astype(np.float32))
    rotation = rotation_z(np.radians(angle))
    local = points @ rotation
    low = np.percentile(local, percentile, axis=0)
    high = np.percentile(local, 100 - percentile, axis=0)
    return OrientedBox(rotation @ ((low + high) / 2), np.maximum(high - low, 1e-3), rotation)


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def lift_track(frames: list[Frame], pixels: list[dict[int, np.ndarray]], track_id: int, category: str,
               config: LiftingConfig, seed: int = 0) -> LiftedBox:
    points, observing = _track_points(frames, pixels, track_id, config, np.random.default_rng([seed, track_id]))
    if len(observing) < config.min_consistent_views:
        return LiftedBox(track_id, category, None, {}, "too_few_views",
                         f"observed in {len(observing)} frames < {config.min_consistent_views}")
    points = _remove_outliers(points, config.outlier_mad)
    if len(points) < config.min_points:
        return LiftedBox(track_id, category, None, {}, "too_few_points", f"{len(points)} points < {config.min_points}")
    box = fit_gravity_aligned_box(points, config.extent_percentile)
    view_ious = {}
    for index in observing:
        footprint = project_box(frames[index], box, config.near)
        observed = np.zeros(frames[index].width * frames[index].height, bool)
        observed[pixels[index][track_id]] = True
        view_ious[index] = (_mask_iou(footprint.mask, observed.reshape(frames[index].height, frames[index].width))
                            if footprint.in_view else 0.0)
    consistent = sum(iou >= config.min_view_iou for iou in view_ious.values())
    if consistent < config.min_consistent_views or consistent < config.min_consistent_fraction * len(view_ious):
        return LiftedBox(track_id, category, box, view_ious, "cycle_inconsistent",
                         f"{consistent} of {len(view_ious)} views with mask IoU >= {config.min_view_iou}")
    return LiftedBox(track_id, category, box, view_ious, None)


def lift_tracks(frames: list[Frame], categories: dict[int, str],
                config: LiftingConfig = LiftingConfig()) -> list[LiftedBox]:
    missing = [i for i, frame in enumerate(frames) if frame.depth is None or frame.instances is None]
    if missing:
        raise ValueError(f"frames[{missing[0]}]: lifting needs depth and instances (track ids) in every frame")
    pixels = [track_pixels(frame) for frame in frames]
    return [lift_track(frames, pixels, track_id, category, config) for track_id, category in sorted(categories.items())]


def clip_convex_polygon(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman: the part of convex polygon `subject` inside convex counter-clockwise `clip`."""
    output = subject
    for start, end in zip(clip, np.roll(clip, -1, axis=0)):
        if len(output) == 0:
            break
        edge = end - start
        inside = edge[0] * (output[:, 1] - start[1]) - edge[1] * (output[:, 0] - start[0]) >= 0
        clipped = []
        for i in range(len(output)):
            current, following = output[i], output[(i + 1) % len(output)]
            if inside[i]:
                clipped.append(current)
            if inside[i] != inside[(i + 1) % len(output)]:
                direction = following - current
                denominator = edge[0] * direction[1] - edge[1] * direction[0]
                t = (edge[1] * (current[0] - start[0]) - edge[0] * (current[1] - start[1])) / denominator
                clipped.append(current + t * direction)
        output = np.array(clipped)
    return output


def polygon_area(polygon: np.ndarray) -> float:
    if len(polygon) < 3:
        return 0.0
    x, y = polygon[:, 0], polygon[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def gravity_aligned_iou(a: OrientedBox, b: OrientedBox) -> float:
    """3D IoU of two boxes rotated only about +Z: footprint polygon overlap times vertical overlap."""
    def footprint(box: OrientedBox) -> np.ndarray:
        return box.corners()[[0, 1, 3, 2], :2]  # bottom corners, counter-clockwise

    area = polygon_area(clip_convex_polygon(footprint(a), footprint(b)))
    low = max(a.center[2] - a.extents[2] / 2, b.center[2] - b.extents[2] / 2)
    high = min(a.center[2] + a.extents[2] / 2, b.center[2] + b.extents[2] / 2)
    intersection = area * max(high - low, 0.0)
    return float(intersection / (a.volume + b.volume - intersection))


class ObservationNoise(BaseModel):
    """Realistic upstream errors for measuring lifting: depth-model scale noise, mask boundary errors, SLAM drift."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Defaults: a structured-light sensor's noise at 3-4 m (about 1%), a 1% per-frame scale error of a
    # metric depth model, segmentation boundaries off by up to 2 px, SLAM drift of 0.5 degrees and 2 cm.
    depth_relative_sigma: float = Field(default=0.01, ge=0)  # per-pixel Gaussian, relative to depth
    depth_scale_sigma: float = Field(default=0.01, ge=0)  # per-frame global scale error
    mask_boundary_pixels: int = Field(default=2, ge=0)  # masks randomly grown or shrunk by up to this much
    pose_rotation_deg: float = Field(default=0.5, ge=0)
    pose_translation_m: float = Field(default=0.02, ge=0)


def noisy_observations(frames: list[Frame], noise: ObservationNoise, seed: int) -> list[Frame]:
    """Copies of rendered frames with noise applied to depth, instance masks and poses."""
    rng = np.random.default_rng(seed)
    noisy = []
    for frame in frames:
        depth = frame.depth * rng.normal(1.0, noise.depth_scale_sigma)
        depth = np.where(frame.depth > 0, depth * rng.normal(1.0, noise.depth_relative_sigma, depth.shape), 0.0)
        instances = frame.instances.copy()
        for track_id in np.unique(frame.instances[frame.instances > 0]):
            radius = int(rng.integers(-noise.mask_boundary_pixels, noise.mask_boundary_pixels + 1))
            if radius == 0:
                continue
            mask = (frame.instances == track_id).astype(np.uint8)
            kernel = np.ones((2 * abs(radius) + 1,) * 2, np.uint8)
            changed = cv2.dilate(mask, kernel) if radius > 0 else cv2.erode(mask, kernel)
            instances[(mask == 1) & (changed == 0)] = 0
            instances[(changed == 1) & (instances == 0)] = track_id
        axis = rng.normal(size=3)
        angle = np.radians(rng.normal(0.0, noise.pose_rotation_deg))
        rotation, _ = cv2.Rodrigues(axis / np.linalg.norm(axis) * angle)
        pose = frame.pose.copy()
        pose[:3, :3] = rotation @ pose[:3, :3]
        pose[:3, 3] += rng.normal(0.0, noise.pose_translation_m, 3)
        noisy.append(Frame(frame.frame_id, frame.width, frame.height, frame.intrinsics, pose, frame.image,
                           depth.astype(np.float32), instances))
    return noisy
