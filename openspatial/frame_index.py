"""Object-frame index: one record per (object, frame) linking 3D box, 2D box, mask, visibility and points.

Visible pixels come from a mask refiner: the default uses the frame's instance map where there is one, and
otherwise keeps the pixels of the projected box whose depth back-projects inside the (slightly inflated) box.
A learned refiner (SAM-style, prompted with the projected box) plugs in through `MASK_REFINERS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from openspatial.projection import (Footprint, back_project, box_in_camera, encode_rle, mask_bbox, project_box,
                                   world_to_camera)
from openspatial.scene import Frame, Scene, SceneObject


ANCHOR_MIN_DEPTH = 0.1  # metres; boxes with a corner nearer than this are not drawn as anchors


class IndexConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    near: float = Field(default=0.05, gt=0)  # metres; points closer to the camera plane are not projected
    min_visible_pixels: int = Field(default=80, ge=1)
    max_occlusion: float = Field(default=0.85, ge=0, le=1)
    max_truncation: float = Field(default=0.6, ge=0, le=1)
    refine_margin: float = Field(default=0.05, ge=0)  # metres the box grows by when testing depth points
    refiner: str = "geometric"


class MaskRefiner(Protocol):
    def refine(self, frame: Frame, obj: SceneObject, footprint: Footprint) -> np.ndarray: ...


class GeometricMaskRefiner:
    def __init__(self, config: IndexConfig) -> None:
        self.margin = config.refine_margin

    def refine(self, frame: Frame, obj: SceneObject, footprint: Footprint) -> np.ndarray:
        if frame.instances is not None:
            return frame.instances == obj.instance_id
        if frame.depth is None:
            return footprint.mask
        candidates = footprint.mask & (frame.depth > 0)
        rows, cols = np.nonzero(candidates)
        inside = obj.box.contains(back_project(frame, candidates), margin=self.margin)
        mask = np.zeros_like(candidates)
        mask[rows[inside], cols[inside]] = True
        return mask


MASK_REFINERS: dict[str, type] = {"geometric": GeometricMaskRefiner}


@dataclass
class ObjectFrameRecord:
    object_id: str
    category: str
    frame_index: int
    in_view: bool
    in_front: bool  # every corner is in front of the camera (its drawn box is the projected 3D box)
    visible: bool
    visible_pixels: int
    projected_pixels: int
    truncation: float
    occlusion: float
    bbox_2d: tuple[float, float, float, float] | None  # tight box of the visible mask
    amodal_bbox_2d: tuple[float, float, float, float] | None  # in-image box of the projected 3D box
    mask_rle: dict | None
    depth_stats: tuple[float, float, float] | None  # min, median, max metres over visible pixels
    points_count: int
    points_centroid: tuple[float, float, float] | None  # world
    center_camera: tuple[float, float, float]
    rotation_camera: np.ndarray  # (3, 3) box axes in the camera frame
    extents: tuple[float, float, float]


@dataclass
class ObjectFrameIndex:
    scene: Scene
    records: dict[tuple[str, int], ObjectFrameRecord]

    def visible_in(self, frame_index: int) -> list[SceneObject]:
        return [obj for obj in self.scene.objects if self.records[obj.object_id, frame_index].visible]

    def frames_seeing(self, object_id: str) -> list[int]:
        return [i for i in range(len(self.scene.frames)) if self.records[object_id, i].visible]


def index_record(frame: Frame, frame_index: int, obj: SceneObject, config: IndexConfig,
                 refiner: MaskRefiner) -> ObjectFrameRecord:
    camera_box = box_in_camera(frame, obj.box)
    center_camera, rotation_camera = tuple(camera_box.center.tolist()), camera_box.rotation
    footprint = project_box(frame, obj.box, config.near)
    in_front = bool(np.all(world_to_camera(frame, obj.box.corners())[:, 2] > ANCHOR_MIN_DEPTH))
    empty = ObjectFrameRecord(obj.object_id, obj.category, frame_index, False, in_front, False, 0, 0,
                              footprint.truncation, 1.0, None, None, None, None, 0, None, center_camera,
                              rotation_camera, tuple(obj.box.extents.tolist()))
    if not footprint.in_view:
        return empty
    projected_pixels = int(footprint.mask.sum())
    visible_mask = refiner.refine(frame, obj, footprint)
    visible_pixels = int(visible_mask.sum())
    occlusion = float(np.clip(1.0 - visible_pixels / max(projected_pixels, 1), 0.0, 1.0))
    visible = (visible_pixels >= config.min_visible_pixels and occlusion <= config.max_occlusion
               and footprint.truncation <= config.max_truncation)
    depth_stats, points_centroid, points_count = None, None, 0
    if frame.depth is not None and visible_pixels:
        depths = frame.depth[visible_mask & (frame.depth > 0)]
        if depths.size:
            depth_stats = (float(depths.min()), float(np.median(depths)), float(depths.max()))
            points = back_project(frame, visible_mask)
            points_count, points_centroid = len(points), tuple(points.mean(axis=0).tolist())
    return ObjectFrameRecord(obj.object_id, obj.category, frame_index, True, in_front, visible, visible_pixels,
                             projected_pixels, footprint.truncation, occlusion, mask_bbox(visible_mask), footprint.bbox,
                             encode_rle(visible_mask) if visible_pixels else None, depth_stats, points_count,
                             points_centroid, center_camera, rotation_camera, tuple(obj.box.extents.tolist()))


def build_object_frame_index(scene: Scene, config: IndexConfig = IndexConfig()) -> ObjectFrameIndex:
    if config.refiner not in MASK_REFINERS:
        raise ValueError(f"index.refiner: unknown refiner {config.refiner!r}; allowed: {', '.join(MASK_REFINERS)}")
    refiner = MASK_REFINERS[config.refiner](config)
    records = {(obj.object_id, i): index_record(frame, i, obj, config, refiner)
               for i, frame in enumerate(scene.frames) for obj in scene.objects}
    return ObjectFrameIndex(scene, records)


def index_table(index: ObjectFrameIndex) -> pa.Table:
    """The index as an Arrow table (one row per object and frame), e.g. for reports and inspection."""
    rows = []
    for record in index.records.values():
        rows.append({
            "scene_id": index.scene.scene_id, "object_id": record.object_id, "category": record.category,
            "frame_id": index.scene.frames[record.frame_index].frame_id, "in_view": record.in_view,
            "visible": record.visible, "visible_pixels": record.visible_pixels,
            "projected_pixels": record.projected_pixels, "truncation": record.truncation,
            "occlusion": record.occlusion, "bbox_2d": list(record.bbox_2d) if record.bbox_2d else None,
            "mask_rle_counts": record.mask_rle["counts"] if record.mask_rle else None,
            "depth_min_median_max": list(record.depth_stats) if record.depth_stats else None,
            "points_count": record.points_count,
            "points_centroid": list(record.points_centroid) if record.points_centroid else None,
            "center_camera": list(record.center_camera), "extents": list(record.extents),
            "rotation_camera": record.rotation_camera.ravel().tolist(),
        })
    return pa.Table.from_pylist(rows)

