"""Spatial measurement sub-tasks: distances, sizes and depths in metres, and which of two objects is larger.

- distance between objects: between their closest points (0 when touching), `geometry.box_box_distance`;
- size: longest full side length, or height = vertical extent of the box;
- depth: z of the box centre in the camera frame (metres along the optical axis);
- larger: by box volume, asked only when the volumes differ by `min_size_ratio`.
"""

from __future__ import annotations

from openspatial.qa.tasks.base import (QASample, References, TaskContext, answer_text, fill, make_sample, metres,
                                       pick_in_one_frame, register_qa_task)


@register_qa_task("distance", "spatial_measurement", "number")
def distance(ctx: TaskContext) -> QASample | None:
    picked = pick_in_one_frame(ctx, 2)
    if not picked:
        return None
    frame, (a, b) = picked
    value = ctx.measures.distance(a, b)
    refs = References(ctx, [frame])
    return make_sample(ctx, "distance", [frame], [a, b], value, fill(ctx, "distance", [refs(a), refs(b)]),
                   answer_text(ctx, "number_m", metres(value)), refs)


@register_qa_task("object_size", "spatial_measurement", "number")
def object_size(ctx: TaskContext) -> QASample | None:
    picked = pick_in_one_frame(ctx, 1)
    if not picked:
        return None
    frame, (obj,) = picked
    measure = ("longest", "height")[ctx.rng.randrange(2)]
    low, high = ctx.measures.height_ranges[obj.object_id]
    value = float(obj.box.extents.max()) if measure == "longest" else high - low
    refs = References(ctx, [frame])
    return make_sample(ctx, "object_size", [frame], [obj], value,
                   fill(ctx, "object_size", [refs(obj)], measure=ctx.word(measure)),
                   answer_text(ctx, "number_m", metres(value)), refs, measure=measure)


@register_qa_task("depth", "spatial_measurement", "number")
def depth(ctx: TaskContext) -> QASample | None:
    picked = pick_in_one_frame(ctx, 1)
    if not picked:
        return None
    frame, (obj,) = picked
    value = ctx.record(obj, frame).center_camera[2]
    refs = References(ctx, [frame])
    return make_sample(ctx, "depth", [frame], [obj], value, fill(ctx, "depth", [refs(obj)]),
                   answer_text(ctx, "number_m", metres(value)), refs)


@register_qa_task("relative_size", "spatial_measurement", "choice")
def relative_size(ctx: TaskContext) -> QASample | None:
    picked = pick_in_one_frame(ctx, 2)
    if not picked:
        return None
    frame, (a, b) = picked
    if max(a.box.volume, b.box.volume) < ctx.config.min_size_ratio * min(a.box.volume, b.box.volume):
        return None
    larger = a if a.box.volume > b.box.volume else b
    refs = References(ctx, [frame])
    names = {a.object_id: refs(a), b.object_id: refs(b)}
    return make_sample(ctx, "relative_size", [frame], [a, b], larger.object_id,
                   fill(ctx, "relative_size", [names[a.object_id], names[b.object_id]]),
                   answer_text(ctx, "object", names[larger.object_id]), refs)

