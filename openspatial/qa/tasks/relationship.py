"""Spatial relationship sub-tasks: egocentric and allocentric directions, proximity, height.

- egocentric left/right and front/behind: the boxes' corner intervals along camera x / z are separated by
  `min_gap_m`; above/below: the same along world z;
- allocentric directions: angles in the ground plane between box centres, asked only when the angle is
  `angle_margin_deg` away from every sector boundary;
- closer / higher: closest-point distance / top z, asked only with a gap of `min_gap_m`.
"""

from __future__ import annotations

import math

import numpy as np

from openspatial.projection import world_to_camera
from openspatial.qa.templates import RELATION_PHRASES, YES_NO
from openspatial.qa.tasks.base import (QASample, References, TaskContext, answer_text, fill, ground_angle, make_sample,
                                       multiple_choice, pick_in_one_frame, register_qa_task, sector)


def _interval_relation(a_values: np.ndarray, b_values: np.ndarray, gap: float, low: str, high: str) -> str | None:
    if a_values.max() + gap <= b_values.min():
        return low
    if b_values.max() + gap <= a_values.min():
        return high
    return None


@register_qa_task("egocentric_position", "spatial_relationship", "choice")
def egocentric_position(ctx: TaskContext) -> QASample | None:
    picked = pick_in_one_frame(ctx, 2)
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
    return make_sample(ctx, "egocentric_position", [frame], [a, b], {"relation": asked, "holds": asked == truth},
                   fill(ctx, "egocentric_position", [refs(a), refs(b)], relation=RELATION_PHRASES[asked][ctx.lang]),
                   answer_text(ctx, "yes_no", YES_NO[asked == truth][ctx.lang]), refs)


ALLOCENTRIC_SECTORS = ("front", "left", "back", "right")


@register_qa_task("allocentric_direction", "spatial_relationship", "choice")
def allocentric_direction(ctx: TaskContext) -> QASample | None:
    picked = pick_in_one_frame(ctx, 3)
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
    return make_sample(ctx, "allocentric_direction", [frame], [a, b, c], truth,
                   fill(ctx, "allocentric_direction", [refs(a), refs(b), refs(c)], options=options),
                   answer_text(ctx, "letter", f"{letter}. {ctx.word(truth)}"), refs, options=keys, letter=letter)


@register_qa_task("proximity", "spatial_relationship", "choice")
def proximity(ctx: TaskContext) -> QASample | None:
    picked = pick_in_one_frame(ctx, 3)
    if not picked:
        return None
    frame, (x, a, b) = picked
    distance_a, distance_b = ctx.measures.distance(x, a), ctx.measures.distance(x, b)
    if abs(distance_a - distance_b) < ctx.config.min_gap_m:
        return None
    closer = a if distance_a < distance_b else b
    refs = References(ctx, [frame])
    names = {o.object_id: refs(o) for o in (x, a, b)}
    return make_sample(ctx, "proximity", [frame], [x, a, b], closer.object_id,
                   fill(ctx, "proximity", [names[x.object_id], names[a.object_id], names[b.object_id]]),
                   answer_text(ctx, "object", names[closer.object_id]), refs)


@register_qa_task("height_comparison", "spatial_relationship", "choice")
def height_comparison(ctx: TaskContext) -> QASample | None:
    picked = pick_in_one_frame(ctx, 2)
    if not picked:
        return None
    frame, (a, b) = picked
    top_a, top_b = ctx.measures.height_ranges[a.object_id][1], ctx.measures.height_ranges[b.object_id][1]
    if abs(top_a - top_b) < ctx.config.min_gap_m:
        return None
    higher = a if top_a > top_b else b
    refs = References(ctx, [frame])
    names = {a.object_id: refs(a), b.object_id: refs(b)}
    return make_sample(ctx, "height_comparison", [frame], [a, b], higher.object_id,
                   fill(ctx, "height_comparison", [names[a.object_id], names[b.object_id]]),
                   answer_text(ctx, "object", names[higher.object_id]), refs)

