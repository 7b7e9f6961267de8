"""3D lifting: 2D instance masks + depth + poses -> gravity-aligned OBBs kept by multi-view cycle consistency.

Input contract (what upstream video models provide, one `Frame` per sampled video frame):
- `depth`: metric depth in metres (0 = unknown), from a depth model or sensor, aligned with the image;
- `intrinsics`, `pose`: pinhole K and camera-to-world pose (OpenCV camera, Z-up world) from SfM/SLAM;
- `instances`: (H, W) int map of track ids (0 = background), i.e. 2D instance masks with ids consistent
  across frames (a video tracker's, or per-frame masks after `openspatial.association`); `categories` maps
  each track id to its label.

Per frame: median-filter depth inside each mask (never across its edge) and mark the pixels to trust: not
on a mask edge and not on the far side of a depth jump (`trusted_pixels`). Per track: back-project the trusted
pixels of every frame that observes it, merge them, fit a gravity-aligned box (yaw by L-shape fitting of the
ground-plane footprint, extents from a lightly trimmed min/max), then move each side the cameras face to the
median of where those views put it (`fuse_faces_across_views`: every frame is off by its own pose and depth
scale error, and the merged cloud's outermost points come from the worst of them); if no frame shows where the
object ends below (cut off by the lower image border or hidden behind a nearer object in every view), lower
its bottom to the floor (the lowest background surface seen): objects rest on something, and the floor is the
support we can see (an object on a table whose foot hides behind the table edge in every view comes out too
tall). Then project the box into every frame that observes the track and keep it only if its footprint agrees
with the observed mask (IoU >= `min_view_iou`, footprint pixels hidden behind a nearer surface left out) in at
least `min_consistent_views` views and `min_consistent_fraction` of them.

Why not stronger outlier removal of the merged cloud: a per-axis median/MAD filter or a percentile trim of a
few percent cut off exactly the box sides seen at grazing angles (few points, all at one end of an axis), so
partial views gave boxes far too thin; stray points come almost only from mask edges, which the per-pixel
rules remove at the source. What made boxes too large under the default noise was not stray points but
whole views shifted outwards, which only a per-view estimate sees (`benchmarks/lifting.py` measures the effect).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from data_engine.conventions import OrientedBox, rotation_z
from openspatial.projection import back_project_pixels, box_in_camera, project_box
from openspatial.scene import Frame


class LiftingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_mask_pixels: int = Field(default=50, ge=1)  # a frame observes a track when its mask is this large
    depth_median_pixels: Literal[0, 3, 5] = 5  # median window inside masks against per-pixel noise (0 = off)
    mask_edge_pixels: int = Field(default=1, ge=0)  # mask pixels this close to another label are dropped
    depth_edge_pixels: int = Field(default=2, ge=0)  # ... and those this close to a much nearer surface
    depth_edge_relative: float = Field(default=0.05, gt=0)  # a jump of this fraction of the depth is "much nearer"
    max_points_per_frame: int = Field(default=2000, gt=0)  # uniform subsample for speed
    extent_percentile: float = Field(default=0.5, ge=0, lt=50)  # trimmed min/max per box axis against noise tails
    min_points: int = Field(default=100, ge=4)
    # Per-view side estimates (`fuse_faces_across_views`): a view's trimmed extreme (`face_percentile`) from at
    # least `face_min_points` points, used only within `face_band_m` of the merged fit's side (a view that saw
    # the side partly, truncated or occluded, puts it further in; a band keeps such views out of the median).
    # On noisy room scans of the tuning seeds (7, 5) this took recall at 3D IoU 0.5 from 0.64 to 0.77 and
    # precision from 0.74 to 0.85.
    fuse_faces: bool = True
    face_percentile: float = Field(default=2.0, ge=0, lt=50)
    face_min_points: int = Field(default=20, ge=1)
    face_band_m: float = Field(default=0.1, ge=0)
    extend_hidden_bottoms: bool = True  # objects whose bottom no frame shows rest on the floor (gravity)
    # A correct box's footprint covers its mask almost exactly once occluded pixels are left out (0.9 and more
    # on clean views, where the footprint against the whole frame scored 0.35 behind an occluder); boxes of
    # tracks that mix two objects stay below 0.5.
    min_view_iou: float = Field(default=0.5, ge=0, le=1)
    # Footprint pixels showing a surface nearer than the box by this fraction of the box's depth there are
    # hidden behind an occluder: the mask cannot show them, so they do not count against the view.
    occluder_relative: float = Field(default=0.05, ge=0, lt=1)
    min_consistent_views: int = Field(default=2, ge=1)
    min_consistent_fraction: float = Field(default=0.6, ge=0, le=1)
    # An object cut by the left or right image side in every view was never seen whole: its horizontal extent
    # is unknown (a bed filmed from beside it comes out a fraction of its size), so it is rejected. Cuts at the
    # bottom are what `extend_hidden_bottoms` completes; the top of a tall object is rarely where boxes go wrong.
    require_whole_view: bool = False
    border_pixels: int = Field(default=2, ge=1)  # a mask this close to an image side is cut by it
    near: float = Field(default=0.05, gt=0)


@dataclass
class LiftedBox:
    track_id: int
    category: str
    box: OrientedBox | None
    view_ious: dict[int, float]  # frame index -> IoU of the projected box with the observed mask
    reject_reason: str | None
    reject_detail: str | None = None


@dataclass(frozen=True)
class _Observation:
    """One frame prepared for lifting: the depth to back-project and the track pixels that can be trusted."""

    frame: Frame
    depth: np.ndarray  # median-filtered depth, 0 = unknown
    pixels: dict[int, np.ndarray]  # track id -> flat indices of ALL its mask pixels (for cycle consistency)
    trusted: dict[int, np.ndarray]  # track id -> flat indices of its pixels that `trusted_pixels` keeps


def track_pixels(frame: Frame) -> dict[int, np.ndarray]:
    """Flat pixel indices of every track in a frame, from one sort of the instance map."""
    flat = frame.instances.ravel()
    if flat.max(initial=0) < 2 ** 16:
        flat = flat.astype(np.uint16)  # a stable sort of 16-bit keys is a radix sort: twice as fast
    order = np.argsort(flat, kind="stable")
    ids, starts, counts = np.unique(flat[order], return_index=True, return_counts=True)
    return {int(i): order[s:s + c] for i, s, c in zip(ids, starts, counts) if i != 0}


def trusted_pixels(depth: np.ndarray, instances: np.ndarray, config: LiftingConfig) -> np.ndarray:
    """Pixels whose depth can be trusted as a sample of their own track's surface.

    Upstream masks are off by a pixel or two, so a mask edge is uncertain: pixels within `mask_edge_pixels` of
    another label (background included) are dropped. At an occlusion boundary a grown mask picks up the surface
    behind the object (and real sensors mix both there), so pixels with a much nearer surface within
    `depth_edge_pixels` (the far side of a depth jump) are dropped as well. The near side of a jump is kept: a
    box side seen at a grazing angle is often only a few pixels wide, and a wide erosion of every edge would
    remove it (boxes from partial views then come out too thin)."""
    trusted = depth > 0
    if config.mask_edge_pixels:
        kernel = np.ones((2 * config.mask_edge_pixels + 1,) * 2, np.uint8)
        labels = instances.astype(np.float32)  # exact for ids below 2**24
        trusted &= (cv2.dilate(labels, kernel) == labels) & (cv2.erode(labels, kernel) == labels)
    if config.depth_edge_pixels:
        kernel = np.ones((2 * config.depth_edge_pixels + 1,) * 2, np.uint8)
        nearest = cv2.erode(np.where(depth > 0, depth, np.float32(np.inf)), kernel)
        trusted &= depth - nearest <= config.depth_edge_relative * nearest
    return trusted


def denoised_depth(depth: np.ndarray, instances: np.ndarray, size: int) -> np.ndarray:
    """Median-filtered depth where the whole size x size window shows one track with known depth, raw depth
    elsewhere: per-pixel sensor noise drops inside objects, and an object's depth is never mixed with the
    surface beside it (at its rim, where the floor or the wall behind would pull its points outwards)."""
    depth = depth.astype(np.float32)
    if size == 0:
        return depth
    kernel = np.ones((size, size), np.uint8)
    labels = instances.astype(np.float32)
    inside = ((instances > 0) & (cv2.dilate(labels, kernel) == labels) & (cv2.erode(labels, kernel) == labels)
              & (cv2.erode(depth, kernel) > 0))
    return np.where(inside, cv2.medianBlur(depth, size), depth)


def _observe(frame: Frame, config: LiftingConfig) -> _Observation:
    depth = denoised_depth(frame.depth, frame.instances, config.depth_median_pixels)
    trusted = trusted_pixels(depth, frame.instances, config).ravel()
    pixels = track_pixels(frame)
    return _Observation(frame, depth, pixels, {track: flat[trusted[flat]] for track, flat in pixels.items()})


def _track_points(observations: list[_Observation], track_id: int, config: LiftingConfig,
                  rng: np.random.Generator) -> tuple[list[np.ndarray], list[int]]:
    """Each observing frame's back-projected trusted points (one cloud per frame index in `observing`)."""
    clouds, observing = [], []
    for index, observation in enumerate(observations):
        flat = observation.pixels.get(track_id)
        if flat is None or len(flat) < config.min_mask_pixels:
            continue
        observing.append(index)
        trusted = observation.trusted[track_id]
        if len(trusted) > config.max_points_per_frame:
            trusted = rng.choice(trusted, config.max_points_per_frame, replace=False)
        rows, cols = np.divmod(trusted, observation.frame.width)
        clouds.append(back_project_pixels(observation.frame, rows, cols, observation.depth))
    return clouds, observing


