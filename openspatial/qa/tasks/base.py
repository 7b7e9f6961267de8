"""What every spatial QA sub-task shares: the config, the sample, the per-scene context and measures, object
references with drawn anchors, question/answer filling, and the registry the capability modules fill.

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
from openspatial.geometry import box_box_distance, box_height_range
from openspatial.qa.templates import ANSWERS, CATEGORY_NAMES, COLOUR_NAMES, QUESTIONS, WORDS
from openspatial.scene import Scene, SceneObject

ANCHOR_COLOURS = tuple(COLOUR_NAMES)
LETTERS = "ABCD"
# How an answer is scored (trainer/evaluation/spatial_qa.py): "number" by mean relative accuracy, "choice" (one option of
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


class UntranslatedCategory(KeyError):
    """A sample would name a category that has no name in its language (`templates.CATEGORY_NAMES`)."""


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
        names = CATEGORY_NAMES.get(category)
        if names is None:
            if self.language != "en":
                raise UntranslatedCategory(category)
            return category
        return names[self.lang]

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
    return _sentence_case(ctx, template.format(**params))


def answer_text(ctx: TaskContext, kind: str, answer: str) -> str:
    return _sentence_case(ctx, ANSWERS[kind][ctx.lang].format(answer=answer))


def _sentence_case(ctx: TaskContext, text: str) -> str:
    """English sentences start with a capital; Chinese has none (an upper-cased Latin word there is an error)."""
    return text[0].upper() + text[1:] if ctx.language == "en" else text


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
class QATaskSpec:
    name: str
    capability: str
    answer_type: AnswerType
    multi_view: bool
    generate: TaskFunction


TASKS: dict[str, QATaskSpec] = {}


def register_qa_task(name: str, capability: str, answer_type: AnswerType, multi_view: bool = False):
    def decorator(function: TaskFunction) -> TaskFunction:
        if name in TASKS:
            raise ValueError(f"QA task {name!r} registered twice")
        if answer_type not in get_args(AnswerType):
            raise ValueError(f"QA task {name!r}: answer_type {answer_type!r} is not one of {get_args(AnswerType)}")
        TASKS[name] = QATaskSpec(name, capability, answer_type, multi_view, function)
        return function
    return decorator


def make_sample(ctx: TaskContext, task: str, frames: list[int], objects: list[SceneObject], value: Any, question: str,
            answer: str, references: References | None = None, **details: Any) -> QASample:
    return QASample(task, TASKS[task].capability, frames, [o.object_id for o in objects], value, question, answer,
                    ctx.language, references.anchors if references else [], details)


def frame_with(ctx: TaskContext, count: int) -> tuple[int, list[SceneObject]] | None:
    """A random frame with at least `count` referable visible objects, and those objects."""
    frames = list(range(len(ctx.scene.frames)))
    ctx.rng.shuffle(frames)
    for frame in frames:
        references = References(ctx, [frame])
        objects = [o for o in ctx.index.visible_in(frame) if references.can_refer(o)]
        if len(objects) >= count and sum(not ctx.is_unique(o) for o in objects) <= len(ANCHOR_COLOURS):
            return frame, objects
    return None


def pick_in_one_frame(ctx: TaskContext, count: int) -> tuple[int, list[SceneObject]] | None:
    """A random frame and `count` distinct referable objects visible in it."""
    found = frame_with(ctx, count)
    if not found:
        return None
    frame, objects = found
    return frame, ctx.pick(objects, count)


def metres(value: float, digits: int = 1) -> str:
    return f"{round(value, digits) + 0.0:.{digits}f}"  # + 0.0 turns -0.0 into 0.0 so no "-0.00" is printed


def plural(name: str) -> str:
    """English plural of a category name (its last word): shelves, boxes, benches, glasses, libraries, TVs."""
    if name.endswith("shelf"):
        return name[:-1] + "ves"
    if name.endswith(("s", "x", "z", "ch", "sh")):
        return name + "es"
    if name.endswith("y") and name[-2:-1] not in tuple("aeiou"):
        return name[:-1] + "ies"
    return name + "s"


def with_article(name: str) -> str:
    """English indefinite article for a category name: "an armchair", "a table"."""
    return ("an " if name[:1].lower() in "aeiou" else "a ") + name


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
