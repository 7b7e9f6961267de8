"""The 19 spatial QA sub-tasks: a registry of generators that compute answers from the scene geometry.

Written definitions (the checks in `checks.py` recompute each one another way):
- distance between objects: between their closest points (0 when touching), `geometry.box_box_distance`;
- size: longest full side length, or height = vertical extent of the box;
- depth: z of the box centre in the camera frame (metres along the optical axis);
- larger: by box volume, asked only when the volumes differ by `min_size_ratio`;
- egocentric left/right and front/behind: the boxes' corner intervals along camera x / z are separated by
  `min_gap_m`; above/below: the same along world z;
- allocentric / bird's-eye directions: angles in the ground plane between box centres, asked only when the
  angle is `angle_margin_deg` away from every sector boundary;
- closer / higher: closest-point distance / top z, asked only with a gap of `min_gap_m`;
- camera motion: camera-2 centre in camera-1 coordinates (dominant of x, z) and the heading change about +Z;
- visibility (counting, order, co-visibility): an object is seen in a frame when at least
  `min_visible_pixels` of its pixels are visible; objects near that threshold make the sample ambiguous.
Objects are referred to by category when it is unique in the scene, otherwise by a drawn box of a named colour
(single-view tasks only; multi-view tasks use scene-unique categories).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from openspatial.frame_index import ObjectFrameIndex, ObjectFrameRecord
from openspatial.geometry import box_box_distance, box_height_range, point_box_distance
from openspatial.projection import world_to_camera
from openspatial.qa.templates import (ANSWERS, CATEGORY_NAMES, COLOUR_NAMES, QUESTIONS, WORDS, YES_NO)
from openspatial.scene import Scene, SceneObject

ANCHOR_COLOURS = tuple(COLOUR_NAMES)
LETTERS = "ABCD"
# How an answer is scored (trainer/evaluation.py): "number" by mean relative accuracy, "choice" (one option of
# a fixed set: a letter, an object, yes/no, an image) and "text" (a structured description) by exact match.
AnswerType = Literal["number", "choice", "text"]


class QAConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tasks: tuple[str, ...] | None = None  # None: every registered sub-task
    samples_per_task: int = Field(default=1, ge=1)  # attempts per scene and sub-task
    languages: tuple[str, ...] = ("en", "zh")
    min_gap_m: float = Field(default=0.15, ge=0)
    min_size_ratio: float = Field(default=1.25, ge=1)
    angle_margin_deg: float = Field(default=15.0, ge=0, lt=45)
    min_camera_distance_gap_m: float = Field(default=0.3, ge=0)
    min_translation_m: float = Field(default=0.3, ge=0)
    turn_threshold_deg: float = Field(default=10.0, gt=0)
    no_turn_deg: float = Field(default=3.0, ge=0)
    min_visible_pixels: int = Field(default=80, ge=1)
    max_images: int = Field(default=4, ge=2)


@dataclass
class Anchor:
    slot: int  # index of the image in the sample
    object_id: str
    colour: str
    bbox: tuple[float, float, float, float]
    label: str | None = None  # a letter drawn beside the box (multiple-choice marks)


@dataclass
class QASample:
    task: str
    capability: str
    frames: list[int]
    objects: list[str]
    value: Any  # the canonical answer the checks recompute
    question: str
    answer: str
    language: str
    anchors: list[Anchor] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


class SceneMeasures:
    """Per-scene geometry shared by every sub-task, each quantity computed once."""

    def __init__(self, scene: Scene) -> None:
        self.category_counts = Counter(o.category for o in scene.objects)
        self.height_ranges = {o.object_id: box_height_range(o.box) for o in scene.objects}
        self._distances: dict[tuple[str, str], float] = {}
        self._objects = scene.objects
        self._support: list[tuple[str, str]] | None = None

    def distance(self, a: SceneObject, b: SceneObject) -> float:
        key = (min(a.object_id, b.object_id), max(a.object_id, b.object_id))
        if key not in self._distances:
            self._distances[key] = box_box_distance(a.box, b.box)
        return self._distances[key]

    def support_relations(self) -> list[tuple[str, str]]:
        if self._support is None:
            self._support = support_relations(self._objects, self.height_ranges)
        return self._support


@dataclass
class TaskContext:
    index: ObjectFrameIndex
    config: QAConfig
    rng: random.Random
    language: str
    measures: SceneMeasures

    @property
    def scene(self) -> Scene:
        return self.index.scene

    @property
    def lang(self) -> int:
        return 0 if self.language == "en" else 1

    def word(self, key: str) -> str:
        return WORDS[key][self.lang]

    def category_name(self, category: str) -> str:
        return CATEGORY_NAMES.get(category, (category, category))[self.lang]

    def is_unique(self, obj: SceneObject) -> bool:
        return self.measures.category_counts[obj.category] == 1

    def unique_objects(self) -> list[SceneObject]:
        return [o for o in self.scene.objects if self.is_unique(o)]

    def record(self, obj: SceneObject, frame: int) -> ObjectFrameRecord:
        return self.index.records[obj.object_id, frame]

    def seen(self, obj: SceneObject, frame: int) -> bool:
        return self.record(obj, frame).visible_pixels >= self.config.min_visible_pixels

    def clearly_unseen(self, obj: SceneObject, frame: int) -> bool:
        return self.record(obj, frame).visible_pixels < self.config.min_visible_pixels // 2

    def anchorable(self, obj: SceneObject, frame: int) -> bool:
        """Visible, and wholly in front of the camera, so its drawn box is its projected 3D box."""
        record = self.record(obj, frame)
        return record.visible and record.in_front and record.amodal_bbox_2d is not None

    def pick(self, items: list, count: int) -> list:
        return self.rng.sample(items, count)


class References:
    """Names objects unambiguously, drawing coloured boxes for categories that are not unique."""

    def __init__(self, ctx: TaskContext, frames: list[int]) -> None:
        self.ctx, self.frames, self.anchors = ctx, frames, []

    def __call__(self, obj: SceneObject, slot: int = 0) -> str:
        name = self.ctx.category_name(obj.category)
        if self.ctx.is_unique(obj):
            return f"the {name}" if self.ctx.language == "en" else name
        colour = ANCHOR_COLOURS[len(self.anchors)]
        bbox = self.ctx.record(obj, self.frames[slot]).amodal_bbox_2d
        self.anchors.append(Anchor(slot, obj.object_id, colour, bbox))
        colour_name = COLOUR_NAMES[colour][self.ctx.lang]
        return f"the {name} in the {colour_name} box" if self.ctx.language == "en" else f"{colour_name}框中的{name}"

    def can_refer(self, obj: SceneObject, slot: int = 0) -> bool:
        return self.ctx.is_unique(obj) or self.ctx.anchorable(obj, self.frames[slot])


def fill(ctx: TaskContext, task: str, references: list[str], **params: Any) -> str:
    template = QUESTIONS[task][ctx.language][ctx.rng.randrange(len(QUESTIONS[task][ctx.language]))]
    for placeholder, reference in zip("ABC", references):
        template = template.replace(f"[{placeholder}]", reference)
    text = template.format(**params)
    return text[0].upper() + text[1:]


def answer_text(ctx: TaskContext, kind: str, answer: str) -> str:
    text = ANSWERS[kind][ctx.lang].format(answer=answer)
    return text[0].upper() + text[1:]


def multiple_choice(ctx: TaskContext, correct: str, pool: tuple[str, ...], render: Callable[[str], str]):
    """Options with the correct one at a uniformly random letter; returns (options text, letter, keys)."""
    distractors = [key for key in pool if key != correct]
    chosen = ctx.pick(distractors, min(len(LETTERS) - 1, len(distractors)))
    keys = chosen[:]
    keys.insert(ctx.rng.randrange(len(chosen) + 1), correct)
    text = "\n".join(f"{LETTERS[i]}. {render(key)}" for i, key in enumerate(keys))
    return text, LETTERS[keys.index(correct)], keys


def sector(angle: float, margin: float, names: tuple[str, ...], offset: float) -> str | None:
    """Which of len(names) equal sectors (starting at `offset` radians, counter-clockwise) holds `angle`;
    None when the angle is within `margin` of a boundary."""
    width = 2 * math.pi / len(names)
    position = (angle - offset) % (2 * math.pi)
    within = position % width
    if within < margin or within > width - margin:
        return None
    return names[int(position // width)]


def ground_angle(vector: np.ndarray) -> float:
    return math.atan2(vector[1], vector[0])


TaskFunction = Callable[[TaskContext], QASample | None]


@dataclass(frozen=True)
class TaskSpec:
    name: str
    capability: str
    answer_type: AnswerType
    multi_view: bool
    generate: TaskFunction


TASKS: dict[str, TaskSpec] = {}


def register_task(name: str, capability: str, answer_type: AnswerType, multi_view: bool = False):
    def decorator(function: TaskFunction) -> TaskFunction:
        if name in TASKS:
            raise ValueError(f"QA task {name!r} registered twice")
        if answer_type not in get_args(AnswerType):
            raise ValueError(f"QA task {name!r}: answer_type {answer_type!r} is not one of {get_args(AnswerType)}")
        TASKS[name] = TaskSpec(name, capability, answer_type, multi_view, function)
        return function
    return decorator


def _sample(ctx: TaskContext, task: str, frames: list[int], objects: list[SceneObject], value: Any, question: str,
            answer: str, references: References | None = None, **details: Any) -> QASample:
    return QASample(task, TASKS[task].capability, frames, [o.object_id for o in objects], value, question, answer,
                    ctx.language, references.anchors if references else [], details)


def _frame_with(ctx: TaskContext, count: int) -> tuple[int, list[SceneObject]] | None:
    """A random frame with at least `count` referable visible objects, and those objects."""
    frames = list(range(len(ctx.scene.frames)))
    ctx.rng.shuffle(frames)
    for frame in frames:
        references = References(ctx, [frame])
        objects = [o for o in ctx.index.visible_in(frame) if references.can_refer(o)]
        if len(objects) >= count and sum(not ctx.is_unique(o) for o in objects) <= len(ANCHOR_COLOURS):
            return frame, objects
    return None


def _pick_in_one_frame(ctx: TaskContext, count: int) -> tuple[int, list[SceneObject]] | None:
    """A random frame and `count` distinct referable objects visible in it."""
    found = _frame_with(ctx, count)
    if not found:
        return None
    frame, objects = found
    return frame, ctx.pick(objects, count)


def _metres(value: float, digits: int = 1) -> str:
    return f"{round(value, digits) + 0.0:.{digits}f}"  # + 0.0 turns -0.0 into 0.0 so no "-0.00" is printed


# ---- Spatial Measurement ---------------------------------------------------------------------------------

@register_task("distance", "spatial_measurement", "number")
def distance(ctx: TaskContext) -> QASample | None:
    picked = _pick_in_one_frame(ctx, 2)
    if not picked:
        return None
    frame, (a, b) = picked
    value = ctx.measures.distance(a, b)
    refs = References(ctx, [frame])
    return _sample(ctx, "distance", [frame], [a, b], value, fill(ctx, "distance", [refs(a), refs(b)]),
                   answer_text(ctx, "number_m", _metres(value)), refs)


@register_task("object_size", "spatial_measurement", "number")
def object_size(ctx: TaskContext) -> QASample | None:
    picked = _pick_in_one_frame(ctx, 1)
    if not picked:
        return None
    frame, (obj,) = picked
    measure = ("longest", "height")[ctx.rng.randrange(2)]
    low, high = ctx.measures.height_ranges[obj.object_id]
    value = float(obj.box.extents.max()) if measure == "longest" else high - low
    refs = References(ctx, [frame])
    return _sample(ctx, "object_size", [frame], [obj], value,
                   fill(ctx, "object_size", [refs(obj)], measure=ctx.word(measure)),
                   answer_text(ctx, "number_m", _metres(value)), refs, measure=measure)


@register_task("depth", "spatial_measurement", "number")
def depth(ctx: TaskContext) -> QASample | None:
    picked = _pick_in_one_frame(ctx, 1)
    if not picked:
        return None
    frame, (obj,) = picked
    value = ctx.record(obj, frame).center_camera[2]
    refs = References(ctx, [frame])
    return _sample(ctx, "depth", [frame], [obj], value, fill(ctx, "depth", [refs(obj)]),
                   answer_text(ctx, "number_m", _metres(value)), refs)


@register_task("relative_size", "spatial_measurement", "choice")
def relative_size(ctx: TaskContext) -> QASample | None:
    picked = _pick_in_one_frame(ctx, 2)
    if not picked:
        return None
    frame, (a, b) = picked
    if max(a.box.volume, b.box.volume) < ctx.config.min_size_ratio * min(a.box.volume, b.box.volume):
        return None
    larger = a if a.box.volume > b.box.volume else b
    refs = References(ctx, [frame])
    names = {a.object_id: refs(a), b.object_id: refs(b)}
    return _sample(ctx, "relative_size", [frame], [a, b], larger.object_id,
                   fill(ctx, "relative_size", [names[a.object_id], names[b.object_id]]),
                   answer_text(ctx, "object", names[larger.object_id]), refs)


# ---- Spatial Relationship --------------------------------------------------------------------------------

def _interval_relation(a_values: np.ndarray, b_values: np.ndarray, gap: float, low: str, high: str) -> str | None:
    if a_values.max() + gap <= b_values.min():
        return low
    if b_values.max() + gap <= a_values.min():
        return high
    return None


@register_task("egocentric_position", "spatial_relationship", "choice")
def egocentric_position(ctx: TaskContext) -> QASample | None:
    picked = _pick_in_one_frame(ctx, 2)
    if not picked:
        return None
    frame, (a, b) = picked
    camera_frame = ctx.scene.frames[frame]
    corners_a = world_to_camera(camera_frame, a.box.corners())
    corners_b = world_to_camera(camera_frame, b.box.corners())
    relations = [_interval_relation(corners_a[:, 0], corners_b[:, 0], ctx.config.min_gap_m, "left", "right"),
                 _interval_relation(a.box.corners()[:, 2], b.box.corners()[:, 2], ctx.config.min_gap_m, "below", "above"),
                 _interval_relation(corners_a[:, 2], corners_b[:, 2], ctx.config.min_gap_m, "in_front", "behind")]
    relations = [r for r in relations if r]
    if not relations:
        return None
    truth = relations[ctx.rng.randrange(len(relations))]
    opposite = {"left": "right", "right": "left", "above": "below", "below": "above", "in_front": "behind",
                "behind": "in_front"}
    asked = truth if ctx.rng.random() < 0.5 else opposite[truth]
    refs = References(ctx, [frame])
    return _sample(ctx, "egocentric_position", [frame], [a, b], {"relation": asked, "holds": asked == truth},
                   fill(ctx, "egocentric_position", [refs(a), refs(b)], relation=ctx.word(asked)),
                   answer_text(ctx, "yes_no", YES_NO[asked == truth][ctx.lang]), refs)


ALLOCENTRIC_SECTORS = ("front", "left", "back", "right")


@register_task("allocentric_direction", "spatial_relationship", "choice")
def allocentric_direction(ctx: TaskContext) -> QASample | None:
    picked = _pick_in_one_frame(ctx, 3)
    if not picked:
        return None
    frame, (a, b, c) = picked
    facing, target = (b.box.center - a.box.center)[:2], (c.box.center - a.box.center)[:2]
    if min(np.linalg.norm(facing), np.linalg.norm(target)) < 0.5:
        return None
    relative = ground_angle(target) - ground_angle(facing)
    truth = sector(relative, math.radians(ctx.config.angle_margin_deg), ALLOCENTRIC_SECTORS, -math.pi / 4)
    if truth is None:
        return None
    options, letter, keys = multiple_choice(ctx, truth, ALLOCENTRIC_SECTORS, ctx.word)
    refs = References(ctx, [frame])
    return _sample(ctx, "allocentric_direction", [frame], [a, b, c], truth,
                   fill(ctx, "allocentric_direction", [refs(a), refs(b), refs(c)], options=options),
                   answer_text(ctx, "letter", f"{letter}. {ctx.word(truth)}"), refs, options=keys, letter=letter)


@register_task("proximity", "spatial_relationship", "choice")
def proximity(ctx: TaskContext) -> QASample | None:
    picked = _pick_in_one_frame(ctx, 3)
    if not picked:
        return None
    frame, (x, a, b) = picked
    distance_a, distance_b = ctx.measures.distance(x, a), ctx.measures.distance(x, b)
    if abs(distance_a - distance_b) < ctx.config.min_gap_m:
        return None
    closer = a if distance_a < distance_b else b
    refs = References(ctx, [frame])
    names = {o.object_id: refs(o) for o in (x, a, b)}
    return _sample(ctx, "proximity", [frame], [x, a, b], closer.object_id,
                   fill(ctx, "proximity", [names[x.object_id], names[a.object_id], names[b.object_id]]),
                   answer_text(ctx, "object", names[closer.object_id]), refs)


@register_task("height_comparison", "spatial_relationship", "choice")
def height_comparison(ctx: TaskContext) -> QASample | None:
    picked = _pick_in_one_frame(ctx, 2)
    if not picked:
        return None
    frame, (a, b) = picked
    top_a, top_b = ctx.measures.height_ranges[a.object_id][1], ctx.measures.height_ranges[b.object_id][1]
    if abs(top_a - top_b) < ctx.config.min_gap_m:
        return None
    higher = a if top_a > top_b else b
    refs = References(ctx, [frame])
    names = {a.object_id: refs(a), b.object_id: refs(b)}
    return _sample(ctx, "height_comparison", [frame], [a, b], higher.object_id,
                   fill(ctx, "height_comparison", [names[a.object_id], names[b.object_id]]),
                   answer_text(ctx, "object", names[higher.object_id]), refs)


# ---- Camera Perception -----------------------------------------------------------------------------------

def _frame_pair(ctx: TaskContext) -> tuple[int, int]:
    first, second = sorted(ctx.pick(list(range(len(ctx.scene.frames))), 2))
    return first, second


def _heading(pose: np.ndarray) -> float:
    return ground_angle(pose[:3, 2])


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


MOTIONS = tuple(f"{move}+{turn}" for move in ("forward", "backward", "move_left", "move_right")
                for turn in ("turn_left", "turn_right", "no_turn"))


@register_task("camera_motion", "camera_perception", "choice", multi_view=True)
def camera_motion(ctx: TaskContext) -> QASample | None:
    first, second = _frame_pair(ctx)
    pose_1, pose_2 = ctx.scene.frames[first].pose, ctx.scene.frames[second].pose
    offset = pose_1[:3, :3].T @ (pose_2[:3, 3] - pose_1[:3, 3])
    sideways, ahead = offset[0], offset[2]
    if math.hypot(sideways, ahead) < ctx.config.min_translation_m or \
            max(abs(sideways), abs(ahead)) < 2 * min(abs(sideways), abs(ahead)):
        return None
    move = ("forward" if ahead > 0 else "backward") if abs(ahead) > abs(sideways) else \
        ("move_right" if sideways > 0 else "move_left")
    yaw = math.degrees(_wrap(_heading(pose_2) - _heading(pose_1)))
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
    return _sample(ctx, "camera_motion", [first, second], [], truth, fill(ctx, "camera_motion", [], options=options),
                   answer_text(ctx, "letter", f"{letter}. {render(truth)}"), options=keys, letter=letter)


def _pitch(pose: np.ndarray) -> float:
    return math.asin(float(np.clip(pose[2, 2], -1.0, 1.0)))


@register_task("relative_pose", "camera_perception", "text", multi_view=True)
def relative_pose(ctx: TaskContext) -> QASample | None:
    first, second = _frame_pair(ctx)
    pose_1, pose_2 = ctx.scene.frames[first].pose, ctx.scene.frames[second].pose
    value = {"yaw_deg": math.degrees(_wrap(_heading(pose_2) - _heading(pose_1))),
             "pitch_deg": math.degrees(_pitch(pose_2) - _pitch(pose_1)),
             "translation_m": float(np.linalg.norm(pose_2[:3, 3] - pose_1[:3, 3]))}
    yaw, pitch = (f"{round(value[key]):+d}" for key in ("yaw_deg", "pitch_deg"))
    if ctx.language == "en":
        text = (f"Yaw {yaw} degrees (positive = turned left), pitch {pitch} degrees (positive = tilted up), "
                f"translation {value['translation_m']:.1f} m.")
    else:
        text = f"偏航{yaw}度（正为左转），俯仰{pitch}度（正为抬头），平移{value['translation_m']:.1f}米。"
    return _sample(ctx, "relative_pose", [first, second], [], value, fill(ctx, "relative_pose", []),
                   answer_text(ctx, "text", text))


@register_task("object_camera_distance", "camera_perception", "choice", multi_view=True)
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
        return _sample(ctx, "object_camera_distance", [first, second], [obj], closer,
                       fill(ctx, "object_camera_distance", [refs(obj)]), answer_text(ctx, "image", str(closer)), refs,
                       distances_m=distances)
    return None


# ---- Multi-view Consistency ------------------------------------------------------------------------------

@register_task("correspondence", "multiview_consistency", "choice", multi_view=True)
def correspondence(ctx: TaskContext) -> QASample | None:
    frame_count = len(ctx.scene.frames)
    pairs = [(i, j) for i in range(frame_count) for j in range(frame_count) if i != j]
    ctx.rng.shuffle(pairs)
    for first, second in pairs:
        shared = [o for o in ctx.scene.objects if ctx.anchorable(o, first) and ctx.anchorable(o, second)]
        others = [o for o in ctx.scene.objects if ctx.anchorable(o, second) and o not in shared]
        if not shared or len(shared) + len(others) < 2:
            continue
        (target,) = ctx.pick(shared, 1)
        candidates = ctx.pick([o for o in shared + others if o is not target],
                              min(len(LETTERS) - 1, len(shared) + len(others) - 1))
        candidates.insert(ctx.rng.randrange(len(candidates) + 1), target)
        anchors = [Anchor(0, target.object_id, "red", ctx.record(target, first).amodal_bbox_2d)]
        anchors += [Anchor(1, o.object_id, ANCHOR_COLOURS[1 + i], ctx.record(o, second).amodal_bbox_2d, LETTERS[i])
                    for i, o in enumerate(candidates)]
        letter = LETTERS[candidates.index(target)]
        options = "\n".join(f"{LETTERS[i]}. {COLOUR_NAMES[a.colour][ctx.lang]}" for i, a in enumerate(anchors[1:]))
        question = fill(ctx, "correspondence", [], colour=COLOUR_NAMES["red"][ctx.lang], options=options)
        sample = _sample(ctx, "correspondence", [first, second], [target] + [o for o in candidates if o is not target],
                         letter, question, answer_text(ctx, "letter", letter))
        sample.anchors = anchors
        return sample
    return None


def _plural(name: str) -> str:
    if name.endswith("shelf"):
        return name[:-1] + "ves"
    return name + ("es" if name.endswith("x") else "s")


@register_task("instance_counting", "multiview_consistency", "number", multi_view=True)
def instance_counting(ctx: TaskContext) -> QASample | None:
    frames = sorted(ctx.pick(list(range(len(ctx.scene.frames))), min(ctx.config.max_images, len(ctx.scene.frames))))
    categories = sorted({o.category for o in ctx.scene.objects})
    ctx.rng.shuffle(categories)
    for category in categories:
        members = [o for o in ctx.scene.objects if o.category == category]
        seen = [any(ctx.seen(o, f) for f in frames) for o in members]
        clear = [s or all(ctx.clearly_unseen(o, f) for f in frames) for o, s in zip(members, seen)]
        if not all(clear) or not any(seen):
            continue
        count = sum(seen)
        name = ctx.category_name(category)
        return _sample(ctx, "instance_counting", frames, [o for o, s in zip(members, seen) if s], count,
                       fill(ctx, "instance_counting", [], category=name, category_plural=_plural(name)),
                       answer_text(ctx, "count", str(count)), category=category)
    return None


@register_task("unseen_pair_distance", "multiview_consistency", "number", multi_view=True)
def unseen_pair_distance(ctx: TaskContext) -> QASample | None:
    frame_ids = range(len(ctx.scene.frames))
    unique = ctx.unique_objects()
    pairs = [(a, b) for a in unique for b in unique if a.object_id < b.object_id]
    ctx.rng.shuffle(pairs)
    for a, b in pairs:
        never_together = all(ctx.clearly_unseen(a, f) or ctx.clearly_unseen(b, f) for f in frame_ids)
        frames_a = [f for f in frame_ids if ctx.seen(a, f)]
        frames_b = [f for f in frame_ids if ctx.seen(b, f)]
        if not never_together or not frames_a or not frames_b:
            continue
        frames = [frames_a[ctx.rng.randrange(len(frames_a))], frames_b[ctx.rng.randrange(len(frames_b))]]
        value = ctx.measures.distance(a, b)
        refs = References(ctx, frames)
        return _sample(ctx, "unseen_pair_distance", frames, [a, b], value,
                       fill(ctx, "unseen_pair_distance", [refs(a, 0), refs(b, 1)]),
                       answer_text(ctx, "number_m", _metres(value)), refs)
    return None


BIRDSEYE_SECTORS = ("front_left", "back_left", "back_right", "front_right")


@register_task("birdseye_position", "multiview_consistency", "choice", multi_view=True)
def birdseye_position(ctx: TaskContext) -> QASample | None:
    unique = [o for o in ctx.unique_objects() if ctx.index.frames_seeing(o.object_id)]
    if len(unique) < 2:
        return None
    a, b = ctx.pick(unique, 2)
    frame_a = ctx.index.frames_seeing(a.object_id)[0]
    frame_b = ctx.index.frames_seeing(b.object_id)[-1]
    offset = (b.box.center - a.box.center)[:2]
    if np.linalg.norm(offset) < 0.5:
        return None
    forward = ctx.scene.frames[frame_a].pose[:3, 2]
    relative = ground_angle(offset) - ground_angle(forward)
    truth = sector(relative, math.radians(ctx.config.angle_margin_deg), BIRDSEYE_SECTORS, 0.0)
    if truth is None:
        return None
    options, letter, keys = multiple_choice(ctx, truth, BIRDSEYE_SECTORS, ctx.word)
    refs = References(ctx, [frame_a, frame_b])
    return _sample(ctx, "birdseye_position", [frame_a, frame_b], [a, b], truth,
                   fill(ctx, "birdseye_position", [refs(a, 0), refs(b, 1)], options=options),
                   answer_text(ctx, "letter", f"{letter}. {ctx.word(truth)}"), refs, options=keys, letter=letter)


# ---- Scene-Aware Reasoning -------------------------------------------------------------------------------

def support_relations(objects: list[SceneObject], height_ranges: dict[str, tuple[float, float]],
                      tolerance: float = 0.01) -> list[tuple[str, str]]:
    """(top object id, supporting object id): the top's bottom lies on the support's top, centre over it."""
    relations = []
    for top in objects:
        bottom = height_ranges[top.object_id][0]
        for support in objects:
            if support is top or abs(height_ranges[support.object_id][1] - bottom) > tolerance:
                continue
            local = support.box.to_local(top.box.center[None])[0]
            if np.all(np.abs(local[:2]) <= support.box.extents[:2] / 2):
                relations.append((top.object_id, support.object_id))
    return relations


@register_task("scene_caption", "scene_reasoning", "text", multi_view=True)
def scene_caption(ctx: TaskContext) -> QASample | None:
    counts = Counter(o.category for o in ctx.scene.objects)
    if not counts:
        return None
    frames = sorted(ctx.pick(list(range(len(ctx.scene.frames))), min(ctx.config.max_images, len(ctx.scene.frames))))
    by_id = {o.object_id: o for o in ctx.scene.objects}
    relations = ctx.measures.support_relations()
    if ctx.language == "en":
        listed = [f"{n} {_plural(ctx.category_name(c)) if n > 1 else ctx.category_name(c)}"
                  for c, n in sorted(counts.items())]
        text = "The room contains " + ", ".join(listed) + "."
        text += "".join(f" A {ctx.category_name(by_id[t].category)} stands on a {ctx.category_name(by_id[s].category)}."
                        for t, s in relations)
    else:
        text = "房间里有" + "、".join(f"{n}个{ctx.category_name(c)}" for c, n in sorted(counts.items())) + "。"
        text += "".join(f"{ctx.category_name(by_id[s].category)}上放着{ctx.category_name(by_id[t].category)}。"
                        for t, s in relations)
    return _sample(ctx, "scene_caption", frames, [], {"counts": dict(sorted(counts.items())), "relations": relations},
                   fill(ctx, "scene_caption", []), text)


@register_task("grounding_3d", "scene_reasoning", "text")
def grounding_3d(ctx: TaskContext) -> QASample | None:
    picked = _pick_in_one_frame(ctx, 1)
    if not picked:
        return None
    frame, (obj,) = picked
    record = ctx.record(obj, frame)
    value = {"center": list(record.center_camera), "size": list(record.extents)}
    formatted = ("{\"center\": [" + ", ".join(_metres(v, 2) for v in value["center"]) + "], \"size\": ["
                 + ", ".join(_metres(v, 2) for v in value["size"]) + "]}")
    refs = References(ctx, [frame])
    return _sample(ctx, "grounding_3d", [frame], [obj], value, fill(ctx, "grounding_3d", [refs(obj)]),
                   answer_text(ctx, "text", formatted), refs)


ORIENTATION_SECTORS = ("away", "facing_right", "toward", "facing_left")


@register_task("orientation", "scene_reasoning", "choice")
def orientation(ctx: TaskContext) -> QASample | None:
    found = _frame_with(ctx, 1)
    if not found:
        return None
    frame, objects = found
    fronted = [o for o in objects if o.has_front]
    if not fronted:
        return None
    (obj,) = ctx.pick(fronted, 1)
    front_camera = ctx.record(obj, frame).rotation_camera[:, 0]
    # Angle in the camera's x-z plane measured from +z (away) towards +x (right).
    truth = sector(math.atan2(front_camera[0], front_camera[2]), math.radians(ctx.config.angle_margin_deg),
                   ORIENTATION_SECTORS, -math.pi / 4)
    if truth is None:
        return None
    options, letter, keys = multiple_choice(ctx, truth, ORIENTATION_SECTORS, ctx.word)
    refs = References(ctx, [frame])
    return _sample(ctx, "orientation", [frame], [obj], truth, fill(ctx, "orientation", [refs(obj)], options=options),
                   answer_text(ctx, "letter", f"{letter}. {ctx.word(truth)}"), refs, options=keys, letter=letter)


@register_task("appearance_order", "scene_reasoning", "text", multi_view=True)
def appearance_order(ctx: TaskContext) -> QASample | None:
    frames = list(range(len(ctx.scene.frames)))
    first_seen: dict[str, int] = {}
    for obj in ctx.unique_objects():
        seen = [f for f in frames if ctx.seen(obj, f)]
        if seen and all(ctx.clearly_unseen(obj, f) for f in frames[:seen[0]]):
            first_seen[obj.object_id] = seen[0]
    by_frame: dict[int, str] = {}
    for object_id, frame in first_seen.items():
        by_frame.setdefault(frame, object_id)
    if len(by_frame) < 3:
        return None
    chosen = ctx.pick(sorted(by_frame.values()), 3)
    objects = [o for o in ctx.scene.objects if o.object_id in chosen]
    ctx.rng.shuffle(objects)
    ordered = sorted(objects, key=lambda o: first_seen[o.object_id])
    names = {o.object_id: ctx.category_name(o.category) for o in objects}
    separator = ", " if ctx.language == "en" else "、"
    return _sample(ctx, "appearance_order", frames, objects, [o.object_id for o in ordered],
                   fill(ctx, "appearance_order", [], objects=separator.join(names[o.object_id] for o in objects)),
                   answer_text(ctx, "text", separator.join(names[o.object_id] for o in ordered)))


def generate_scene_qa(index: ObjectFrameIndex, config: QAConfig, seed: int) -> list[QASample]:
    """Every configured sub-task, `samples_per_task` attempts each; deterministic in (index, config, seed)."""
    unknown = sorted(set(config.tasks or ()) - set(TASKS))
    if unknown:
        raise ValueError(f"qa.tasks: unknown sub-tasks {unknown}; allowed: {', '.join(TASKS)}")
    samples = []
    measures = SceneMeasures(index.scene)
    for task_number, name in enumerate(config.tasks or tuple(TASKS)):
        for attempt in range(config.samples_per_task):
            rng = random.Random(f"{seed}/{task_number}/{attempt}")  # Python's generator: cheap to seed
            language = config.languages[rng.randrange(len(config.languages))]
            sample = TASKS[name].generate(TaskContext(index, config, rng, language, measures))
            if sample is not None:
                samples.append(sample)
    return samples

