"""Multi-view collages (report 4.1.5): one main view and supporting views of one subject.

Cameras aim at the subject's centre; intrinsics come from a configured field-of-view range; the distance
is the bounding-sphere radius over sin(fov / 2) times a sampled margin, so any subject fills a similar
part of the frame. A candidate camera is rejected, with its reason recorded, when too little of the
subject's whole silhouette is seen (render/checks.py: off target, obstructed, too little visible);
another is then sampled.
The structured caption's five fields (Table 6) are computed from the geometry.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from render.checks import SubjectVisibility, reprojection_check, silhouette_rays, subject_visibility
from render.client import RenderWorker, cast_rays, render_views
from render.geometry import (focal_from_fov, look_at_pose, named_view, orbit_eye, signed_angle_deg, trs_matrix)
from render.images import collage, depth_png, grid_shape, image_ref, object_mask_png, over_background
from render.preprocess import SUBJECT_PASS_INDEX, AssetRejected, PreparedAsset, mask_visibility_reason
from render.procedural import PALETTE, default_lights
from render.scene import (Camera, Material, ObjectInstance, Primitive, PrimitivesAsset, RenderSettings, RenderScene,
                          matrix_tuple)

OCCLUDER_PASS_INDEX = 50


class Range(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    low: float
    high: float

    def sample(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)


class MultiviewSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    n_views: int = Field(default=4, ge=2, le=9)
    width: int = Field(default=128, ge=16)
    height: int = Field(default=128, ge=16)
    fov_deg: Range = Range(low=35.0, high=55.0)  # horizontal field of view
    distance_margin: Range = Range(low=1.15, high=1.5)  # x radius / sin(fov / 2)
    elevation_deg: Range = Range(low=5.0, high=35.0)
    main_azimuth_jitter_deg: float = Field(default=30.0, ge=0)  # the main view looks at the front +- this
    support_azimuth_jitter_deg: float = Field(default=15.0, ge=0)
    visibility_max_rays: int = Field(default=300, ge=1)  # rays per candidate, spread over the subject's pixels
    min_visible_fraction: float = Field(default=0.8, ge=0, le=1)  # of the subject's silhouette, seen in frame
    max_attempts_per_view: int = Field(default=4, ge=1)
    n_occluders: int = Field(default=0, ge=0)  # pillars placed around the subject (scene clutter)
    min_mask_area_fraction: float = Field(default=0.02, ge=0)
    max_reprojection_error_px: float = Field(default=1.0, gt=0)
    min_silhouette_iou: float = Field(default=0.9, ge=0, le=1)  # rendered vs predicted silhouette
    background: tuple[int, int, int] = (236, 236, 240)
    gutter_px: int = Field(default=4, ge=0)
    render: RenderSettings = RenderSettings()


@dataclass
class ViewPlan:
    camera: Camera
    azimuth_deg: float
    elevation_deg: float
    distance: float
    fov_deg: float
    visible_fraction: float


def occluder_instances(prepared: PreparedAsset, rng: random.Random, count: int,
                        distance: float) -> list[ObjectInstance]:
    """Tall pillars on a ring between the subject and where cameras stand, at random azimuths."""
    material = {"stone": Material(base_color=PALETTE["grey"], roughness=0.9, color_name="grey")}
    height = max(prepared.extent[2] * 1.5, 0.5)
    width = max(prepared.radius * 0.5, 0.05)
    instances = []
    for index in range(count):
        eye = orbit_eye((0, 0, 0), rng.uniform(0, 360), 0.0, rng.uniform(prepared.radius * 1.3, distance * 0.7))
        asset = PrimitivesAsset(name=f"pillar_{index}", category="pillar", materials=material,
                                parts=(Primitive(shape="box", size=(width, width, height),
                                                 location=(0.0, 0.0, height / 2), material="stone"),))
        instances.append(ObjectInstance(name=f"occluder_{index}", asset=asset,
                                        object_to_world=matrix_tuple(trs_matrix((eye[0], eye[1], 0.0))),
                                        pass_index=OCCLUDER_PASS_INDEX + index))
    return instances


def subject_scene(prepared: PreparedAsset, rng: random.Random, settings: MultiviewSettings) -> RenderScene:
    half_fov = math.radians(settings.fov_deg.low) / 2
    typical_distance = prepared.radius / math.sin(half_fov) * settings.distance_margin.high
    objects = [prepared.instance()] + occluder_instances(prepared, rng, settings.n_occluders, typical_distance)
    return RenderScene(objects=tuple(objects), lights=default_lights(rng, float(prepared.extent[2])))


def camera_at(prepared: PreparedAsset, azimuth: float, elevation: float, fov_deg: float, margin: float,
              width: int, height: int) -> tuple[Camera, float]:
    """A camera aimed at the subject's centre whose narrower field of view holds its bounding sphere."""
    focal = focal_from_fov(width, fov_deg)
    narrow_half_fov = math.atan(min(width, height) / 2 / focal)
    distance = prepared.radius / math.sin(narrow_half_fov) * margin
    eye = orbit_eye(prepared.centre, azimuth, elevation, distance)
    camera = Camera(width=width, height=height, fx=focal, fy=focal, cx=(width - 1) / 2, cy=(height - 1) / 2,
                    cam_to_world=matrix_tuple(look_at_pose(eye, prepared.centre)))
    return camera, distance


