"""Camera perception sub-tasks: how the camera moved between two views, and which view is closer to an object.

- camera motion: camera-2 centre in the gravity-aligned frame of camera 1 (`data_engine.conventions`:
  x = camera 1's heading, y = its left, z = up); the move is the dominant horizontal component (forward /
  backward / left / right), asked only when the horizontal move is at least `min_translation_m`, one component
  is at least twice the other and the vertical part is smaller than the horizontal one; the turn is the signed
  change of heading (`camera_heading`, defined for steep and near-vertical views too);
- relative pose: yaw (the same heading change), pitch (degrees) and translation (metres) from view 1 to view 2;
- object-camera distance: closest-point distance from each camera centre, asked only with a gap of
  `min_camera_distance_gap_m`.
"""

from __future__ import annotations

import math

import numpy as np

from data_engine.conventions import camera_heading, gravity_aligned_camera_frame, invert_pose
from openspatial.geometry import point_box_distance
from openspatial.qa.tasks.base import (QASample, References, TaskContext, answer_text, fill, make_sample,
                                       multiple_choice, register_qa_task)


def _frame_pair(ctx: TaskContext) -> tuple[int, int]:
    first, second = sorted(ctx.pick(list(range(len(ctx.scene.frames))), 2))
    return first, second


def heading_change_deg(pose_1: np.ndarray, pose_2: np.ndarray) -> float:
    """Signed turn from camera 1's heading to camera 2's, degrees, counter-clockwise (left) positive."""
    (x1, y1), (x2, y2) = camera_heading(pose_1), camera_heading(pose_2)
    return math.degrees(math.atan2(x1 * y2 - y1 * x2, x1 * x2 + y1 * y2))


MOTIONS = tuple(f"{move}+{turn}" for move in ("forward", "backward", "move_left", "move_right")
                for turn in ("turn_left", "turn_right", "no_turn"))


@register_qa_task("camera_motion", "camera_perception", "choice", multi_view=True)
def camera_motion(ctx: TaskContext) -> QASample | None:
    first, second = _frame_pair(ctx)
    pose_1, pose_2 = ctx.scene.frames[first].pose, ctx.scene.frames[second].pose
    ahead, left, up = (invert_pose(gravity_aligned_camera_frame(pose_1)) @ np.append(pose_2[:3, 3], 1.0))[:3]
    horizontal = math.hypot(ahead, left)
    if horizontal < ctx.config.min_translation_m or abs(up) >= horizontal or \
            max(abs(left), abs(ahead)) < 2 * min(abs(left), abs(ahead)):
        return None
    move = ("forward" if ahead > 0 else "backward") if abs(ahead) > abs(left) else \
        ("move_left" if left > 0 else "move_right")
    yaw = heading_change_deg(pose_1, pose_2)
    if abs(yaw) >= ctx.config.turn_threshold_deg:
        turn = "turn_left" if yaw > 0 else "turn_right"
    elif abs(yaw) <= ctx.config.no_turn_deg:
        turn = "no_turn"
    else:
        return None
    truth = f"{move}+{turn}"

    def render(key: str) -> str:
        move_key, turn_key = key.split("+")
        if ctx.language == "en":
            return f"moved {ctx.word(move_key)} and {ctx.word(turn_key)}"
        return f"{ctx.word(move_key)}移动并{ctx.word(turn_key)}"

    options, letter, keys = multiple_choice(ctx, truth, MOTIONS, render)
    return make_sample(ctx, "camera_motion", [first, second], [], truth, fill(ctx, "camera_motion", [], options=options),
                   answer_text(ctx, "letter", f"{letter}. {render(truth)}"), options=keys, letter=letter)


def _pitch(pose: np.ndarray) -> float:
    return math.asin(float(np.clip(pose[2, 2], -1.0, 1.0)))


@register_qa_task("relative_pose", "camera_perception", "text", multi_view=True)
def relative_pose(ctx: TaskContext) -> QASample | None:
    first, second = _frame_pair(ctx)
    pose_1, pose_2 = ctx.scene.frames[first].pose, ctx.scene.frames[second].pose
    value = {"yaw_deg": heading_change_deg(pose_1, pose_2),
             "pitch_deg": math.degrees(_pitch(pose_2) - _pitch(pose_1)),
             "translation_m": float(np.linalg.norm(pose_2[:3, 3] - pose_1[:3, 3]))}
    yaw, pitch = (f"{round(value[key]):+d}" for key in ("yaw_deg", "pitch_deg"))
    if ctx.language == "en":
        text = (f"Yaw {yaw} degrees (positive = turned left), pitch {pitch} degrees (positive = tilted up), "
                f"translation {value['translation_m']:.1f} m.")
    else:
        text = f"偏航{yaw}度（正为左转），俯仰{pitch}度（正为抬头），平移{value['translation_m']:.1f}米。"
    return make_sample(ctx, "relative_pose", [first, second], [], value, fill(ctx, "relative_pose", []),
                   answer_text(ctx, "text", text))


@register_qa_task("object_camera_distance", "camera_perception", "choice", multi_view=True)
def object_camera_distance(ctx: TaskContext) -> QASample | None:
    for obj in ctx.pick(ctx.unique_objects(), len(ctx.unique_objects())):
        frames = ctx.index.frames_seeing(obj.object_id)
        if len(frames) < 2:
            continue
        first, second = sorted(ctx.pick(frames, 2))
        distances = [float(point_box_distance(ctx.scene.frames[f].camera_center[None], obj.box)[0])
                     for f in (first, second)]
        if abs(distances[0] - distances[1]) < ctx.config.min_camera_distance_gap_m:
            continue
        closer = 1 if distances[0] < distances[1] else 2
        refs = References(ctx, [first, second])
        return make_sample(ctx, "object_camera_distance", [first, second], [obj], closer,
                       fill(ctx, "object_camera_distance", [refs(obj)]), answer_text(ctx, "image", str(closer)), refs,
                       distances_m=distances)
    return None

