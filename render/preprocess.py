"""Asset preprocessing: where assets come from, canonical pose, scale normalisation, bounding extent, and
the visibility check of an asset from its rendered mask. Rejections carry reasons.

Canonical frame: the asset's nominal front faces -y, up is +z, it rests on z = 0 centred on the z axis.
Procedural assets are built that way. Blender's glTF/OBJ/PLY importers convert files to Z-up; a file
asset is then turned about z so that its footprint's minimum-area rectangle is axis-aligned with the long
side along x, the usual front of furniture-like objects (which of the two long sides is the front stays
as the file has it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from data_engine.conventions import transform_points
from data_engine.paths import resolve_media_uri
from render.assets import asset_appearance_points, asset_convex_pieces, file_asset
from render.client import RenderWorker
from render.geometry import trs_matrix
from render.procedural import parse_procedural_item_key, procedural_asset
from render.scene import IDENTITY4, Asset, FileAsset, ObjectInstance, RenderScene, matrix_tuple
from render.symmetry import SymmetryKind, measure_symmetry

SUBJECT_PASS_INDEX = 1
SYMMETRY_TOLERANCE = 1e-4  # of the largest side: float noise in exported meshes, far below a pixel


class AssetRejected(ValueError):
    """An asset that cannot be used; `reason` is the stable code stored in the row."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def asset_for_item(upstream_id: str, asset_root: str | None) -> Asset:
    """The asset a row names: `procedural:<category>:<seed>`, or a file path under `asset_root`."""
    if upstream_id.startswith("procedural:"):
        return procedural_asset(*parse_procedural_item_key(upstream_id))
    if asset_root is None:
        raise AssetRejected("asset_root_not_configured", f"{upstream_id}: file asset but the stage has no asset_root")
    return file_asset(resolve_media_uri(upstream_id, Path(asset_root)))


@dataclass(frozen=True)
class PreparedAsset:
    asset: Asset
    object_to_world: np.ndarray  # canonical pose (scale normalised, resting on z = 0, centred)
    pieces: list[np.ndarray]  # the posed asset as convex pieces (world points each), for geometry checks
    extent: np.ndarray  # full side lengths x, y, z after normalisation, metres
    symmetry: SymmetryKind  # about the z axis of this frame, render/symmetry.py

    @property
    def centre(self) -> np.ndarray:
        return np.array([0.0, 0.0, self.extent[2] / 2])

    @property
    def radius(self) -> float:
        return float(np.linalg.norm(self.extent) / 2)

    def instance(self, *, name: str = "subject", pass_index: int = SUBJECT_PASS_INDEX,
                 extra_pose: np.ndarray | None = None) -> ObjectInstance:
        pose = self.object_to_world if extra_pose is None else extra_pose @ self.object_to_world
        return ObjectInstance(name=name, asset=self.asset, object_to_world=matrix_tuple(pose), pass_index=pass_index)

    def convex_pieces(self, extra_pose: np.ndarray | None = None) -> list[np.ndarray]:
        return self.pieces if extra_pose is None else [transform_points(extra_pose, piece) for piece in self.pieces]

    def points(self) -> np.ndarray:
        return np.concatenate(self.pieces)


def raw_convex_pieces(asset: Asset, worker: RenderWorker) -> list[np.ndarray]:
    """The asset in its own frame as convex pieces: primitives for procedural assets, the mesh triangles
    (read through the worker) for files."""
    if not isinstance(asset, FileAsset):
        return asset_convex_pieces(asset)
    probe = RenderScene(objects=(ObjectInstance(name="probe", asset=asset, object_to_world=IDENTITY4, pass_index=1),))
    geometry = worker.request("geometry", {"scene": probe.model_dump(mode="json"), "objects": ["probe"]})["probe"]
    if not geometry["triangles"]:
        raise AssetRejected("empty_mesh", f"{asset.path}: no triangles")
    return list(np.asarray(geometry["triangles"], dtype=float))


def footprint_alignment_deg(points: np.ndarray) -> float:
    """Yaw (degrees) that makes the footprint's minimum-area rectangle axis-aligned, long side along x."""
    (_, _), (width, height), angle = cv2.minAreaRect(points[:, :2].astype(np.float32))
    return -angle + (90.0 if height > width else 0.0)


def prepare_asset(asset: Asset, worker: RenderWorker, *, target_extent: float | None, align_footprint: bool = True,
                  min_extent: float = 1e-3) -> PreparedAsset:
    """Canonical pose: for file assets (if asked) the footprint turned axis-aligned; scaled so the largest
    side is `target_extent` (None keeps metres); centred on the z axis; resting on z = 0."""
    pieces = raw_convex_pieces(asset, worker)
    turn = np.eye(4)
    if align_footprint and isinstance(asset, FileAsset):
        turn = trs_matrix((0, 0, 0), (0, 0, np.radians(footprint_alignment_deg(np.concatenate(pieces)))))
        pieces = [transform_points(turn, piece) for piece in pieces]
    points = np.concatenate(pieces)
    low, high = points.min(axis=0), points.max(axis=0)
    size = high - low
    if size.max() < min_extent:
        raise AssetRejected("degenerate_extent", f"{asset.name}: largest side {size.max():.2e} m")
    scale = target_extent / size.max() if target_extent else 1.0
    pose = np.diag([scale, scale, scale, 1.0])
    pose[:3, 3] = -scale * np.array([(low[0] + high[0]) / 2, (low[1] + high[1]) / 2, low[2]])
    posed = [transform_points(pose, piece) for piece in pieces]
    return PreparedAsset(asset=asset, object_to_world=pose @ turn, pieces=posed, extent=size * scale,
                         symmetry=asset_symmetry(asset, pose @ turn, posed, float(size.max() * scale)))


def asset_symmetry(asset: Asset, object_to_world: np.ndarray, posed_pieces: list[np.ndarray],
                   largest_side: float) -> SymmetryKind:
    """Symmetry about the posed frame's z axis: a file asset's measured on its mesh vertices, a procedural
    asset's from its description (outline points labelled by material and text)."""
    tolerance = SYMMETRY_TOLERANCE * largest_side
    if isinstance(asset, FileAsset):
        vertices = np.unique(np.concatenate(posed_pieces).round(9), axis=0)
        return measure_symmetry(vertices, np.zeros(len(vertices), int), tolerance)
    points, labels = asset_appearance_points(asset)
    return measure_symmetry(transform_points(object_to_world, points), labels, tolerance)


def mask_visibility_reason(object_mask: np.ndarray, *, min_area_fraction: float) -> tuple[str | None, str | None]:
    """Reject a view whose rendered object mask is too small or cut by the image border."""
    area = float(object_mask.mean())
    if area < min_area_fraction:
        return "object_too_small", f"mask covers {area:.3%} < {min_area_fraction:.3%}"
    border = np.concatenate([object_mask[0], object_mask[-1], object_mask[:, 0], object_mask[:, -1]])
    if border.any():
        return "object_truncated", f"mask touches the image border on {int(border.sum())} pixels"
    return None, None
