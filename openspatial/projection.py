"""Pinhole projection of boxes into frames: camera transforms, amodal footprints, truncation, RLE masks."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from data_engine.conventions import OrientedBox, invert_pose
from openspatial.scene import Frame

_FACE_GRID = 7  # samples per face side when tracing a box's projected outline


def world_to_camera(frame: Frame, points: np.ndarray) -> np.ndarray:
    world_to_cam = invert_pose(frame.pose)
    return np.asarray(points, float) @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]


def box_in_camera(frame: Frame, box: OrientedBox) -> OrientedBox:
    """The box expressed in the frame's camera coordinates."""
    center = world_to_camera(frame, box.center[None])[0]
    return OrientedBox(center, box.extents.copy(), frame.pose[:3, :3].T @ box.rotation)


def camera_to_pixels(frame: Frame, camera_points: np.ndarray) -> np.ndarray:
    """(N, 3) camera points with z > 0 -> (N, 2) pixel coordinates (u right, v down)."""
    homogeneous = camera_points @ frame.intrinsics.T
    return homogeneous[:, :2] / homogeneous[:, 2:3]


def back_project_pixels(frame: Frame, rows: np.ndarray, cols: np.ndarray,
                        depth: np.ndarray | None = None) -> np.ndarray:
    """World points of the given pixels (centres), which must have a depth (the frame's, or `depth` if given)."""
    z = (frame.depth if depth is None else depth)[rows, cols].astype(float)
    (fx, skew, cx), (_, fy, cy) = frame.intrinsics[0], frame.intrinsics[1]
    y = (rows + 0.5 - cy) / fy
    x = (cols + 0.5 - cx - skew * y) / fx  # skew is 0 except for tilt-shift cameras (Hypersim)
    camera = np.stack([x * z, y * z, z], axis=1)
    return camera @ frame.pose[:3, :3].T + frame.pose[:3, 3]


def back_project(frame: Frame, mask: np.ndarray) -> np.ndarray:
    """World points of the pixels of `mask` that have a depth."""
    rows, cols = np.nonzero(mask & (frame.depth > 0))
    return back_project_pixels(frame, rows, cols)


def box_surface_points(box: OrientedBox, per_side: int = _FACE_GRID) -> np.ndarray:
    """Points on a grid over each of the six faces (corners and edges included)."""
    grid = np.linspace(-0.5, 0.5, per_side)
    u, v = np.meshgrid(grid, grid)
    u, v = u.ravel(), v.ravel()
    faces = []
    for axis in range(3):
        b, c = [a for a in range(3) if a != axis]
        for side in (-0.5, 0.5):
            local = np.zeros((u.size, 3))
            local[:, axis], local[:, b], local[:, c] = side, u, v
            faces.append(local)
    local = np.concatenate(faces) * box.extents
    return box.center + local @ box.rotation.T


@dataclass(frozen=True)
class Footprint:
    """Where a box lands in a frame, ignoring occlusion."""

    in_view: bool
    truncation: float  # share of the projected outline outside the image (or behind the camera)
    mask: np.ndarray | None  # (H, W) bool, the in-image part of the projected outline
    bbox: tuple[float, float, float, float] | None  # in-image outline's x0, y0, x1, y1


def project_box(frame: Frame, box: OrientedBox, near: float) -> Footprint:
    camera = world_to_camera(frame, box_surface_points(box))
    in_front = camera[:, 2] > near
    if not in_front.any():
        return Footprint(False, 1.0, None, None)
    pixels = camera_to_pixels(frame, camera[in_front]).astype(np.float32)
    hull = cv2.convexHull(pixels)
    hull_area = cv2.contourArea(hull)
    image_rect = np.array([[0, 0], [frame.width, 0], [frame.width, frame.height], [0, frame.height]], np.float32)
    inside_area, inside = cv2.intersectConvexConvex(hull, image_rect)
    if inside is None or inside_area <= 0 or hull_area <= 0:
        return Footprint(False, 1.0, None, None)
    truncation = 1.0 - in_front.mean() * inside_area / hull_area
    mask = np.zeros((frame.height, frame.width), np.uint8)
    cv2.fillConvexPoly(mask, np.round(inside.reshape(-1, 2) * 16).astype(np.int32), 1, lineType=cv2.LINE_8, shift=4)
    corners = inside.reshape(-1, 2)
    (x0, y0), (x1, y1) = corners.min(axis=0), corners.max(axis=0)
    bbox = (float(x0), float(y0), float(x1), float(y1))
    return Footprint(True, float(np.clip(truncation, 0.0, 1.0)), mask.astype(bool), bbox)


def mask_bbox(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    return float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)


def encode_rle(mask: np.ndarray) -> dict:
    """COCO-style uncompressed RLE: column-major run lengths, starting with a run of zeros."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    changes = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    boundaries = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(boundaries).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def decode_rle(rle: dict) -> np.ndarray:
    height, width = rle["size"]
    values = np.zeros(len(rle["counts"]), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, rle["counts"])
    return flat.reshape((height, width), order="F")
