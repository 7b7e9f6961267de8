"""Geometry is checked, not trusted: rendered masks against known geometry, rays against the scene.

Reprojection: an asset is a union of convex pieces known without the renderer (the primitives of a
procedural asset from the scene description, the triangles of a loaded mesh). Each piece is projected with
the recorded camera and filled as its convex hull, which gives the silhouette the mask should have. Pixels
showing another object are left out of both masks (it may hide the asset there). The reprojection error is
the distance in pixels between the two silhouettes' centroids: a wrong pose, intrinsic or image
orientation moves it by the size of the mistake, while sub-pixel slivers that a pixel-sampled mask
cannot show (a cone's tip) hardly move it. The overlap (IoU) is reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from data_engine.conventions import pixel_rays, project_points
from render.geometry import central_pixel_grid
from render.scene import Camera

@dataclass(frozen=True)
class Reprojection:
    error_px: float  # distance between the predicted and rendered silhouette centroids
    iou: float


def _fill_convex(mask: np.ndarray, points: np.ndarray) -> None:
    """Set the pixels whose centres lie inside the convex hull of `points` (pixel coordinates)."""
    hull = cv2.convexHull(points.astype(np.float32)).reshape(-1, 2).astype(float)
    if len(hull) < 3:
        return
    height, width = mask.shape
    x0, y0 = np.maximum(np.floor(hull.min(axis=0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(hull.max(axis=0)).astype(int), (width - 1, height - 1))
    if x0 > x1 or y0 > y1:
        return
    ys, xs = np.mgrid[y0:y1 + 1, x0:x1 + 1]
    edge_x, edge_y = (np.roll(hull, -1, axis=0) - hull).T[:, :, None, None]
    start_x, start_y = hull.T[:, :, None, None]
    # cross(edge, pixel - start) has one sign for every edge exactly when the pixel is inside.
    cross = edge_x * (ys - start_y) - edge_y * (xs - start_x)
    inside = np.all(cross >= 0, axis=0) | np.all(cross <= 0, axis=0)
    mask[y0:y1 + 1, x0:x1 + 1] |= inside


def predicted_silhouette(pieces: list[np.ndarray], camera: Camera) -> np.ndarray | None:
    """Pixels whose centres the projected convex pieces (world points each) cover, as Cycles samples the
    index pass; None if any piece reaches behind the camera."""
    mask = np.zeros((camera.height, camera.width), bool)
    for piece in pieces:
        pixels, depth = project_points(piece, camera.intrinsics(), camera.pose())
        if np.any(depth <= 0):
            return None
        _fill_convex(mask, pixels)
    return mask


def reprojection_check(pieces: list[np.ndarray], camera: Camera, index_mask: np.ndarray,
                       pass_index: int) -> Reprojection | None:
    """Compare the predicted silhouette with the rendered one; None when either is empty or unprojectable."""
    predicted = predicted_silhouette(pieces, camera)
    if predicted is None:
        return None
    comparable = (index_mask == 0) | (index_mask == pass_index)
    predicted &= comparable
    rendered = index_mask == pass_index
    if not predicted.any() or not rendered.any():
        return None
    centroids = [np.array(np.nonzero(mask), dtype=float).mean(axis=1) for mask in (predicted, rendered)]
    iou = float((predicted & rendered).sum() / (predicted | rendered).sum())
    return Reprojection(error_px=float(np.linalg.norm(centroids[0] - centroids[1])), iou=iou)


def central_rays(camera: Camera, grid: int, central_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """World-space rays through a grid over the central region of the camera's image plane."""
    return pixel_rays(central_pixel_grid(camera.width, camera.height, grid, central_fraction),
                      camera.intrinsics(), camera.pose())


@dataclass(frozen=True)
class RayVisibility:
    """Central rays of one camera: how many cross the target (coverage) and, of those, how many reach it
    before anything else (unobstructed fraction)."""

    n_rays: int
    n_crossing: int
    n_unobstructed: int

    @property
    def coverage(self) -> float:
        return self.n_crossing / self.n_rays

    @property
    def unobstructed_fraction(self) -> float:
        return self.n_unobstructed / self.n_crossing if self.n_crossing else 0.0

    def reject_reason(self, *, min_coverage: float, min_unobstructed: float) -> str | None:
        if self.coverage < min_coverage:
            return "off_target"
        if self.unobstructed_fraction < min_unobstructed:
            return "occluded"
        return None


def ray_visibility(first_hits: np.ndarray, reaches_target: np.ndarray, target_pass_index: int) -> RayVisibility:
    return RayVisibility(n_rays=len(first_hits), n_crossing=int(reaches_target.sum()),
                         n_unobstructed=int(np.sum(first_hits == target_pass_index)))
