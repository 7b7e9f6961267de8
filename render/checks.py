"""Geometry is checked, not trusted: rendered masks against known geometry, rays against the scene.

Reprojection: an asset is a union of convex pieces known without the renderer (the primitives of a
procedural asset from the scene description, the triangles of a loaded mesh). Each piece is projected with
the recorded camera and filled as its convex hull, which gives the silhouette the mask should have. Pixels
showing another object are left out of both masks (it may hide the asset there). The reprojection error is
the distance in pixels between the two silhouettes' centroids: a wrong pose, intrinsic or image
orientation moves it by the size of the mistake, while sub-pixel slivers that a pixel-sampled mask
cannot show (a cone's tip) hardly move it. The overlap (IoU) is reported beside it.

Visibility: a candidate camera is judged on the subject itself. Rays through pixels of its whole predicted
silhouette (on an image plane padded beyond the frame) go to the ray caster; the visible fraction is the
share that reach the subject first inside the frame, so a thin pole is sampled on its own pixels and a
subject hidden at its edges counts as hidden there.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from data_engine.conventions import pixel_rays, project_points
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


@dataclass(frozen=True)
class SilhouetteRays:
    """Rays through the pixels of a subject's whole projected silhouette, the parts outside the frame too."""

    origin: np.ndarray  # (3,)
    directions: np.ndarray  # (N, 3) unit vectors
    in_frame: np.ndarray  # (N,) bool: the pixel lies inside the image


def silhouette_rays(pieces: list[np.ndarray], camera: Camera, *, max_rays: int,
                    frame_padding: float = 0.5) -> SilhouetteRays | None:
    """Up to `max_rays` rays through pixels evenly spread over the subject's predicted silhouette on an
    image plane padded by `frame_padding` of the image size on every side; None when the subject reaches
    behind the camera. A thin subject is sampled on its own pixels, however few they are."""
    pad_x, pad_y = round(camera.width * frame_padding), round(camera.height * frame_padding)
    padded = camera.model_copy(update={"width": camera.width + 2 * pad_x, "height": camera.height + 2 * pad_y,
                                       "cx": camera.cx + pad_x, "cy": camera.cy + pad_y})
    silhouette = predicted_silhouette(pieces, padded)
    if silhouette is None:
        return None
    ys, xs = np.nonzero(silhouette)
    if len(xs) > max_rays:
        keep = np.unique(np.linspace(0, len(xs) - 1, max_rays).round().astype(int))
        ys, xs = ys[keep], xs[keep]
    pixels = np.stack([xs - pad_x, ys - pad_y], axis=1).astype(float)
    in_frame = np.all((pixels >= 0) & (pixels < (camera.width, camera.height)), axis=1)
    origin, directions = pixel_rays(pixels, camera.intrinsics(), camera.pose())
    return SilhouetteRays(origin, directions, in_frame)


# Why a camera is refused: the subject is outside the frame (`off_target`), hidden entirely behind other
# objects (`obstructed`), or in frame but with less of its silhouette seen than the minimum
# (`too_little_visible`: partly hidden, or partly cut off by the frame while mostly hidden).
VISIBILITY_REASONS = ("off_target", "obstructed", "too_little_visible")


@dataclass(frozen=True)
class SubjectVisibility:
    """Rays through the subject's whole silhouette that reach it (first or behind something): how many
    are seen (in frame, the subject hit first), cut off by the frame, or stopped by other objects."""

    n_silhouette: int
    n_seen: int
    n_outside: int
    blockers: dict[int, int]  # pass index of an object in front of the subject -> rays it stops in frame

    @property
    def visible_fraction(self) -> float:
        return self.n_seen / self.n_silhouette if self.n_silhouette else 0.0

    @property
    def hidden_fraction(self) -> float:
        return sum(self.blockers.values()) / self.n_silhouette if self.n_silhouette else 0.0

    @property
    def outside_fraction(self) -> float:
        return self.n_outside / self.n_silhouette if self.n_silhouette else 0.0

    def reject_reason(self, *, min_visible_fraction: float) -> str | None:
        if self.n_silhouette == self.n_outside:  # no ray at all, or all of them outside the frame
            return "off_target"
        if self.visible_fraction >= min_visible_fraction:
            return None
        if self.n_outside > sum(self.blockers.values()):
            return "off_target"
        return "obstructed" if self.n_seen == 0 else "too_little_visible"

    def describe(self, object_names: dict[int, str], *, min_visible_fraction: float) -> str:
        """The cause in words: how much of the silhouette is seen, and what hides or cuts off the rest."""
        if self.n_silhouette == 0:
            return "no ray through the subject's silhouette reaches it (behind the camera or under a pixel)"
        causes = [f"{count / self.n_silhouette:.0%} hidden behind {object_names.get(index, f'object {index}')}"
                  for index, count in sorted(self.blockers.items(), key=lambda item: -item[1])]
        if self.n_outside:
            causes.append(f"{self.outside_fraction:.0%} outside the frame")
        return (f"{self.visible_fraction:.0%} of the subject's silhouette seen (min {min_visible_fraction:.0%})"
                + (f": {', '.join(causes)}" if causes else ""))


def subject_visibility(rays: SilhouetteRays | None, first_hits: np.ndarray, reaches_target: np.ndarray,
                       target_pass_index: int) -> SubjectVisibility:
    """Count the rays of `silhouette_rays` from the ray caster's answer (first pass index hit per ray, and
    whether the ray reaches the target at all); a ray that misses the subject (a sliver the predicted
    silhouette has and the mesh lacks) counts for nothing."""
    if rays is None:
        return SubjectVisibility(0, 0, 0, {})
    crossing = np.asarray(reaches_target, dtype=bool)
    first_hits = np.asarray(first_hits)
    inside = crossing & rays.in_frame
    blocked = inside & (first_hits != target_pass_index)
    indices, counts = np.unique(first_hits[blocked], return_counts=True)
    return SubjectVisibility(n_silhouette=int(crossing.sum()), n_seen=int(np.sum(inside & ~blocked)),
                             n_outside=int(np.sum(crossing & ~rays.in_frame)),
                             blockers={int(i): int(c) for i, c in zip(indices, counts)})
