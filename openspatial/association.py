"""Associate per-frame instance masks into tracks across a video without ground-truth ids.

A per-frame segmenter numbers its instances afresh in every frame, so lifting first has to decide which masks
show the same object. Frames are taken in order; a track is the 3D points its masks back-projected to so far
(a bounded random sample) and its category. For every frame, each (track, detection) pair of the same category
gets a cost from two cues:
- reprojected mask IoU: the track's points projected into this frame, kept where they are not hidden behind
  the frame's own depth (an occluded object must not claim the occluder's mask), splatted and closed into a
  mask, against the detection's mask;
- 3D centroid distance: median of the track's points against the median of the detection's back-projected
  points (medians: a mask that bled into a neighbour drags a mean, not a median), over a reach of
  `max_centroid_distance_m` or half the larger 3D diagonal of the two point sets, whichever is larger: the
  visible surface of a bed or a bookshelf seen from its other side has its centre up to a metre away.
`cost = iou_weight * (1 - IoU) + distance / reach`; pairs above `max_cost`, or further apart than the reach
while their reprojected IoU is below `min_iou`, cannot match. The Hungarian
assignment (`scipy.optimize.linear_sum_assignment`) picks one detection per track with the least total cost;
unmatched detections start new tracks. Detections smaller than `min_mask_pixels` or without depth are ignored.

Frame-to-frame matching splits an object whose next view shows other faces (a loop around a room turns tens of
degrees between frames); afterwards two tracks of one category that never share a frame are merged when at
least `min_fragment_overlap` of the smaller one's points lie within `fragment_distance_m` of the other's (the
faces meet at the object's edges).

The result relabels every frame's instance map with track ids (0 elsewhere), the form `lifting.lift_tracks`
takes, and keeps which per-frame id became which track, so every lifted box traces back to its masks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.optimize import linear_sum_assignment

from openspatial.projection import back_project_pixels, camera_to_pixels, world_to_camera
from openspatial.scene import Frame

_INFEASIBLE = 1e6


class AssociationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_mask_pixels: int = Field(default=50, ge=1)
    points_per_detection: int = Field(default=400, gt=0)  # back-projected sample per mask
    points_per_track: int = Field(default=3000, gt=0)
    max_centroid_distance_m: float = Field(default=0.6, gt=0)
    min_iou: float = Field(default=0.2, ge=0, le=1)  # a far pair still matches when its masks agree this well
    iou_weight: float = Field(default=1.0, ge=0)
    max_cost: float = Field(default=1.75, gt=0)
    occlusion_margin: float = Field(default=0.1, ge=0)  # relative depth a reprojected point may lie behind a surface
    splat_pixels: int = Field(default=2, ge=0)  # reprojected points are grown by this much (their spacing)
    fragment_distance_m: float = Field(default=0.1, ge=0)
    min_fragment_overlap: float = Field(default=0.2, gt=0, le=1)


@dataclass
class Detection:
    frame_index: int
    instance_id: int  # the frame's own id
    category: str
    mask: np.ndarray  # (H, W) bool
    points: np.ndarray  # (N, 3) world

    @property
    def centroid(self) -> np.ndarray:
        return np.median(self.points, axis=0)


@dataclass
class Track:
    track_id: int
    points: np.ndarray
    categories: Counter = field(default_factory=Counter)
    members: dict[int, int] = field(default_factory=dict)  # frame index -> that frame's instance id

    @property
    def category(self) -> str:
        return self.categories.most_common(1)[0][0]

    @property
    def centroid(self) -> np.ndarray:
        return np.median(self.points, axis=0)


@dataclass
class Association:
    frames: list[Frame]  # copies whose instance maps hold track ids
    categories: dict[int, str]  # track id -> majority category of its masks
    members: dict[int, dict[int, int]]  # track id -> {frame index: per-frame instance id}


def _detections(frame: Frame, frame_index: int, labels: dict[int, str], config: AssociationConfig,
                rng: np.random.Generator) -> list[Detection]:
    detections = []
    for instance_id, category in sorted(labels.items()):
        mask = frame.instances == instance_id
        rows, cols = np.nonzero(mask & (frame.depth > 0))
        if len(rows) < config.min_mask_pixels:
            continue
        if len(rows) > config.points_per_detection:
            keep = rng.choice(len(rows), config.points_per_detection, replace=False)
            rows, cols = rows[keep], cols[keep]
        detections.append(Detection(frame_index, instance_id, category, mask, back_project_pixels(frame, rows, cols)))
    return detections


def reprojected_mask(frame: Frame, points: np.ndarray, config: AssociationConfig) -> np.ndarray:
    """Pixels of `frame` where `points` would be seen: in front of the camera, inside the image and not behind
    the frame's observed surface; splatted by `splat_pixels` and closed so a sparse sample covers its area."""
    mask = np.zeros((frame.height, frame.width), np.uint8)
    camera = world_to_camera(frame, points)
    camera = camera[camera[:, 2] > 0.05]
    if not len(camera):
        return mask.astype(bool)
    pixels = np.floor(camera_to_pixels(frame, camera)).astype(int)
    inside = (pixels[:, 0] >= 0) & (pixels[:, 0] < frame.width) & (pixels[:, 1] >= 0) & (pixels[:, 1] < frame.height)
    pixels, depth = pixels[inside], camera[inside, 2]
    observed = frame.depth[pixels[:, 1], pixels[:, 0]]
    visible = (observed <= 0) | (depth <= observed * (1 + config.occlusion_margin))
    mask[pixels[visible, 1], pixels[visible, 0]] = 1
    if config.splat_pixels:
        kernel = np.ones((2 * config.splat_pixels + 1,) * 2, np.uint8)
        mask = cv2.morphologyEx(cv2.dilate(mask, kernel), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    return mask.astype(bool)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def _half_diagonal(points: np.ndarray) -> float:
    """Half the diagonal of the points' bounding box (2nd-98th percentile against strays)."""
    low, high = np.percentile(points, [2, 98], axis=0)
    return float(np.linalg.norm(high - low) / 2)


def association_cost(track: Track, detection: Detection, frame: Frame, config: AssociationConfig) -> float:
    if track.category != detection.category:
        return _INFEASIBLE
    iou = _iou(reprojected_mask(frame, track.points, config), detection.mask)
    distance = float(np.linalg.norm(track.centroid - detection.centroid))
    reach = max(config.max_centroid_distance_m, _half_diagonal(track.points), _half_diagonal(detection.points))
    if distance > reach and iou < config.min_iou:
        return _INFEASIBLE
    cost = config.iou_weight * (1.0 - iou) + distance / reach
    return cost if cost <= config.max_cost else _INFEASIBLE


def _overlap(a: np.ndarray, b: np.ndarray, distance: float) -> float:
    """Share of the smaller point set lying within `distance` of the other set."""
    from scipy.spatial import cKDTree

    small, large = (a, b) if len(a) <= len(b) else (b, a)
    nearest, _ = cKDTree(large).query(small, distance_upper_bound=distance)
    return float(np.mean(np.isfinite(nearest)))


def _merge_fragments(tracks: list[Track], config: AssociationConfig, rng: np.random.Generator) -> list[Track]:
    merged = True
    while merged:
        merged = False
        for i, a in enumerate(tracks):
            for b in tracks[i + 1:]:
                if a.category != b.category or set(a.members) & set(b.members):
                    continue
                if _overlap(a.points, b.points, config.fragment_distance_m) >= config.min_fragment_overlap:
                    a.members.update(b.members)
                    a.categories.update(b.categories)
                    points = np.concatenate([a.points, b.points])
                    if len(points) > config.points_per_track:
                        points = points[rng.choice(len(points), config.points_per_track, replace=False)]
                    a.points = points
                    tracks.remove(b)
                    merged = True
                    break
            if merged:
                break
    return tracks


def associate(frames: list[Frame], labels: list[dict[int, str]], config: AssociationConfig = AssociationConfig(),
              seed: int = 0) -> Association:
    """Tracks over `frames` from per-frame instance maps and their id -> category tables (see module doc)."""
    rng = np.random.default_rng(seed)
    tracks: list[Track] = []
    for frame_index, (frame, frame_labels) in enumerate(zip(frames, labels)):
        detections = _detections(frame, frame_index, frame_labels, config, rng)
        candidates = [t for t in tracks if frame_index not in t.members]
        matched: dict[int, Track] = {}
        if candidates and detections:
            costs = np.array([[association_cost(t, d, frame, config) for d in detections] for t in candidates])
            for row, col in zip(*linear_sum_assignment(costs)):
                if costs[row, col] < _INFEASIBLE:
                    matched[col] = candidates[row]
        for number, detection in enumerate(detections):
            track = matched.get(number)
            if track is None:
                track = Track(len(tracks) + 1, np.zeros((0, 3)))
                tracks.append(track)
            track.members[frame_index] = detection.instance_id
            track.categories[detection.category] += 1
            points = np.concatenate([track.points, detection.points])
            if len(points) > config.points_per_track:
                points = points[rng.choice(len(points), config.points_per_track, replace=False)]
            track.points = points
    tracks = _merge_fragments(tracks, config, rng)
    relabelled = []
    for frame_index, frame in enumerate(frames):
        lookup = {t.members[frame_index]: t.track_id for t in tracks if frame_index in t.members}
        ids = np.zeros_like(frame.instances)
        for instance_id, track_id in lookup.items():
            ids[frame.instances == instance_id] = track_id
        relabelled.append(Frame(frame.frame_id, frame.width, frame.height, frame.intrinsics, frame.pose, frame.image,
                                frame.depth, ids))
    return Association(relabelled, {t.track_id: t.category for t in tracks},
                       {t.track_id: dict(t.members) for t in tracks})