def camera_visibility(worker: RenderWorker, scene: RenderScene, pieces: list[np.ndarray], cameras: list[Camera],
                      pass_index: int, max_rays: int) -> list[SubjectVisibility]:
    """How much of the subject (convex pieces, world frame) each camera sees, in one ray-cast request."""
    rays = [silhouette_rays(pieces, camera, max_rays=max_rays) for camera in cameras]
    cast = [(r.origin, r.directions) if r is not None else (np.zeros(3), np.zeros((0, 3))) for r in rays]
    answers = cast_rays(worker, scene, cast, pass_index)
    return [subject_visibility(r, hits, reaches, pass_index) for r, (hits, reaches) in zip(rays, answers)]


def object_names(scene: RenderScene) -> dict[int, str]:
    return {instance.pass_index: instance.name for instance in scene.objects}


def dominant_reason(reasons: list[str]) -> str:
    """The reason most candidates were refused for (the latest on a tie): the row's reject reason."""
    return max(reversed(reasons), key=reasons.count)


def planned_azimuths(rng: random.Random, settings: MultiviewSettings) -> list[float]:
    """Main view near the front, supporting views spread evenly around it; index 0 is the main view."""
    main = rng.uniform(-settings.main_azimuth_jitter_deg, settings.main_azimuth_jitter_deg) % 360.0
    step = 360.0 / settings.n_views
    return [main] + [(main + k * step + rng.uniform(-settings.support_azimuth_jitter_deg,
                                                     settings.support_azimuth_jitter_deg)) % 360.0
                     for k in range(1, settings.n_views)]


def plan_views(worker: RenderWorker, scene: RenderScene, prepared: PreparedAsset, rng: random.Random,
               settings: MultiviewSettings) -> tuple[list[ViewPlan], list[dict[str, Any]]]:
    """Sample cameras view by view; ray-cast each candidate at the subject's silhouette and keep the first
    one that sees enough of it. A view without one rejects the asset for the reason most of its candidates
    had, the last candidate's cause in words as the detail."""
    plans, rejected = [], []
    names = object_names(scene)
    for view_index, base_azimuth in enumerate(planned_azimuths(rng, settings)):
        view_rejected = []
        for attempt in range(settings.max_attempts_per_view):
            # Later attempts move around the planned azimuth to get past whatever blocked the view.
            azimuth = (base_azimuth + attempt * rng.uniform(-40, 40)) % 360.0
            elevation, fov = settings.elevation_deg.sample(rng), settings.fov_deg.sample(rng)
            camera, distance = camera_at(prepared, azimuth, elevation, fov, settings.distance_margin.sample(rng),
                                         settings.width, settings.height)
            visibility, = camera_visibility(worker, scene, prepared.convex_pieces(), [camera], SUBJECT_PASS_INDEX,
                                            settings.visibility_max_rays)
            reason = visibility.reject_reason(min_visible_fraction=settings.min_visible_fraction)
            if reason is None:
                plans.append(ViewPlan(camera, azimuth, elevation, distance, fov, visibility.visible_fraction))
                break
            view_rejected.append({
                "view": view_index, "attempt": attempt, "azimuth_deg": round(azimuth, 2),
                "elevation_deg": round(elevation, 2), "visible_fraction": round(visibility.visible_fraction, 4),
                "hidden_fraction": round(visibility.hidden_fraction, 4),
                "outside_fraction": round(visibility.outside_fraction, 4), "reason": reason,
                "detail": visibility.describe(names, min_visible_fraction=settings.min_visible_fraction)})
        rejected += view_rejected
        if len(view_rejected) == settings.max_attempts_per_view:
            reasons = [entry["reason"] for entry in view_rejected]
            counts = ", ".join(f"{reasons.count(r)} {r}" for r in sorted(set(reasons)))
            raise AssetRejected(dominant_reason(reasons), f"view {view_index}: all {len(reasons)} candidate cameras "
                                                          f"rejected ({counts}); last: {view_rejected[-1]['detail']}")
    return plans, rejected


def reading_order(plans: list[ViewPlan], rng: random.Random) -> tuple[list[ViewPlan], int]:
    """Place the main view at a random grid slot; reading order follows the orbit cyclically from there."""
    main_index = rng.randrange(len(plans))
    shift = len(plans) - main_index
    return plans[shift:] + plans[:shift], main_index