_YAW_SAMPLE = 1000  # footprint points scored per candidate heading (a fixed subsample keeps the search cheap)


def _closeness(footprint: np.ndarray, yaws: np.ndarray, floor: float) -> np.ndarray:
    directions = np.stack([np.cos(yaws), np.sin(yaws)])  # (2, K)
    along = footprint @ directions  # (N, K)
    across = footprint @ np.stack([-directions[1], directions[0]])
    gap_along = np.minimum(along - along.min(axis=0), along.max(axis=0) - along)
    gap_across = np.minimum(across - across.min(axis=0), across.max(axis=0) - across)
    return (1.0 / np.maximum(np.minimum(gap_along, gap_across), floor)).sum(axis=0)


def footprint_yaw(footprint: np.ndarray, closeness_floor: float = 0.05) -> float:
    """Heading of the rectangle whose edges the footprint points hug (L-shape fitting by closeness).

    The visible sides of a box project onto the ground as one or two perpendicular lines. For each candidate
    heading every point is scored by 1 / its distance to the nearest edge of the enclosing rectangle (floored at
    `closeness_floor` metres: depth noise and pose jitter spread a face over a few centimetres, so nearer means
    nothing) and the heading with the highest total wins (a 3 degree grid over the 90 degrees a rectangle
    repeats in, then 1 degree around the best). The minimum-area rectangle cannot make this choice: the hull of
    an L is a right triangle, whose hypotenuse-aligned rectangle has the same area as the side-aligned one, so
    views of two sides came out rotated by up to 45 degrees."""
    if len(footprint) > _YAW_SAMPLE:
        footprint = footprint[np.linspace(0, len(footprint) - 1, _YAW_SAMPLE).astype(int)]
    coarse = np.radians(np.arange(0.0, 90.0, 3.0))
    best = coarse[np.argmax(_closeness(footprint, coarse, closeness_floor))]
    fine = best + np.radians(np.arange(-2.0, 3.0, 1.0))
    return float(fine[np.argmax(_closeness(footprint, fine, closeness_floor))])


