"""Independent checks: recompute every sub-task's answer by another method than its generator.

Distances and extents come from densely sampled surface points (brute force with a k-d tree) instead of the
exact box formulas; camera quantities from homogeneous matrix inverses instead of the rigid-transform
shortcut; directions from rotations into a local frame instead of sector angles; visibility by recounting
pixels of the raw instance maps instead of the object-frame index; drawn anchors are identified by projecting
box corners and matching boxes by IoU. A check returns None when the answer agrees, else what differs.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

import numpy as np
from scipy.spatial import ConvexHull, cKDTree

from data_engine.conventions import OrientedBox
from openspatial.projection import box_surface_points
from openspatial.qa.tasks.base import QASample
from openspatial.scene import Scene, SceneObject

SURFACE_SAMPLES = 21  # per face side


def _surface(box: OrientedBox) -> np.ndarray:
    return box_surface_points(box, SURFACE_SAMPLES)


def _spacing(box: OrientedBox) -> float:
    return float(np.linalg.norm(box.extents)) / (SURFACE_SAMPLES - 1)


def _sampled_distance(a: OrientedBox, b: OrientedBox) -> tuple[float, float]:
    """Brute-force closest distance between the surfaces and its sampling tolerance."""
    distances, _ = cKDTree(_surface(b)).query(_surface(a))
    return float(distances.min()), _spacing(a) + _spacing(b)


def _camera_coordinates(scene: Scene, frame: int, points: np.ndarray) -> np.ndarray:
    homogeneous = np.hstack([points, np.ones((len(points), 1))])
    return np.linalg.solve(scene.frames[frame].pose, homogeneous.T).T[:, :3]


def _objects(scene: Scene, sample: QASample) -> list[SceneObject]:
    by_id = {o.object_id: o for o in scene.objects}
    return [by_id[i] for i in sample.objects]


def _pixel_counts(scene: Scene, obj: SceneObject) -> list[int]:
    return [int(np.count_nonzero(frame.instances == obj.instance_id)) for frame in scene.frames]


def _close(value: float, expected: float, tolerance: float, what: str) -> str | None:
    return None if abs(value - expected) <= tolerance else f"{what}: generated {value:.4f}, check {expected:.4f}"


def _equal(value, expected, what: str) -> str | None:
    return None if value == expected else f"{what}: generated {value!r}, check {expected!r}"


def check_distance(scene: Scene, sample: QASample, _: dict) -> str | None:
    a, b = _objects(scene, sample)
    expected, tolerance = _sampled_distance(a.box, b.box)
    return _close(sample.value, expected, tolerance, "distance")


def check_object_size(scene: Scene, sample: QASample, _: dict) -> str | None:
    (obj,) = _objects(scene, sample)
    points = _surface(obj.box)
    if sample.details["measure"] == "height":
        expected = float(np.ptp(points[:, 2]))
    else:
        expected = max(float(np.ptp(points @ obj.box.rotation[:, axis])) for axis in range(3))
    return _close(sample.value, expected, 1e-6, sample.details["measure"])


def check_depth(scene: Scene, sample: QASample, _: dict) -> str | None:
    (obj,) = _objects(scene, sample)
    expected = _camera_coordinates(scene, sample.frames[0], obj.box.center[None])[0, 2]
    return _close(sample.value, expected, 1e-6, "depth")


def check_relative_size(scene: Scene, sample: QASample, _: dict) -> str | None:
    a, b = _objects(scene, sample)
    volume_a, volume_b = ConvexHull(a.box.corners()).volume, ConvexHull(b.box.corners()).volume
    return _equal(sample.value, a.object_id if volume_a > volume_b else b.object_id, "larger")


def check_egocentric_position(scene: Scene, sample: QASample, thresholds: dict) -> str | None:
    a, b = _objects(scene, sample)
    frame = sample.frames[0]
    points_a = _camera_coordinates(scene, frame, _surface(a.box))
    points_b = _camera_coordinates(scene, frame, _surface(b.box))
    axis, sign = {"left": (0, 1), "right": (0, -1), "in_front": (2, 1), "behind": (2, -1),
                  "below": ("z", 1), "above": ("z", -1)}[sample.value["relation"]]
    if axis == "z":
        values_a, values_b = _surface(a.box)[:, 2], _surface(b.box)[:, 2]
    else:
        values_a, values_b = points_a[:, axis], points_b[:, axis]
    # "A <relation> B" holds when A lies wholly on the low side of B along the axis (sign flips it).
    holds = bool(np.max(sign * values_a) + thresholds["min_gap_m"] <= np.min(sign * values_b) + 1e-9)
    return _equal(sample.value["holds"], holds, f"{sample.value['relation']} holds")


def _ground_frame(forward: np.ndarray) -> np.ndarray:
    """2x2 rotation taking ground-plane world vectors to (forward, left) coordinates."""
    forward = forward[:2] / np.linalg.norm(forward[:2])
    return np.array([forward, [-forward[1], forward[0]]])


def _quadrant(local: np.ndarray, labels: dict[tuple[int, int], str]) -> str:
    return labels[(int(np.sign(local[0])), int(np.sign(local[1])))]


def check_allocentric_direction(scene: Scene, sample: QASample, _: dict) -> str | None:
    a, b, c = _objects(scene, sample)
    local = _ground_frame(b.box.center - a.box.center) @ (c.box.center - a.box.center)[:2]
    if abs(local[0]) > abs(local[1]):
        expected = "front" if local[0] > 0 else "back"
    else:
        expected = "left" if local[1] > 0 else "right"
    return _equal(sample.value, expected, "direction") or _check_letter(sample)


def _check_letter(sample: QASample) -> str | None:
    options, letter = sample.details["options"], sample.details["letter"]
    return _equal(options["ABCD".index(letter)], sample.value, "option at the answer letter")


def check_proximity(scene: Scene, sample: QASample, _: dict) -> str | None:
    x, a, b = _objects(scene, sample)
    distance_a, _ = _sampled_distance(x.box, a.box)
    distance_b, _ = _sampled_distance(x.box, b.box)
    return _equal(sample.value, a.object_id if distance_a < distance_b else b.object_id, "closer")


def check_height_comparison(scene: Scene, sample: QASample, _: dict) -> str | None:
    a, b = _objects(scene, sample)
    higher = a if _surface(a.box)[:, 2].max() > _surface(b.box)[:, 2].max() else b
    return _equal(sample.value, higher.object_id, "higher")


def _forward(scene: Scene, frame: int) -> np.ndarray:
    return (scene.frames[frame].pose @ np.array([0.0, 0.0, 1.0, 0.0]))[:3]


def _heading_angle(scene: Scene, frame: int) -> float:
    """Heading about +Z (radians) as written in data_engine.conventions, from angles: the optical axis's azimuth
    while it is within 45 degrees of level, else the azimuth of the image's top (-y looking down, +y up)."""
    rotation = scene.frames[frame].pose[:3, :3]
    forward = rotation[:, 2]
    if abs(math.atan2(forward[2], math.hypot(forward[0], forward[1]))) <= math.pi / 4:
        return math.atan2(forward[1], forward[0])
    top = -rotation[:, 1] if forward[2] < 0 else rotation[:, 1]
    return math.atan2(top[1], top[0])


