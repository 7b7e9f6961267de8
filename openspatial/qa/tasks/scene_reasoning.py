"""Scene-aware reasoning sub-tasks: scene captions, 3D grounding, object orientation, order of appearance.

- scene caption: category counts and support relations (`base.support_relations`);
- grounding: the box centre and full extents in the camera frame;
- orientation: the object's front in the camera's x-z plane, asked only `angle_margin_deg` away from every
  sector boundary;
- order of appearance: the first frame each object is seen in (`min_visible_pixels`), clearly unseen before.
"""

from __future__ import annotations

import math
from collections import Counter

from openspatial.qa.tasks.base import (QASample, References, TaskContext, answer_text, fill, frame_with, make_sample,
                                       metres, multiple_choice, pick_in_one_frame, plural, register_qa_task, sector,
                                       with_article)


@register_qa_task("scene_caption", "scene_reasoning", "text", multi_view=True)
def scene_caption(ctx: TaskContext) -> QASample | None:
    counts = Counter(o.category for o in ctx.scene.objects)
    if not counts:
        return None
    frames = sorted(ctx.pick(list(range(len(ctx.scene.frames))), min(ctx.config.max_images, len(ctx.scene.frames))))
    by_id = {o.object_id: o for o in ctx.scene.objects}
    relations = ctx.measures.support_relations()
    if ctx.language == "en":
        listed = [f"{n} {plural(ctx.category_name(c)) if n > 1 else ctx.category_name(c)}"
                  for c, n in sorted(counts.items())]
        text = "The room contains " + ", ".join(listed) + "."
        text += "".join(f" {with_article(ctx.category_name(by_id[t].category)).capitalize()} stands on "
                        f"{with_article(ctx.category_name(by_id[s].category))}." for t, s in relations)
    else:
        text = "房间里有" + "、".join(f"{n}个{ctx.category_name(c)}" for c, n in sorted(counts.items())) + "。"
        text += "".join(f"{ctx.category_name(by_id[s].category)}上放着{ctx.category_name(by_id[t].category)}。"
                        for t, s in relations)
    return make_sample(ctx, "scene_caption", frames, [], {"counts": dict(sorted(counts.items())), "relations": relations},
                   fill(ctx, "scene_caption", []), text)


@register_qa_task("grounding_3d", "scene_reasoning", "text")
def grounding_3d(ctx: TaskContext) -> QASample | None:
    picked = pick_in_one_frame(ctx, 1)
    if not picked:
        return None
    frame, (obj,) = picked
    record = ctx.record(obj, frame)
    value = {"center": list(record.center_camera), "size": list(record.extents)}
    formatted = ("{\"center\": [" + ", ".join(metres(v, 2) for v in value["center"]) + "], \"size\": ["
                 + ", ".join(metres(v, 2) for v in value["size"]) + "]}")
    refs = References(ctx, [frame])
    return make_sample(ctx, "grounding_3d", [frame], [obj], value, fill(ctx, "grounding_3d", [refs(obj)]),
                   answer_text(ctx, "text", formatted), refs)


ORIENTATION_SECTORS = ("away", "facing_right", "toward", "facing_left")


@register_qa_task("orientation", "scene_reasoning", "choice")
def orientation(ctx: TaskContext) -> QASample | None:
    found = frame_with(ctx, 1)
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
    return make_sample(ctx, "orientation", [frame], [obj], truth, fill(ctx, "orientation", [refs(obj)], options=options),
                   answer_text(ctx, "letter", f"{letter}. {ctx.word(truth)}"), refs, options=keys, letter=letter)


@register_qa_task("appearance_order", "scene_reasoning", "text", multi_view=True)
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
    return make_sample(ctx, "appearance_order", frames, objects, [o.object_id for o in ordered],
                   fill(ctx, "appearance_order", [], objects=separator.join(names[o.object_id] for o in objects)),
                   answer_text(ctx, "text", separator.join(names[o.object_id] for o in ordered)))