def structured_caption(prepared: PreparedAsset, ordered: list[ViewPlan], main_index: int,
                       settings: MultiviewSettings) -> dict[str, Any]:
    """The five Table 6 fields, from the asset description and the cameras."""
    asset = prepared.asset
    colours = sorted({m.color_name for m in getattr(asset, "materials", {}).values()})
    texts = [p.text for p in getattr(asset, "parts", ()) if p.text]
    width, depth, height = prepared.extent
    summary = (f"A {' and '.join(colours) + ' ' if colours else ''}{asset.category}"
               f"{' with the text ' + ', '.join(repr(t) for t in texts) if texts else ''}, about "
               f"{width:.2f} m wide, {depth:.2f} m deep and {height:.2f} m tall, rendered with Blender Cycles "
               f"under a key light and soft fill on a plain light background.")
    main = ordered[main_index]
    deltas = [signed_angle_deg(main.azimuth_deg, view.azimuth_deg) for view in ordered]
    steps = ", ".join(f"view {i} {'+' if d >= 0 else ''}{d:.0f} deg" for i, d in enumerate(deltas) if i != main_index)
    rotation_logic = (f"Anchored on main view {main_index} ({named_view(main.azimuth_deg)}); the camera orbits the "
                      f"subject horizontally, counter-clockwise seen from above for positive angles: {steps}.")
    details = []
    for index, (view, delta) in enumerate(zip(ordered, deltas)):
        name = named_view(view.azimuth_deg)
        notes = []
        if texts and abs(signed_angle_deg(0.0, view.azimuth_deg)) < 60:
            notes.append("the front text is readable")
        details.append({"index": index, "role": "Main" if index == main_index else "Other",
                        "angle": f"{name} view from {view.elevation_deg:.0f} deg above, {delta:+.0f} deg from main",
                        "named_view": name, "azimuth_deg": round(view.azimuth_deg, 2),
                        "elevation_deg": round(view.elevation_deg, 2), "distance_m": round(view.distance, 3),
                        "fov_deg": round(view.fov_deg, 2), "visible_fraction": round(view.visible_fraction, 4),
                        "content": "; ".join(notes) or f"the subject's {name} side"})
    rows, cols = grid_shape(len(ordered))
    blank = rows * cols - len(ordered)
    layout = (f"A {rows}x{cols} grid of {len(ordered)} sub-images in reading order with {blank} blank slot"
              f"{'' if blank == 1 else 's'}; the main view is at row {main_index // cols + 1}, column "
              f"{main_index % cols + 1}; {settings.gutter_px} px gutters on a plain RGB{settings.background} "
              f"background.")
    return {"subject_summary": summary, "rotation_logic": rotation_logic, "main_view_index": main_index,
            "view_details": details, "layout_description": layout}


def render_multiview_sample(worker: RenderWorker, prepared: PreparedAsset, seed: int,
                            settings: MultiviewSettings) -> dict[str, Any]:
    """The multiview_sample columns (plus masks, depths, rejected cameras, checks) of one subject."""
    rng = random.Random(seed)
    scene = subject_scene(prepared, rng, settings)
    plans, rejected = plan_views(worker, scene, prepared, rng, settings)
    ordered, main_index = reading_order(plans, rng)
    rendered = render_views(worker, scene, [view.camera for view in ordered], settings.render)
    images, masks, depths, errors, overlaps = [], [], [], [], []
    for index, (view, result) in enumerate(zip(ordered, rendered)):
        subject_mask = result.index_mask == SUBJECT_PASS_INDEX
        reason, detail = mask_visibility_reason(subject_mask, min_area_fraction=settings.min_mask_area_fraction)
        if reason:
            raise AssetRejected(reason, f"view {index}: {detail}")
        check = reprojection_check(prepared.convex_pieces(), view.camera, result.index_mask, SUBJECT_PASS_INDEX)
        if check is not None and check.error_px > settings.max_reprojection_error_px:
            raise AssetRejected("reprojection_error", f"view {index}: silhouette off by {check.error_px:.2f} px")
        if check is not None and check.iou < settings.min_silhouette_iou:
            raise AssetRejected("silhouette_mismatch", f"view {index}: silhouette IoU {check.iou:.3f}")
        errors.append(None if check is None else check.error_px)
        overlaps.append(None if check is None else check.iou)
        images.append(over_background(result.rgba, settings.background))
        masks.append(image_ref(object_mask_png(result.index_mask, SUBJECT_PASS_INDEX)))
        depths.append(image_ref(depth_png(np.where(subject_mask, result.depth, 0.0))))
    cameras = [{"index": i, "width": v.camera.width, "height": v.camera.height, "fx": v.camera.fx,
                "fy": v.camera.fy, "cx": v.camera.cx, "cy": v.camera.cy,
                "cam_to_world": [list(row) for row in v.camera.cam_to_world], "azimuth_deg": v.azimuth_deg,
                "elevation_deg": v.elevation_deg, "distance_m": v.distance, "convention": "opencv"}
               for i, v in enumerate(ordered)]
    return {
        "views": [image_ref(Image.fromarray(image)) for image in images],
        "cameras": json.dumps(cameras),
        "main_view_index": main_index,
        "collage": image_ref(collage(images, gutter=settings.gutter_px, background=settings.background)),
        "structured_caption": json.dumps(structured_caption(prepared, ordered, main_index, settings)),
        "dense_caption": None,
        "masks": masks,
        "depths": depths,
        "rejected_cameras": json.dumps(rejected),
        "reprojection_error_px": errors,
        "silhouette_iou": overlaps,
    }