def fit_gravity_aligned_box(points: np.ndarray, percentile: float) -> OrientedBox:
    """Yaw from L-shape fitting of the ground-plane footprint; extents from trimmed min/max in that frame.

    The trim is kept small on purpose: a box side seen at a grazing angle is supported by few points, and a
    larger trim would cut exactly those off (partial views make boxes too small, not too large)."""
    rotation = rotation_z(footprint_yaw(points[:, :2]))
    local = points @ rotation
    low = np.percentile(local, percentile, axis=0)
    high = np.percentile(local, 100 - percentile, axis=0)
    return OrientedBox(rotation @ ((low + high) / 2), np.maximum(high - low, 1e-3), rotation)


def fuse_faces_across_views(box: OrientedBox, clouds: list[np.ndarray], cameras: np.ndarray, percentile: float,
                            min_points: int, band: float) -> OrientedBox:
    """Each side of the box moved to the median of where the views facing it put it.

    Every view's cloud is off by its own small rigid shift and depth scale (pose and depth errors of that
    frame), so the outermost points of the merged cloud come from whichever view erred furthest outwards: a
    box fitted to the merge grows by about the largest per-view error on every side (two to three times the
    volume for a vase). A view whose camera lies beyond a side's plane sees that side's face; its own trimmed
    extreme along that axis is where that view puts the side, and the median over those views is robust to
    the views that erred most. Sides no view faces keep the merged fit."""
    low, high = -box.extents / 2, box.extents / 2
    centre, rotation = box.center, box.rotation
    local_cameras = (cameras - centre) @ rotation
    locals_ = [(cloud - centre) @ rotation for cloud in clouds]
    fused_low, fused_high = low.copy(), high.copy()
    for axis in range(3):
        below = [e for e in (np.percentile(p[:, axis], percentile) for p, c in zip(locals_, local_cameras)
                             if c[axis] < low[axis] and len(p) >= min_points) if e <= low[axis] + band]
        above = [e for e in (np.percentile(p[:, axis], 100 - percentile) for p, c in zip(locals_, local_cameras)
                             if c[axis] > high[axis] and len(p) >= min_points) if e >= high[axis] - band]
        if below:
            fused_low[axis] = min(max(float(np.median(below)), low[axis]), high[axis])
        if above:
            fused_high[axis] = max(min(float(np.median(above)), high[axis]), fused_low[axis])
    extents = np.maximum(fused_high - fused_low, 1e-3)
    return OrientedBox(centre + rotation @ ((fused_low + fused_high) / 2), extents, rotation)


