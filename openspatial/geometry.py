"""Exact geometric measures on oriented boxes (the definitions the QA answers are computed from).

Distance between two objects is the distance between their closest points (0 when boxes touch or overlap),
never between centres. For two disjoint convex polyhedra the closest pair is vertex-face or edge-edge, so
the exact distance is the minimum over vertex-to-box and edge-to-edge distances; overlap is decided by the
separating axis theorem first.
"""

from __future__ import annotations

import numpy as np

from data_engine.conventions import OrientedBox

_EDGE_CORNER_PAIRS = np.array([(i, i | 1 << axis) for i in range(8) for axis in range(3) if not i >> axis & 1])


def point_box_distance(points: np.ndarray, box: OrientedBox) -> np.ndarray:
    """Euclidean distance from each point to the solid box (0 inside)."""
    local = box.to_local(np.atleast_2d(points))
    outside = np.maximum(np.abs(local) - box.extents / 2, 0.0)
    return np.linalg.norm(outside, axis=-1)


def box_edges(box: OrientedBox) -> np.ndarray:
    """(12, 2, 3) end points of the box's edges."""
    return box.corners()[_EDGE_CORNER_PAIRS]


def boxes_overlap(a: OrientedBox, b: OrientedBox, tolerance: float = 1e-9) -> bool:
    """Separating axis test over the 15 candidate axes of two boxes."""
    cross_axes = np.cross(a.rotation.T[:, None, :], b.rotation.T[None, :, :]).reshape(9, 3)
    axes = np.concatenate([a.rotation.T, b.rotation.T, cross_axes])
    norms = np.linalg.norm(axes, axis=1)
    axes = axes[norms > 1e-9] / norms[norms > 1e-9, None]  # parallel edge pairs give no axis
    radius_a = np.abs(axes @ a.rotation) @ (a.extents / 2)
    radius_b = np.abs(axes @ b.rotation) @ (b.extents / 2)
    return bool(np.all(np.abs(axes @ (b.center - a.center)) <= radius_a + radius_b + tolerance))


def segment_distances(p0: np.ndarray, p1: np.ndarray, q0: np.ndarray, q1: np.ndarray) -> np.ndarray:
    """Closest distance between segments [p0, p1] and [q0, q1], vectorised over leading axes."""
    d1, d2, r = p1 - p0, q1 - q0, p0 - q0
    a = np.sum(d1 * d1, -1)
    e = np.sum(d2 * d2, -1)
    f = np.sum(d2 * r, -1)
    c = np.sum(d1 * r, -1)
    b = np.sum(d1 * d2, -1)
    denominator = a * e - b * b
    safe = np.where(denominator > 1e-12, denominator, 1.0)
    s = np.where(denominator > 1e-12, np.clip((b * f - c * e) / safe, 0.0, 1.0), 0.0)
    t = (b * s + f) / np.where(e > 1e-12, e, 1.0)
    # Re-clamp t, then recompute s for the clamped t (standard two-step clamp for segments).
    t_clamped = np.clip(t, 0.0, 1.0)
    s = np.where(t != t_clamped, np.clip((b * t_clamped - c) / np.where(a > 1e-12, a, 1.0), 0.0, 1.0), s)
    closest_p = p0 + s[..., None] * d1
    closest_q = q0 + t_clamped[..., None] * d2
    return np.linalg.norm(closest_p - closest_q, axis=-1)


def box_box_distance(a: OrientedBox, b: OrientedBox) -> float:
    if boxes_overlap(a, b):
        return 0.0
    vertex_distances = min(point_box_distance(a.corners(), b).min(), point_box_distance(b.corners(), a).min())
    edges_a, edges_b = box_edges(a), box_edges(b)
    edge_distances = segment_distances(edges_a[:, None, 0], edges_a[:, None, 1],
                                       edges_b[None, :, 0], edges_b[None, :, 1])
    return float(min(vertex_distances, edge_distances.min()))


def box_height_range(box: OrientedBox) -> tuple[float, float]:
    """Lowest and highest world z of the box."""
    z = box.corners()[:, 2]
    return float(z.min()), float(z.max())