def _turn_degrees(scene: Scene, first: int, second: int) -> float:
    turn = math.degrees(_heading_angle(scene, second) - _heading_angle(scene, first))
    return (turn + 180.0) % 360.0 - 180.0


def check_camera_motion(scene: Scene, sample: QASample, thresholds: dict) -> str | None:
    first, second = sample.frames
    heading = _heading_angle(scene, first)
    moved = scene.frames[second].pose[:3, 3] - scene.frames[first].pose[:3, 3]
    # Horizontal components along camera 1's heading and its left; the vertical part is not a move option.
    ahead = moved[0] * math.cos(heading) + moved[1] * math.sin(heading)
    left = -moved[0] * math.sin(heading) + moved[1] * math.cos(heading)
    moves = {"move_right": -left, "move_left": left, "forward": ahead, "backward": -ahead}
    move = max(moves, key=moves.get)
    turn_degrees = _turn_degrees(scene, first, second)
    turn = "no_turn" if abs(turn_degrees) < thresholds["turn_threshold_deg"] else \
        ("turn_left" if turn_degrees > 0 else "turn_right")
    return _equal(sample.value, f"{move}+{turn}", "motion") or _check_letter(sample)


def check_relative_pose(scene: Scene, sample: QASample, _: dict) -> str | None:
    first, second = sample.frames
    pitch = [math.degrees(math.atan2(f[2], math.hypot(f[0], f[1])))
             for f in (_forward(scene, first), _forward(scene, second))]
    distance = float(np.sqrt(np.sum((scene.frames[second].pose[:3, 3] - scene.frames[first].pose[:3, 3]) ** 2)))
    return (_close(sample.value["yaw_deg"], _turn_degrees(scene, first, second), 1e-6, "yaw")
            or _close(sample.value["pitch_deg"], pitch[1] - pitch[0], 1e-6, "pitch")
            or _close(sample.value["translation_m"], distance, 1e-9, "translation"))