def box_entry_depth(frame: Frame, box: OrientedBox, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Camera z at which the ray through each pixel centre enters the box (inf where it misses): slab test in
    the box's own axes, with rays scaled to z = 1 so the ray parameter is the camera depth."""
    local = box_in_camera(frame, box)
    (fx, skew, cx), (_, fy, cy) = frame.intrinsics[0], frame.intrinsics[1]
    y = (rows + 0.5 - cy) / fy
    rays = np.stack([(cols + 0.5 - cx - skew * y) / fx, y, np.ones_like(y)], axis=1) @ local.rotation
    origin = -local.rotation.T @ local.center
    with np.errstate(divide="ignore", invalid="ignore"):
        low = (-local.extents / 2 - origin) / rays
        high = (local.extents / 2 - origin) / rays
    low, high = np.nan_to_num(low, nan=-np.inf), np.nan_to_num(high, nan=np.inf)
    entry = np.minimum(low, high).max(axis=1)
    leave = np.maximum(low, high).min(axis=1)
    return np.where((entry <= leave) & (leave > 0), np.maximum(entry, 0.0), np.inf)


def visible_mask_iou(observation: _Observation, track_id: int, box: OrientedBox, config: LiftingConfig) -> float:
    """IoU of the box's projected footprint with the track's mask, leaving out footprint pixels where the
    frame's depth shows a surface clearly in front of the box (`occluder_relative`): a correct box of an object
    half hidden behind another projects onto the occluder as well, and the mask cannot show those pixels."""
    frame = observation.frame
    footprint = project_box(frame, box, config.near)
    if not footprint.in_view:
        return 0.0
    projected = np.flatnonzero(footprint.mask)
    observed = observation.pixels[track_id]
    shared = np.isin(projected, observed, assume_unique=True)
    rows, cols = np.divmod(projected[~shared], frame.width)  # footprint pixels the mask does not cover
    depth = observation.depth[rows, cols]
    occluded = (depth > 0) & (depth < box_entry_depth(frame, box, rows, cols) * (1 - config.occluder_relative))
    intersection = np.count_nonzero(shared)
    union = len(projected) - np.count_nonzero(occluded) + len(observed) - intersection
    return intersection / union if union else 0.0


def _lift_track(observations: list[_Observation], track_id: int, category: str, config: LiftingConfig,
                floor_z: float | None, seed: int = 0) -> LiftedBox:
    clouds, observing = _track_points(observations, track_id, config, np.random.default_rng([seed, track_id]))
    points = np.concatenate(clouds) if clouds else np.zeros((0, 3))
    if len(observing) < config.min_consistent_views:
        return LiftedBox(track_id, category, None, {}, "too_few_views",
                         f"observed in {len(observing)} frames < {config.min_consistent_views}")
    if len(points) < config.min_points:
        return LiftedBox(track_id, category, None, {}, "too_few_points", f"{len(points)} points < {config.min_points}")
    if config.require_whole_view and all(_cut_sideways(observations[i], track_id, config) for i in observing):
        return LiftedBox(track_id, category, None, {}, "never_seen_whole",
                         f"cut by the left or right image side in all {len(observing)} views")
    box = fit_gravity_aligned_box(points, config.extent_percentile)
    if config.fuse_faces:
        cameras = np.array([observations[i].frame.pose[:3, 3] for i in observing])
        box = fuse_faces_across_views(box, clouds, cameras, config.face_percentile, config.face_min_points,
                                      config.face_band_m)
    if floor_z is not None and not any(_bottom_seen(observations[i], track_id, config) for i in observing):
        box = _down_to(box, floor_z)
    view_ious = {index: visible_mask_iou(observations[index], track_id, box, config) for index in observing}
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
    observations = [_observe(frame, config) for frame in frames]
    floor_z = _floor_height(observations) if config.extend_hidden_bottoms else None
    return [_lift_track(observations, track_id, category, config, floor_z)
            for track_id, category in sorted(categories.items())]


def _floor_height(observations: list[_Observation], stride: int = 17) -> float | None:
    """Height of the floor: a low percentile of the background (no track) points of every frame."""
    heights = []
    for observation in observations:
        frame = observation.frame
        sampled = slice(None, None, stride)
        background = np.flatnonzero((frame.instances.ravel()[sampled] == 0) & (observation.depth.ravel()[sampled] > 0))
        rows, cols = np.divmod(background * stride, frame.width)
        heights.append(back_project_pixels(frame, rows, cols, observation.depth)[:, 2])
    heights = np.concatenate(heights)
    return float(np.percentile(heights, 1)) if len(heights) >= 100 else None


def _cut_sideways(observation: _Observation, track_id: int, config: LiftingConfig) -> bool:
    """Whether the track's mask reaches the left or right image side (within `border_pixels`)."""
    frame = observation.frame
    cols = observation.pixels[track_id] % frame.width
    return bool(cols.min() < config.border_pixels or cols.max() >= frame.width - config.border_pixels)


def _bottom_seen(observation: _Observation, track_id: int, config: LiftingConfig) -> bool:
    """Whether the frame shows where the track's object ends below: under the lowest mask pixel of most columns
    lies neither the image border nor a nearer surface of another track (an occluder)."""
    frame = observation.frame
    rows, cols = np.divmod(observation.pixels[track_id], frame.width)  # row-major order: rows ascend
    columns, last = np.unique(cols[::-1], return_index=True)
    lowest = rows[::-1][last]
    below = np.minimum(lowest + 1, frame.height - 1)
    occluder = frame.instances[below, columns]
    nearer = observation.depth[below, columns] < observation.depth[lowest, columns] * (1 - config.depth_edge_relative)
    hidden = (lowest + 1 >= frame.height) | ((occluder != 0) & (occluder != track_id) & nearer)
    return bool(hidden.mean() < 0.5)


def _down_to(box: OrientedBox, floor_z: float) -> OrientedBox:
    """The box with its bottom lowered to `floor_z` (unchanged when it already reaches it)."""
    bottom, top = box.center[2] - box.extents[2] / 2, box.center[2] + box.extents[2] / 2
    if bottom <= floor_z:
        return box
    center, extents = box.center.copy(), box.extents.copy()
    center[2], extents[2] = (floor_z + top) / 2, top - floor_z
    return OrientedBox(center, extents, box.rotation)


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


def suppress_duplicates(lifted: list[LiftedBox], min_iou: float) -> list[LiftedBox]:
    """Reject a kept box that overlaps a kept box of the same category with better support (more consistent
    views) by 3D IoU >= `min_iou`: one object split into two tracks (a missed association) must not become two
    objects of the scene."""
    def support(result: LiftedBox) -> tuple[int, float]:
        return len(result.view_ious), float(np.mean(list(result.view_ious.values())))

    kept: list[LiftedBox] = []
    for result in sorted((r for r in lifted if r.reject_reason is None), key=support, reverse=True):
        overlap = max(((gravity_aligned_iou(result.box, other.box), other) for other in kept
                       if other.category == result.category), key=lambda pair: pair[0], default=(0.0, None))
        if overlap[0] >= min_iou:
            result.reject_reason = "duplicate_track"
            result.reject_detail = f"3D IoU {overlap[0]:.2f} with track {overlap[1].track_id}"
        else:
            kept.append(result)
    return lifted


@dataclass
class LiftingScore:
    """Lifted boxes against every ground-truth object (unseen ones included: they count as misses)."""

    truth: int
    kept: int
    matched_ious: list[float]  # IoU of each one-to-one match (same category, IoU > 0)

    def recall(self, threshold: float) -> float:
        return sum(iou >= threshold for iou in self.matched_ious) / self.truth if self.truth else 0.0

    def precision(self, threshold: float) -> float:
        return sum(iou >= threshold for iou in self.matched_ious) / self.kept if self.kept else 0.0

    def merged(self, other: LiftingScore) -> LiftingScore:
        return LiftingScore(self.truth + other.truth, self.kept + other.kept, self.matched_ious + other.matched_ious)


def score_lifted_boxes(kept: list[tuple[str, OrientedBox]], truth: list[tuple[str, OrientedBox]]) -> LiftingScore:
    """One-to-one matching of kept boxes to ground truth of the same category maximising total 3D IoU."""
    from scipy.optimize import linear_sum_assignment

    ious = np.array([[gravity_aligned_iou(box, true_box) if category == true_category else 0.0
                      for true_category, true_box in truth] for category, box in kept])
    ious = ious.reshape(len(kept), len(truth))
    rows, cols = linear_sum_assignment(ious, maximize=True)
    return LiftingScore(len(truth), len(kept), [float(ious[r, c]) for r, c in zip(rows, cols) if ious[r, c] > 0])
