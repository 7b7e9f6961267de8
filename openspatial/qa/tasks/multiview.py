"""Multi-view consistency sub-tasks: the same object across views, counting, unseen pairs, bird's-eye layout.

- visibility (counting, correspondence): an object is seen in a frame when at least `min_visible_pixels` of
  its pixels are visible; objects near that threshold make the sample ambiguous;
- bird's-eye directions: angles in the ground plane between box centres, relative to camera 1's heading
  (`data_engine.conventions.camera_heading`, defined for near-vertical views too), asked only when the angle is
  `angle_margin_deg` away from every sector boundary.
Multi-view sub-tasks refer to objects by scene-unique categories.
"""

from __future__ import annotations

import math

import numpy as np

from data_engine.conventions import camera_heading
from openspatial.qa.templates import COLOUR_NAMES
from openspatial.qa.tasks.base import (ANCHOR_COLOURS, LETTERS, Anchor, QASample, References, TaskContext,
                                       answer_text, fill, ground_angle, make_sample, metres, multiple_choice, plural,
                                       register_qa_task, sector)


@register_qa_task("correspondence", "multiview_consistency", "choice", multi_view=True)
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
        sample = make_sample(ctx, "correspondence", [first, second], [target] + [o for o in candidates if o is not target],
                         letter, question, answer_text(ctx, "letter", letter))
        sample.anchors = anchors
        return sample
    return None


@register_qa_task("instance_counting", "multiview_consistency", "number", multi_view=True)
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
        return make_sample(ctx, "instance_counting", frames, [o for o, s in zip(members, seen) if s], count,
                       fill(ctx, "instance_counting", [], category=name, category_plural=plural(name)),
                       answer_text(ctx, "count", str(count)), category=category)
    return None


@register_qa_task("unseen_pair_distance", "multiview_consistency", "number", multi_view=True)
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
        return make_sample(ctx, "unseen_pair_distance", frames, [a, b], value,
                       fill(ctx, "unseen_pair_distance", [refs(a, 0), refs(b, 1)]),
                       answer_text(ctx, "number_m", metres(value)), refs)
    return None


BIRDSEYE_SECTORS = ("front_left", "back_left", "back_right", "front_right")


@register_qa_task("birdseye_position", "multiview_consistency", "choice", multi_view=True)
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
    relative = ground_angle(offset) - ground_angle(camera_heading(ctx.scene.frames[frame_a].pose))
    truth = sector(relative, math.radians(ctx.config.angle_margin_deg), BIRDSEYE_SECTORS, 0.0)
    if truth is None:
        return None
    options, letter, keys = multiple_choice(ctx, truth, BIRDSEYE_SECTORS, ctx.word)
    refs = References(ctx, [frame_a, frame_b])
    return make_sample(ctx, "birdseye_position", [frame_a, frame_b], [a, b], truth,
                   fill(ctx, "birdseye_position", [refs(a, 0), refs(b, 1)], options=options),
                   answer_text(ctx, "letter", f"{letter}. {ctx.word(truth)}"), refs, options=keys, letter=letter)