def check_object_camera_distance(scene: Scene, sample: QASample, _: dict) -> str | None:
    (obj,) = _objects(scene, sample)
    tree = cKDTree(_surface(obj.box))
    distances = [tree.query(scene.frames[f].pose[:3, 3])[0] for f in sample.frames]
    return _equal(sample.value, 1 if distances[0] < distances[1] else 2, "closer image")


def _projected_corner_box(scene: Scene, frame: int, box: OrientedBox) -> tuple[float, float, float, float] | None:
    camera = _camera_coordinates(scene, frame, box.corners())
    if np.any(camera[:, 2] <= 0):
        return None
    pixels = (scene.frames[frame].intrinsics @ camera.T).T
    pixels = pixels[:, :2] / pixels[:, 2:]
    width, height = scene.frames[frame].width, scene.frames[frame].height
    x0, y0 = np.clip(pixels.min(axis=0), 0, [width, height])
    x1, y1 = np.clip(pixels.max(axis=0), 0, [width, height])
    return float(x0), float(y0), float(x1), float(y1)


def _iou(a, b) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _identify(scene: Scene, frame: int, bbox) -> str:
    """The scene object whose projected 3D box best matches a drawn 2D box."""
    scores = {}
    for obj in scene.objects:
        projected = _projected_corner_box(scene, frame, obj.box)
        scores[obj.object_id] = _iou(projected, bbox) if projected else 0.0
    return max(scores, key=scores.get)


def check_correspondence(scene: Scene, sample: QASample, _: dict) -> str | None:
    marked = _identify(scene, sample.frames[0], sample.anchors[0].bbox)
    labelled = {a.label: _identify(scene, sample.frames[1], a.bbox) for a in sample.anchors[1:]}
    matches = [label for label, object_id in labelled.items() if object_id == marked]
    return _equal([sample.value], matches, "matching label")


def check_instance_counting(scene: Scene, sample: QASample, thresholds: dict) -> str | None:
    category = sample.details["category"]
    seen = [o for o in scene.objects if o.category == category
            and max(_pixel_counts(scene, o)[f] for f in sample.frames) >= thresholds["min_visible_pixels"]]
    return _equal(sample.value, len(seen), "count")


def check_unseen_pair_distance(scene: Scene, sample: QASample, thresholds: dict) -> str | None:
    a, b = _objects(scene, sample)
    together = [f for f, (pa, pb) in enumerate(zip(_pixel_counts(scene, a), _pixel_counts(scene, b)))
                if min(pa, pb) >= thresholds["min_visible_pixels"]]
    expected, tolerance = _sampled_distance(a.box, b.box)
    return _equal(together, [], "frames seeing both") or _close(sample.value, expected, tolerance, "distance")


