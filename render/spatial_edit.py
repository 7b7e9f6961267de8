"""Spatial-edit pairs (report 5.1.4) as edit triplets.

Static-camera object transforms: one subject rendered twice under the same camera, before and after a
translation, scaling or rotation to one of the eight named views; both renders are composited over the same
background plate, so the area the object leaves is the true background (no inpainting needed) and the
target region is known exactly from the target mask. A rotation the subject's symmetry makes invisible
(any turn of a ball, a half turn of a table) is never drawn. Dynamic-camera transforms: a focus object in a
procedural room seen from two cameras that differ in yaw, pitch or distance around it; both must see enough
of the focus object's silhouette, and a pitch step is drawn with a source elevation it fits, so the label is
always the move the cameras make.

Every instruction comes from one template, `<action>. Keep <what stays>.`, in English and Chinese.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any, Literal

import cv2
import numpy as np
from PIL import Image, ImageDraw
from pydantic import BaseModel, ConfigDict, Field, model_validator

from data_engine.camera_move import CameraMove, format_camera_move
from render.checks import reprojection_check
from render.client import RenderWorker, render_views
from render.geometry import NAMED_VIEWS, named_view, signed_angle_deg, trs_matrix
from render.images import image_ref, over_background
from render.multiview import Range, camera_at, camera_visibility, dominant_reason, object_names
from render.preprocess import SUBJECT_PASS_INDEX, AssetRejected, PreparedAsset, mask_visibility_reason
from render.procedural import default_lights, procedural_room
from render.scene import Camera, RenderSettings, RenderScene
from render.symmetry import turn_leaves_unchanged

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
    pitch_steps_deg: tuple[float, ...] = (-15.0, 15.0, 30.0)  # + raises the camera on its orbit
    source_elevation_deg: Range = Range(low=10.0, high=35.0)  # camera edits' source camera above the horizon
    elevation_limits_deg: Range = Range(low=0.0, high=75.0)  # no camera of a camera edit goes outside these
    zoom_factors: tuple[float, ...] = (0.7, 1.4)  # target distance / source distance
    scale_factors: tuple[float, ...] = (0.6, 0.75, 1.3, 1.5)
    fov_deg: Range = Range(low=40.0, high=55.0)
    object_margin: float = Field(default=2.2, gt=1)  # object edits leave room around the subject
    chinese_fraction: float = Field(default=0.5, ge=0, le=1)
    min_mask_area_fraction: float = Field(default=0.005, ge=0)
    min_visible_fraction: float = Field(default=0.7, ge=0, le=1)  # of the focus object's silhouette, in frame
    visibility_max_rays: int = Field(default=300, ge=1)  # rays per camera, spread over the focus object's pixels
    max_attempts: int = Field(default=6, ge=1)
    max_reprojection_error_px: float = Field(default=1.0, gt=0)
    min_silhouette_iou: float = Field(default=0.9, ge=0, le=1)  # rendered vs predicted silhouette
    box_color: tuple[int, int, int] = (230, 30, 30)
    render: RenderSettings = RenderSettings()

    @model_validator(mode="after")
    def _pitch_steps_fit(self) -> SpatialEditSettings:
        for step in self.pitch_steps_deg:
            low, high = self.pitch_source_range(step)
            if low > high:
                raise ValueError(f"pitch step {step:+g} deg leaves elevation_limits_deg {self.elevation_limits_deg} "
                                 f"from every source elevation in {self.source_elevation_deg}")
        return self

    def pitch_source_range(self, step: float) -> tuple[float, float]:
        """Source elevations from which a pitch `step` ends inside the elevation limits (low > high: none)."""
        return (max(self.source_elevation_deg.low, self.elevation_limits_deg.low - step),
                min(self.source_elevation_deg.high, self.elevation_limits_deg.high - step))


# One template for every spatial edit, `<action>. Keep <what stays>.`. Object edits' action phrases are here;
# camera edits are the engine's one camera-move template (data_engine/camera_move.py), which Thinking with Novel
# Views also reads back.
_TEMPLATE = {"en": "{action}. Keep {keep}.", "zh": "{action}，{keep}。"}
_KEEP_OBJECT = {"en": "the camera and the background unchanged", "zh": "相机和背景保持不变"}
_ACTIONS = {
    "en": {"translate": "Move the {subject} into the marked red box",
           "scale_up": "Enlarge the {subject} to {factor:.2g} times its size",
           "scale_down": "Shrink the {subject} to {factor:.2g} times its size",
           "rotate": "Rotate the {subject} to show its {view} view"},
    "zh": {"translate": "把{subject}移动到红色框标出的位置",
           "scale_up": "把{subject}放大到原来的{factor:.2g}倍",
           "scale_down": "把{subject}缩小到原来的{factor:.2g}倍",
           "rotate": "旋转{subject}，展示它的{view}视角"},
}
CAMERA_OPERATIONS: tuple[CameraOperation, ...] = ("yaw", "pitch", "zoom")


def instruction(action: dict[str, Any], subject: str, language: str) -> str:
    """Fill the spatial-edit template for one edit. Positive yaw orbits the camera to its right, positive
    pitch raises it on its orbit (looking further down), a zoom factor (target / source distance) below 1
    zooms in."""
    operation = action["operation"]
    subject = subject if language == "en" else _CATEGORY_ZH.get(subject, subject)
    if operation in CAMERA_OPERATIONS:
        move = CameraMove(subject=subject,
                          yaw_deg=round(action["delta_deg"]) if operation == "yaw" else 0.0,
                          pitch_deg=round(action["delta_deg"]) if operation == "pitch" else 0.0,
                          zoom=("in" if action["factor"] < 1 else "out") if operation == "zoom" else "unchanged")
        return format_camera_move(move, language)
    key = operation
    if operation == "scale":
        key = f"scale_{'up' if action['factor'] > 1 else 'down'}"
    view = action.get("target_view", "")
    slots = {"subject": subject, "factor": action.get("factor", 1.0),
             "view": view if language == "en" else _VIEW_ZH.get(view, view)}
    return _TEMPLATE[language].format(action=_ACTIONS[language][key].format(**slots), keep=_KEEP_OBJECT[language])


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


def thin_share(mask: np.ndarray, width_fraction: float = 0.05) -> float | None:
    """The share of a silhouette in parts narrower than `width_fraction` of the image width (what an opening
    with a square that wide removes): high for a pole lamp, or a table seen edge-on; None for an empty mask."""
    if not mask.any():
        return None
    side = max(3, round(width_fraction * mask.shape[1]))
    opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((side, side), np.uint8))
    return float(1.0 - opened.sum() / mask.sum())


def _camera_record(camera: Camera) -> dict[str, Any]:
    return {"width": camera.width, "height": camera.height, "fx": camera.fx, "fy": camera.fy, "cx": camera.cx,
            "cy": camera.cy, "cam_to_world": [list(row) for row in camera.cam_to_world], "convention": "opencv"}


def _object_action(rng: random.Random, prepared: PreparedAsset, settings: SpatialEditSettings,
                   source_yaw: float) -> tuple[dict[str, Any], np.ndarray]:
    """An object edit and the extra transform (about the subject's base centre) that makes the target. Only
    turns that change the subject's render are drawn: none for a subject symmetric under every turn."""
    source_view = named_view(source_yaw)
    changing_views = [view for view in NAMED_VIEWS
                     if not turn_leaves_unchanged(prepared.symmetry, turn_to_view(source_view, view))]
    operations = [op for op in settings.object_operations if op != "rotate" or changing_views]
    if not operations:
        raise AssetRejected("symmetric_subject", f"a {prepared.asset.category} with {prepared.symmetry} symmetry "
                                                 f"looks the same after every turn; object_operations has only "
                                                 f"rotate")
    operation = rng.choice(operations)
    if operation == "translate":
        span = prepared.radius * 1.2
        offset = np.array([rng.choice((-1, 1)) * rng.uniform(0.5, 1.0) * span, rng.uniform(-0.5, 0.5) * span, 0.0])
        return {"operation": operation, "offset_m": offset.round(4).tolist()}, trs_matrix(offset)
    if operation == "scale":
        factor = rng.choice(settings.scale_factors)
        return {"operation": operation, "factor": factor}, trs_matrix((0, 0, 0), scale=(factor,) * 3)
    target_view = rng.choice(changing_views)
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


def camera_move(rng: random.Random, settings: SpatialEditSettings
                ) -> tuple[dict[str, Any], tuple[float, float, float], tuple[float, float, float]]:
    """A camera edit and the (azimuth, elevation, distance margin) orbits of its source and target cameras.
    A pitch step is drawn first and the source elevation from where that step stays inside the elevation
    limits, so `delta_deg` is exactly the elevation change the cameras make."""
    operation = rng.choice(settings.camera_operations)
    azimuth, margin = rng.uniform(-60, 60) % 360, rng.uniform(1.3, 1.8)
    if operation == "pitch":
        delta = rng.choice(settings.pitch_steps_deg)
        elevation = rng.uniform(*settings.pitch_source_range(delta))
        return {"operation": operation, "delta_deg": delta}, (azimuth, elevation, margin), \
            (azimuth, elevation + delta, margin)
    elevation = settings.source_elevation_deg.sample(rng)
    if operation == "yaw":
        delta = rng.choice(settings.yaw_steps_deg)
        return {"operation": operation, "delta_deg": delta}, (azimuth, elevation, margin), \
            ((azimuth + delta) % 360, elevation, margin)
    factor = rng.choice(settings.zoom_factors)
    return {"operation": operation, "factor": factor}, (azimuth, elevation, margin), \
        (azimuth, elevation, margin * factor)


def camera_edit_pair(worker: RenderWorker, prepared: PreparedAsset, rng: random.Random,
                     settings: SpatialEditSettings) -> dict[str, Any]:
    """The subject stands in a procedural room; two cameras orbit it with different yaw, pitch or distance.
    Both must see enough of its silhouette; after `max_attempts` draws the row is rejected for the reason
    most draws failed on (off_target / obstructed / too_little_visible), the last one's cause as detail."""
    room = procedural_room(rng.randrange(100_000), n_furniture=2, clear_radius=prepared.radius)
    focus = prepared.instance(name="focus", pass_index=FOCUS_PASS_INDEX)
    scene = RenderScene(objects=(*room, focus), lights=default_lights(rng, 2.0))
    names = object_names(scene)
    fov = settings.fov_deg.sample(rng)
    failures: list[tuple[str, str]] = []
    for attempt in range(settings.max_attempts):
        action, source_orbit, target_orbit = camera_move(rng, settings)
        cameras = [camera_at(prepared, azimuth, elevation, fov, margin, settings.width, settings.height)[0]
                   for azimuth, elevation, margin in (source_orbit, target_orbit)]
        visibilities = camera_visibility(worker, scene, prepared.convex_pieces(), cameras, FOCUS_PASS_INDEX,
                                         settings.visibility_max_rays)
        reasons = [v.reject_reason(min_visible_fraction=settings.min_visible_fraction) for v in visibilities]
        refused = [(which, reason, v) for which, reason, v in zip(("source", "target"), reasons, visibilities)
                   if reason is not None]
        if not refused:
            break
        which, reason, visibility = refused[0]
        failures.append((reason, f"{which} camera: "
                                 f"{visibility.describe(names, min_visible_fraction=settings.min_visible_fraction)}"))
    else:
        reasons = [reason for reason, _ in failures]
        counts = ", ".join(f"{reasons.count(r)} {r}" for r in sorted(set(reasons)))
        raise AssetRejected(dominant_reason(reasons), f"all {settings.max_attempts} camera pairs around the focus "
                                                      f"object refused ({counts}); last: {failures[-1][1]}")
    source, target = render_views(worker, scene, cameras, settings.render)
    checks = [_check_render(prepared.convex_pieces(), camera, result, FOCUS_PASS_INDEX, settings, which)
              for camera, result, which in ((cameras[0], source, "source"), (cameras[1], target, "target"))]
    backdrop = (200, 200, 205)
    (azimuth, elevation, margin), (target_azimuth, target_elevation, target_margin) = source_orbit, target_orbit
    action.update(source_azimuth_deg=round(azimuth, 2), source_elevation_deg=round(elevation, 2),
                  target_azimuth_deg=round(target_azimuth, 2), target_elevation_deg=round(target_elevation, 2),
                  distance_factor=round(target_margin / margin, 4), attempts=attempt + 1,
                  visible_fraction=[round(v.visible_fraction, 4) for v in visibilities])
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
    thin = thin_share(pair["source"].index_mask == pair["pass_index"])
    instructions = {language: instruction(pair["action"], subject, language) for language in ("en", "zh")}
    language = "zh" if rng.random() < settings.chinese_fraction else "en"
    metadata = {"branch": branch, **pair["action"], "subject": subject, "language": language,
                "instructions": instructions, "scene": pair["scene_kind"],
                "source_camera": _camera_record(pair["cameras"][0]),
                "target_camera": _camera_record(pair["cameras"][1]),
                "target_region_xyxy": pair["target_region"],
                "source_region_xyxy": _region(pair["source"].index_mask == pair["pass_index"]),
                "geometry_checks": pair["checks"], "subject_symmetry": prepared.symmetry,
                "subject_thin_share": None if thin is None else round(thin, 4)}
    masks = [Image.fromarray(np.where(result.index_mask == pair["pass_index"], 255, 0).astype(np.uint8), "L")
             for result in (pair["source"], pair["target"])]
    return {"source_image": image_ref(pair["source_image"]), "reference_images": [],
            "instruction": instructions[language], "target_image": image_ref(pair["target_image"]),
            "metadata": json.dumps(metadata, ensure_ascii=False), "source_mask": image_ref(masks[0]),
            "target_mask": image_ref(masks[1]), "edit_operation": f"{branch}:{pair['action']['operation']}",
            "subject_symmetry": prepared.symmetry, "subject_thin_share": thin}
