"""Spatial-edit pairs (report 5.1.4) as edit triplets.

Static-camera object transforms: one subject rendered twice under the same camera, before and after a
translation, scaling or rotation to one of the eight named views; both renders are composited over the same
background plate, so the area the object leaves is the true background (no inpainting needed) and the
target region is known exactly from the target mask. Dynamic-camera transforms: a focus object in a
procedural room seen from two cameras that differ in yaw, pitch or distance around it.

Every instruction comes from one template, `<action>. Keep <what stays>.`, in English and Chinese.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw
from pydantic import BaseModel, ConfigDict, Field

from render.checks import central_rays, ray_visibility, reprojection_check
from render.client import RenderWorker, cast_rays, render_views
from render.geometry import NAMED_VIEWS, named_view, signed_angle_deg, trs_matrix
from render.images import image_ref, over_background
from render.multiview import Range, camera_at
from render.preprocess import SUBJECT_PASS_INDEX, AssetRejected, PreparedAsset, mask_visibility_reason
from render.procedural import default_lights, procedural_room
from render.scene import Camera, RenderSettings, RenderScene

ObjectOperation = Literal["translate", "scale", "rotate"]
CameraOperation = Literal["yaw", "pitch", "zoom"]
FOCUS_PASS_INDEX = 100
_CATEGORY_ZH = {"table": "桌子", "chair": "椅子", "shelf": "架子", "lamp": "台灯", "mug": "杯子",
                "bottle": "瓶子", "sign crate": "带字的箱子", "ball": "球"}
_VIEW_ZH = {"front": "正面", "front-left": "左前方", "left": "左侧", "rear-left": "左后方", "rear": "背面",
            "rear-right": "右后方", "right": "右侧", "front-right": "右前方"}


class SpatialEditSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(default=128, ge=16)
    height: int = Field(default=128, ge=16)
    camera_branch_fraction: float = Field(default=0.5, ge=0, le=1)  # rows that become camera edits
    object_operations: tuple[ObjectOperation, ...] = ("translate", "scale", "rotate")
    camera_operations: tuple[CameraOperation, ...] = ("yaw", "pitch", "zoom")
    yaw_steps_deg: tuple[float, ...] = (-90.0, -45.0, 45.0, 90.0)
    pitch_steps_deg: tuple[float, ...] = (-15.0, 15.0, 30.0)
    zoom_factors: tuple[float, ...] = (0.7, 1.4)  # target distance / source distance
    scale_factors: tuple[float, ...] = (0.6, 0.75, 1.3, 1.5)
    fov_deg: Range = Range(low=40.0, high=55.0)
    object_margin: float = Field(default=2.2, gt=1)  # object edits leave room around the subject
    chinese_fraction: float = Field(default=0.5, ge=0, le=1)
    min_mask_area_fraction: float = Field(default=0.005, ge=0)
    min_visible_fraction: float = Field(default=0.7, ge=0, le=1)
    max_attempts: int = Field(default=6, ge=1)
    max_reprojection_error_px: float = Field(default=1.0, gt=0)
    min_silhouette_iou: float = Field(default=0.9, ge=0, le=1)  # rendered vs predicted silhouette
    box_color: tuple[int, int, int] = (230, 30, 30)
    render: RenderSettings = RenderSettings()


# One template for every spatial edit, `<action>. Keep <what stays>.`; the action phrases per operation.
_TEMPLATE = {"en": "{action}. Keep {keep}.", "zh": "{action}，{keep}。"}
_KEEP = {"en": {"object": "the camera and the background unchanged", "camera": "the scene static"},
         "zh": {"object": "相机和背景保持不变", "camera": "场景保持静止"}}
_ACTIONS = {
    "en": {"translate": "Move the {subject} into the marked red box",
           "scale_up": "Enlarge the {subject} to {factor:.2g} times its size",
           "scale_down": "Shrink the {subject} to {factor:.2g} times its size",
           "rotate": "Rotate the {subject} to show its {view} view",
           "yaw": "Orbit the camera {degrees:.0f} degrees to the {direction} around the {subject}",
           "pitch": "Tilt the camera {direction} by {degrees:.0f} degrees around the {subject}",
           "zoom": "Zoom {direction} on the {subject}"},
    "zh": {"translate": "把{subject}移动到红色框标出的位置",
           "scale_up": "把{subject}放大到原来的{factor:.2g}倍",
           "scale_down": "把{subject}缩小到原来的{factor:.2g}倍",
           "rotate": "旋转{subject}，展示它的{view}视角",
           "yaw": "围绕{subject}将相机向{direction}环绕{degrees:.0f}度",
           "pitch": "围绕{subject}将相机向{direction}俯仰{degrees:.0f}度",
           "zoom": "{direction}镜头对准{subject}"},
}
# (positive, negative) amount. A positive yaw raises the azimuth: counter-clockwise seen from above, which
# moves the camera towards its own right.
_DIRECTIONS = {"en": {"yaw": ("right", "left"), "pitch": ("up", "down"), "zoom": ("out", "in")},
               "zh": {"yaw": ("右", "左"), "pitch": ("上", "下"), "zoom": ("拉远", "拉近")}}


def instruction(action: dict[str, Any], subject: str, language: str) -> str:
    """Fill the spatial-edit template for one edit. Positive yaw orbits the camera to its right, positive
    pitch tilts up, a zoom factor (target / source distance) below 1 zooms in."""
    operation = action["operation"]
    key = operation
    if operation == "scale":
        key = "scale_up" if action["factor"] > 1 else "scale_down"
    amount = action.get("delta_deg", action.get("factor", 1.0) - 1.0)
    camera_edit = operation in _DIRECTIONS[language]
    direction = _DIRECTIONS[language][operation][0 if amount > 0 else 1] if camera_edit else ""
    view = action.get("target_view", "")
    slots = {"subject": subject if language == "en" else _CATEGORY_ZH.get(subject, subject),
             "factor": action.get("factor", 1.0), "degrees": abs(action.get("delta_deg", 0.0)),
             "direction": direction, "view": view if language == "en" else _VIEW_ZH.get(view, view)}
    keep = _KEEP[language]["camera" if camera_edit else "object"]
    return _TEMPLATE[language].format(action=_ACTIONS[language][key].format(**slots), keep=keep)


def background_plate(rng: random.Random, width: int, height: int) -> np.ndarray:
    """A procedural backdrop: a wall-to-floor gradient with a horizon and mild noise, random colours."""
    top, bottom = (np.array([rng.randint(120, 240) for _ in range(3)], dtype=np.float32) for _ in range(2))
    horizon = rng.uniform(0.45, 0.7)
    rows = np.linspace(0, 1, height)[:, None, None]
    plate = np.where(rows < horizon, top + (bottom - top) * rows * 0.3, bottom * (0.8 + 0.2 * rows))
    plate = np.broadcast_to(plate, (height, width, 3)).copy()
    plate += np.random.default_rng(rng.randrange(2**32)).normal(0, 4, plate.shape)
    return np.clip(plate, 0, 255).astype(np.uint8)


def _region(mask: np.ndarray) -> list[int] | None:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())] if len(xs) else None


def _camera_record(camera: Camera) -> dict[str, Any]:
    return {"width": camera.width, "height": camera.height, "fx": camera.fx, "fy": camera.fy, "cx": camera.cx,
            "cy": camera.cy, "cam_to_world": [list(row) for row in camera.cam_to_world], "convention": "opencv"}


def _object_action(rng: random.Random, prepared: PreparedAsset, settings: SpatialEditSettings,
                   source_yaw: float) -> tuple[dict[str, Any], np.ndarray]:
    """An object edit and the extra transform (about the subject's base centre) that makes the target."""
    operation = rng.choice(settings.object_operations)
    if operation == "translate":
        span = prepared.radius * 1.2
        offset = np.array([rng.choice((-1, 1)) * rng.uniform(0.5, 1.0) * span, rng.uniform(-0.5, 0.5) * span, 0.0])
        return {"operation": operation, "offset_m": offset.round(4).tolist()}, trs_matrix(offset)
    if operation == "scale":
        factor = rng.choice(settings.scale_factors)
        return {"operation": operation, "factor": factor}, trs_matrix((0, 0, 0), scale=(factor,) * 3)
    source_view = named_view(source_yaw)
    target_view = rng.choice([name for name in NAMED_VIEWS if name != source_view])
    turn = turn_to_view(source_view, target_view)
    return ({"operation": operation, "source_view": source_view, "target_view": target_view, "turn_deg": turn},
            trs_matrix((0, 0, 0), (0, 0, math.radians(turn))))


def turn_to_view(source_view: str, target_view: str) -> float:
    """Yaw (degrees, about +z) that turns an object seen from its `source_view` side so that the same camera
    sees its `target_view` side: turning by -a shows the camera the side that faced azimuth a."""
    return -signed_angle_deg(NAMED_VIEWS[source_view], NAMED_VIEWS[target_view])


def _check_render(pieces: list[np.ndarray], camera: Camera, result: Any, pass_index: int,
                  settings: SpatialEditSettings, which: str) -> dict[str, float] | None:
    mask = result.index_mask == pass_index
    reason, detail = mask_visibility_reason(mask, min_area_fraction=settings.min_mask_area_fraction)
    if reason:
        raise AssetRejected(reason, f"{which}: {detail}")
    check = reprojection_check(pieces, camera, result.index_mask, pass_index)
    if check is not None and check.error_px > settings.max_reprojection_error_px:
        raise AssetRejected("reprojection_error", f"{which}: silhouette off by {check.error_px:.2f} px")
    if check is not None and check.iou < settings.min_silhouette_iou:
        raise AssetRejected("silhouette_mismatch", f"{which}: silhouette IoU {check.iou:.3f}")
    return None if check is None else {"error_px": round(check.error_px, 4), "iou": round(check.iou, 4)}


def object_edit_pair(worker: RenderWorker, prepared: PreparedAsset, rng: random.Random,
                     settings: SpatialEditSettings) -> dict[str, Any]:
    """Static camera; the subject is translated, scaled or turned to a named view."""
    source_yaw = rng.choice(list(NAMED_VIEWS.values())) if rng.random() < 0.5 else 0.0
    source_pose = trs_matrix((0, 0, 0), (0, 0, math.radians(-source_yaw)))  # camera sees the `source_yaw` side
    action, extra = _object_action(rng, prepared, settings, source_yaw)
    target_pose = extra @ source_pose
    camera, _ = camera_at(prepared, 0.0, rng.uniform(10, 25), settings.fov_deg.sample(rng), settings.object_margin,
                          settings.width, settings.height)
    lights = default_lights(rng, float(prepared.extent[2]))
    scenes = [RenderScene(objects=(prepared.instance(extra_pose=pose),), lights=lights)
              for pose in (source_pose, target_pose)]
    source, target = (render_views(worker, scene, [camera], settings.render)[0] for scene in scenes)
    checks = [_check_render(prepared.convex_pieces(pose), camera, result, SUBJECT_PASS_INDEX, settings, which)
              for pose, result, which in ((source_pose, source, "source"), (target_pose, target, "target"))]
    plate = background_plate(rng, settings.width, settings.height)
    source_image = Image.fromarray(over_background(source.rgba, plate))
    target_region = _region(target.index_mask == SUBJECT_PASS_INDEX)
    if action["operation"] == "translate":  # the visual cue: the box the object must move into
        ImageDraw.Draw(source_image).rectangle(target_region, outline=settings.box_color, width=2)
    return {"action": action, "source": source, "target": target, "source_image": source_image,
            "target_image": Image.fromarray(over_background(target.rgba, plate)), "checks": checks,
            "cameras": [camera, camera], "pass_index": SUBJECT_PASS_INDEX, "target_region": target_region,
            "scene_kind": "object_on_backdrop"}


def _camera_action(rng: random.Random, settings: SpatialEditSettings, azimuth: float, elevation: float,
                   margin: float) -> tuple[dict[str, Any], tuple[float, float, float]]:
    operation = rng.choice(settings.camera_operations)
    if operation == "yaw":
        delta = rng.choice(settings.yaw_steps_deg)
        return {"operation": operation, "delta_deg": delta}, ((azimuth + delta) % 360, elevation, margin)
    if operation == "pitch":
        delta = rng.choice(settings.pitch_steps_deg)
        return {"operation": operation, "delta_deg": delta}, (azimuth, min(max(elevation + delta, 0.0), 75.0), margin)
    factor = rng.choice(settings.zoom_factors)
    return {"operation": operation, "factor": factor}, (azimuth, elevation, margin * factor)


def camera_edit_pair(worker: RenderWorker, prepared: PreparedAsset, rng: random.Random,
                     settings: SpatialEditSettings) -> dict[str, Any]:
    """The subject stands in a procedural room; two cameras orbit it with different yaw, pitch or distance."""
    room = procedural_room(rng.randrange(100_000), n_furniture=2, clear_radius=prepared.radius)
    focus = prepared.instance(name="focus", pass_index=FOCUS_PASS_INDEX)
    scene = RenderScene(objects=(*room, focus), lights=default_lights(rng, 2.0))
    fov = settings.fov_deg.sample(rng)
    for attempt in range(settings.max_attempts):
        azimuth, elevation, margin = rng.uniform(-60, 60) % 360, rng.uniform(10, 35), rng.uniform(1.3, 1.8)
        action, (target_azimuth, target_elevation, target_margin) = _camera_action(rng, settings, azimuth, elevation,
                                                                                   margin)
        cameras = [camera_at(prepared, a, e, fov, m, settings.width, settings.height)[0]
                   for a, e, m in ((azimuth, elevation, margin), (target_azimuth, target_elevation, target_margin))]
        visibilities = [ray_visibility(*cast_rays(worker, scene, [central_rays(c, 6, 0.3)], FOCUS_PASS_INDEX)[0],
                                       FOCUS_PASS_INDEX) for c in cameras]
        if all(v.reject_reason(min_coverage=0.1, min_unobstructed=settings.min_visible_fraction) is None
               for v in visibilities):
            break
    else:
        raise AssetRejected("no_visible_camera", f"{settings.max_attempts} camera pairs around the focus were blocked")
    source, target = render_views(worker, scene, cameras, settings.render)
    checks = [_check_render(prepared.convex_pieces(), camera, result, FOCUS_PASS_INDEX, settings, which)
              for camera, result, which in ((cameras[0], source, "source"), (cameras[1], target, "target"))]
    backdrop = (200, 200, 205)
    action.update(source_azimuth_deg=round(azimuth, 2), source_elevation_deg=round(elevation, 2),
                  target_azimuth_deg=round(target_azimuth, 2), target_elevation_deg=round(target_elevation, 2),
                  distance_factor=round(target_margin / margin, 4), attempts=attempt + 1)
    return {"action": action, "source": source, "target": target,
            "source_image": Image.fromarray(over_background(source.rgba, backdrop)),
            "target_image": Image.fromarray(over_background(target.rgba, backdrop)), "checks": checks,
            "cameras": cameras, "pass_index": FOCUS_PASS_INDEX,
            "target_region": _region(target.index_mask == FOCUS_PASS_INDEX), "scene_kind": "procedural_room"}


def render_edit_triplet(worker: RenderWorker, prepared: PreparedAsset, seed: int,
                        settings: SpatialEditSettings) -> dict[str, Any]:
    """The edit_triplet columns (plus masks and the edit operation) of one spatial-edit pair."""
    rng = random.Random(seed)
    branch = "camera" if rng.random() < settings.camera_branch_fraction else "object"
    pair = (camera_edit_pair if branch == "camera" else object_edit_pair)(worker, prepared, rng, settings)
    subject = prepared.asset.category
    instructions = {language: instruction(pair["action"], subject, language) for language in ("en", "zh")}
    language = "zh" if rng.random() < settings.chinese_fraction else "en"
    metadata = {"branch": branch, **pair["action"], "subject": subject, "language": language,
                "instructions": instructions, "scene": pair["scene_kind"],
                "source_camera": _camera_record(pair["cameras"][0]),
                "target_camera": _camera_record(pair["cameras"][1]),
                "target_region_xyxy": pair["target_region"],
                "source_region_xyxy": _region(pair["source"].index_mask == pair["pass_index"]),
                "geometry_checks": pair["checks"]}
    masks = [Image.fromarray(np.where(result.index_mask == pair["pass_index"], 255, 0).astype(np.uint8), "L")
             for result in (pair["source"], pair["target"])]
    return {"source_image": image_ref(pair["source_image"]), "reference_images": [],
            "instruction": instructions[language], "target_image": image_ref(pair["target_image"]),
            "metadata": json.dumps(metadata, ensure_ascii=False), "source_mask": image_ref(masks[0]),
            "target_mask": image_ref(masks[1]), "edit_operation": f"{branch}:{pair['action']['operation']}"}