def check_birdseye_position(scene: Scene, sample: QASample, _: dict) -> str | None:
    a, b = _objects(scene, sample)
    heading = _heading_angle(scene, sample.frames[0])
    local = _ground_frame(np.array([math.cos(heading), math.sin(heading)])) @ (b.box.center - a.box.center)[:2]
    labels = {(1, 1): "front_left", (1, -1): "front_right", (-1, 1): "back_left", (-1, -1): "back_right"}
    return _equal(sample.value, _quadrant(local, labels), "direction") or _check_letter(sample)


def check_scene_caption(scene: Scene, sample: QASample, _: dict) -> str | None:
    counts = dict(sorted(Counter(o.category for o in scene.objects).items()))
    by_id = {o.object_id: o for o in scene.objects}
    for top_id, support_id in sample.value["relations"]:
        top, support = _surface(by_id[top_id].box), _surface(by_id[support_id].box)
        if abs(top[:, 2].min() - support[:, 2].max()) > 0.01:
            return f"relation {top_id} on {support_id}: not resting on it"
    return _equal(sample.value["counts"], counts, "counts")


def check_grounding_3d(scene: Scene, sample: QASample, _: dict) -> str | None:
    (obj,) = _objects(scene, sample)
    center = _camera_coordinates(scene, sample.frames[0], obj.box.center[None])[0]
    error = float(np.abs(np.asarray(sample.value["center"]) - center).max())
    size_error = float(np.abs(np.sort(sample.value["size"]) - np.sort([np.ptp(_surface(obj.box) @ obj.box.rotation[:, i])
                                                                        for i in range(3)])).max())
    return _close(error, 0.0, 1e-6, "centre") or _close(size_error, 0.0, 1e-6, "size")


def check_orientation(scene: Scene, sample: QASample, _: dict) -> str | None:
    (obj,) = _objects(scene, sample)
    camera_forward = _forward(scene, sample.frames[0])
    camera_right = (scene.frames[sample.frames[0]].pose @ np.array([1.0, 0.0, 0.0, 0.0]))[:3]
    front = obj.box.rotation[:, 0]
    along, across = front @ camera_forward, front @ camera_right
    if abs(along) > abs(across):
        expected = "away" if along > 0 else "toward"
    else:
        expected = "facing_right" if across > 0 else "facing_left"
    return _equal(sample.value, expected, "facing") or _check_letter(sample)


def check_appearance_order(scene: Scene, sample: QASample, thresholds: dict) -> str | None:
    objects = _objects(scene, sample)
    first = {o.object_id: next(f for f, count in enumerate(_pixel_counts(scene, o))
                               if count >= thresholds["min_visible_pixels"]) for o in objects}
    return _equal(sample.value, sorted(first, key=first.get), "order")


CHECKS: dict[str, Callable[[Scene, QASample, dict], str | None]] = {
    "distance": check_distance, "object_size": check_object_size, "depth": check_depth,
    "relative_size": check_relative_size, "egocentric_position": check_egocentric_position,
    "allocentric_direction": check_allocentric_direction, "proximity": check_proximity,
    "height_comparison": check_height_comparison, "camera_motion": check_camera_motion,
    "relative_pose": check_relative_pose, "object_camera_distance": check_object_camera_distance,
    "correspondence": check_correspondence, "instance_counting": check_instance_counting,
    "unseen_pair_distance": check_unseen_pair_distance, "birdseye_position": check_birdseye_position,
    "scene_caption": check_scene_caption, "grounding_3d": check_grounding_3d, "orientation": check_orientation,
    "appearance_order": check_appearance_order,
}


def check_sample(scene: Scene, sample: QASample, thresholds: dict) -> str | None:
    return CHECKS[sample.task](scene, sample, thresholds)
