"""Hand-built scenes with exactly known geometry, rendered by the same ray caster as procedural scenes."""

from __future__ import annotations

import numpy as np

from data_engine.conventions import box_from_yaw, intrinsics_matrix
from openspatial.procedural import look_at_pose, render_frames
from openspatial.scene import Frame, Scene, SceneObject


def hand_scene(objects: list[tuple[str, list[float], list[float], float, bool]],
               cameras: list[tuple[list[float], list[float]]], width: int = 160, height: int = 120) -> Scene:
    """objects: (category, centre, extents, yaw, has_front); cameras: (position, look-at target).
    The room is 10 m x 10 m with its corner at (-5, -5)."""
    scene_objects = [SceneObject(str(i + 1), i + 1, category, box_from_yaw(center, extents, yaw), front)
                     for i, (category, center, extents, yaw, front) in enumerate(objects)]
    intrinsics = intrinsics_matrix(100.0, 100.0, width / 2, height / 2)
    frames = [Frame(f"{i:03d}", width, height, intrinsics.copy(), look_at_pose(np.array(p, float), np.array(t, float)))
              for i, (p, t) in enumerate(cameras)]
    shifted = [SceneObject(o.object_id, o.instance_id, o.category, o.box, o.has_front) for o in scene_objects]
    offset = np.eye(4)
    offset[:2, 3] = 5.0
    # The renderer's room spans [0, size]; render in a shifted copy of the world and shift the poses back.
    for obj in shifted:
        obj.box = obj.box.transformed(offset)
    shifted_frames = [Frame(f.frame_id, width, height, f.intrinsics, offset @ f.pose) for f in frames]
    render_frames(shifted, np.array([10.0, 10.0]), 3.0, shifted_frames)
    for frame, rendered in zip(frames, shifted_frames):
        frame.image, frame.depth, frame.instances = rendered.image, rendered.depth, rendered.instances
    return Scene("hand", scene_objects, frames, source_dataset="hand", license="test")
