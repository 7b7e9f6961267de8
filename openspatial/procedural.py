"""Procedural indoor scenes with exact ground truth: the embedded default input of the spatial QA job.

A scene is a walled room with furniture-like boxes of known category, size and pose (some stacked on
others), and a camera trajectory through it. Frames are ray cast on the CPU with open3d: RGB (flat colour
per object, Lambert shading), metric depth and instance ids, so the masks are exact by construction.
Every scene is a pure function of (seed, index).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from data_engine.conventions import OrientedBox, box_from_yaw, intrinsics_matrix
from openspatial.geometry import boxes_overlap
from openspatial.scene import Frame, Scene, SceneObject, validate_scene


@dataclass(frozen=True)
class Category:
    name: str
    size_min: tuple[float, float, float]  # full extents (length along front axis x, width, height)
    size_max: tuple[float, float, float]
    colour: tuple[int, int, int]
    has_front: bool
    on_top: bool = False  # placed on a supporting object instead of the floor


FLOOR_CATEGORIES = (
    Category("table", (1.0, 0.7, 0.7), (1.6, 1.0, 0.8), (150, 100, 60), False),
    Category("chair", (0.45, 0.45, 0.8), (0.55, 0.55, 1.0), (200, 60, 50), True),
    Category("sofa", (0.8, 1.6, 0.75), (1.0, 2.2, 0.9), (60, 90, 170), True),
    Category("bed", (1.9, 1.4, 0.5), (2.1, 1.8, 0.6), (220, 220, 200), True),
    Category("cabinet", (0.4, 0.8, 0.8), (0.6, 1.2, 1.2), (120, 70, 40), True),
    Category("bookshelf", (0.3, 0.8, 1.6), (0.4, 1.0, 2.0), (90, 60, 30), True),
    Category("lamp", (0.3, 0.3, 1.2), (0.4, 0.4, 1.7), (240, 220, 120), False),
    Category("plant", (0.3, 0.3, 0.5), (0.5, 0.5, 1.2), (50, 150, 60), False),
)
TOP_CATEGORIES = (
    Category("tv", (0.08, 0.9, 0.55), (0.12, 1.3, 0.75), (30, 30, 35), True, on_top=True),
    Category("box", (0.2, 0.2, 0.15), (0.4, 0.4, 0.35), (200, 170, 110), False, on_top=True),
    Category("vase", (0.12, 0.12, 0.25), (0.2, 0.2, 0.4), (70, 160, 200), False, on_top=True),
)
SUPPORTS = ("table", "cabinet")
WALL_COLOUR, FLOOR_COLOUR = np.array([205, 200, 190]), np.array([160, 150, 140])
LIGHT_DIRECTION = np.array([0.4, -0.3, 0.87]) / np.linalg.norm([0.4, -0.3, 0.87])


class ProceduralConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(default=320, gt=0)
    height: int = Field(default=240, gt=0)
    frames: int = Field(default=6, ge=2)
    floor_objects: tuple[int, int] = (4, 8)
    top_objects: tuple[int, int] = (1, 3)
    room_size: tuple[float, float] = (4.0, 7.0)
    room_height: float = 2.7
    horizontal_fov_deg: tuple[float, float] = (60.0, 75.0)
    # Share of scenes filmed looking steeply down: pitch from 50-70 degrees below the horizon at the first frame
    # to 75-89 (near vertical) at the last, as a handheld scan of a table top or the floor is.
    steep_view_fraction: float = Field(default=0.25, ge=0, le=1)
    # "segment": a straight walk between two free points looking from one object to another (the QA default);
    # "room_scan": a handheld scan as RGB-D video records one, walking once around the room near the walls and
    # looking across it, so most objects are filmed from several sides.
    trajectory: Literal["segment", "room_scan"] = "segment"


def _sample_size(rng: np.random.Generator, category: Category) -> np.ndarray:
    return rng.uniform(category.size_min, category.size_max)


def _place_floor_objects(rng, config: ProceduralConfig, room: np.ndarray) -> list[tuple[Category, OrientedBox]]:
    placed: list[tuple[Category, OrientedBox]] = []
    wanted = rng.integers(config.floor_objects[0], config.floor_objects[1] + 1)
    for _ in range(wanted * 20):
        if len(placed) == wanted:
            break
        category = FLOOR_CATEGORIES[rng.integers(len(FLOOR_CATEGORIES))]
        extents = _sample_size(rng, category)
        reach = np.linalg.norm(extents[:2]) / 2 + 0.05
        if np.any(room - 2 * reach <= 0):
            continue
        center_xy = rng.uniform(reach, room - reach)
        box = box_from_yaw([*center_xy, extents[2] / 2], extents, rng.uniform(-np.pi, np.pi))
        clearance = OrientedBox(box.center, box.extents + 0.2, box.rotation)
        if not any(boxes_overlap(clearance, other) for _, other in placed):
            placed.append((category, box))
    return placed


def _place_top_objects(rng, config: ProceduralConfig, floor: list[tuple[Category, OrientedBox]]):
    supports = [box for category, box in floor if category.name in SUPPORTS]
    placed: list[tuple[Category, OrientedBox]] = []
    if not supports:
        return placed
    wanted = rng.integers(config.top_objects[0], config.top_objects[1] + 1)
    for _ in range(wanted * 20):
        if len(placed) == wanted:
            break
        category = TOP_CATEGORIES[rng.integers(len(TOP_CATEGORIES))]
        support = supports[rng.integers(len(supports))]
        extents = _sample_size(rng, category)
        room_left = support.extents[:2] - extents[:2]
        if np.any(room_left <= 0.02):
            continue
        local_xy = rng.uniform(-room_left / 2, room_left / 2)
        center = support.center + support.rotation[:, :2] @ local_xy
        center[2] = support.center[2] + support.extents[2] / 2 + extents[2] / 2
        box = OrientedBox(center, extents, support.rotation.copy())
        if not any(boxes_overlap(OrientedBox(box.center, box.extents + 0.05, box.rotation), other)
                   for _, other in placed):
            placed.append((category, box))
    return placed


def look_at_pose(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Camera-to-world pose of an OpenCV camera at `position` looking at `target`, image rows along -Z."""
    forward = target - position
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right = right / np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, down, forward], axis=1)
    pose[:3, 3] = position
    return pose


def pose_from_heading(position: np.ndarray, yaw: float, pitch_down: float) -> np.ndarray:
    """Camera-to-world pose of an OpenCV camera at `position` heading `yaw` (radians about +Z from +x) and looking
    `pitch_down` radians below the horizon, without roll: defined up to straight down (image top = heading)."""
    heading = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    forward = np.cos(pitch_down) * heading - np.array([0.0, 0.0, np.sin(pitch_down)])
    right = np.cross(heading, [0.0, 0.0, 1.0])
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, np.cross(forward, right), forward], axis=1)
    pose[:3, 3] = position
    return pose


def _camera_poses(rng, config: ProceduralConfig, room: np.ndarray, boxes: list[OrientedBox]) -> list[np.ndarray]:
    def free_position() -> np.ndarray:
        for _ in range(200):
            position = np.array([*rng.uniform(0.4, room - 0.4), rng.uniform(1.3, 1.7)])
            if not any(box.contains(position[None], margin=0.3)[0] for box in boxes):
                return position
        raise RuntimeError("no free camera position")  # cannot happen for the configured room sizes

    fractions = np.linspace(0.0, 1.0, config.frames)
    if config.trajectory == "room_scan":
        return _room_scan_poses(rng, config, room, boxes)
    for _ in range(50):  # a path that passes through furniture would film the inside of a box
        start, end = free_position(), free_position()
        path = start + fractions[:, None] * (end - start)
        if not any(box.contains(path, margin=0.3).any() for box in boxes):
            break
    if rng.random() < config.steep_view_fraction:
        direction = end - start
        yaw = np.arctan2(direction[1], direction[0]) + rng.uniform(-1.0, 1.0)
        turn = rng.uniform(-0.8, 0.8)
        pitches = np.radians(np.linspace(rng.uniform(50.0, 70.0), rng.uniform(75.0, 89.0), config.frames))
        return [pose_from_heading(position, yaw + fraction * turn, pitch)
                for position, fraction, pitch in zip(path, fractions, pitches)]
    centres = np.array([box.center for box in boxes])
    look_from = centres[rng.integers(len(centres))] if len(centres) else np.array([*room / 2, 0.8])
    look_to = centres[rng.integers(len(centres))] if len(centres) else np.array([*room / 2, 0.8])
    poses = []
    for fraction, position in zip(fractions, path):
        target = look_from + fraction * (look_to - look_from)
        if np.linalg.norm((target - position)[:2]) < 0.5:  # keep the view direction away from vertical
            centre = np.array([*room / 2, 0.8])
            target = centre if np.linalg.norm(centre[:2] - position[:2]) > 0.5 else position + [1, 0, -0.5]
        poses.append(look_at_pose(position, target))
    return poses


def _room_scan_poses(rng, config: ProceduralConfig, room: np.ndarray, boxes: list[OrientedBox]) -> list[np.ndarray]:
    """One loop around the room on an ellipse inset from the walls (frame k at angle start + 2 pi k / frames, in
    a random direction), each frame looking slightly down at a jittered point near the room's middle; a position
    inside furniture is pushed outwards until it is free."""
    centre = np.array([*room / 2, 0.0])
    start, direction = rng.uniform(0, 2 * np.pi), rng.choice([-1.0, 1.0])
    radii = np.array([*np.maximum(room / 2 - 0.5, 0.3), 0.0])
    poses = []
    for k in range(config.frames):
        angle = start + direction * 2 * np.pi * k / config.frames
        outward = np.array([np.cos(angle), np.sin(angle), 0.0])
        position = centre + outward * radii + [0.0, 0.0, rng.uniform(1.2, 1.6)]
        for _ in range(10):
            if not any(box.contains(position[None], margin=0.25)[0] for box in boxes):
                break
            position[:2] = np.clip(position[:2] + 0.15 * outward[:2], 0.2, room - 0.2)
        target = centre + np.array([*rng.normal(0.0, 0.4, 2), rng.uniform(0.3, 0.8)])
        poses.append(look_at_pose(position, target))
    return poses


def _box_triangles(box: OrientedBox) -> tuple[np.ndarray, np.ndarray]:
    triangles = []
    for axis in range(3):
        b, c = [a for a in range(3) if a != axis]
        for side in (0, 1):
            quad = [side << axis | u << b | v << c for u, v in ((0, 0), (1, 0), (1, 1), (0, 1))]
            triangles += [(quad[0], quad[1], quad[2]), (quad[0], quad[2], quad[3])]
    return box.corners().astype(np.float32), np.array(triangles, dtype=np.uint32)


def render_frames(objects: list[SceneObject], room: np.ndarray, room_height: float, frames: list[Frame]) -> None:
    """Ray cast RGB, depth and instance ids into each frame (in place)."""
    import open3d as o3d

    raycaster = o3d.t.geometry.RaycastingScene()
    geometry_instance: dict[int, int] = {}
    geometry_colour: dict[int, np.ndarray] = {}
    thickness = 0.1
    shell = [OrientedBox(np.array([room[0] / 2, room[1] / 2, -thickness / 2]), np.array([*(room + 0.4), thickness]),
                         np.eye(3))]
    shell.append(OrientedBox(np.array([room[0] / 2, room[1] / 2, room_height + thickness / 2]),
                             np.array([*(room + 0.4), thickness]), np.eye(3)))
    for axis in range(2):
        for side in (0.0, 1.0):
            center = np.array([room[0] / 2, room[1] / 2, room_height / 2])
            center[axis] = side * room[axis] + (side - 0.5) * thickness
            extents = np.array([room[0] + 0.4, room[1] + 0.4, room_height])
            extents[axis] = thickness
            shell.append(OrientedBox(center, extents, np.eye(3)))
    for index, box in enumerate(shell):
        geometry_id = raycaster.add_triangles(*_box_triangles(box))
        geometry_instance[geometry_id] = 0
        geometry_colour[geometry_id] = FLOOR_COLOUR if index == 0 else WALL_COLOUR
    for obj in objects:
        geometry_id = raycaster.add_triangles(*_box_triangles(obj.box))
        geometry_instance[geometry_id] = obj.instance_id
        geometry_colour[geometry_id] = category_colour(obj.category) * (0.85 + 0.03 * (obj.instance_id % 6))
    lookup_size = max(geometry_instance) + 1
    instance_lookup = np.zeros(lookup_size + 1, dtype=np.int32)
    colour_lookup = np.zeros((lookup_size + 1, 3))
    for geometry_id, instance in geometry_instance.items():
        instance_lookup[geometry_id] = instance
        colour_lookup[geometry_id] = geometry_colour[geometry_id]
    for frame in frames:
        world_to_camera = np.linalg.inv(frame.pose)
        rays = o3d.t.geometry.RaycastingScene.create_rays_pinhole(
            intrinsic_matrix=o3d.core.Tensor(frame.intrinsics), extrinsic_matrix=o3d.core.Tensor(world_to_camera),
            width_px=frame.width, height_px=frame.height)
        hits = raycaster.cast_rays(rays)
        directions = rays.numpy()[..., 3:]
        t_hit = hits["t_hit"].numpy()
        hit = np.isfinite(t_hit)
        ids = hits["geometry_ids"].numpy().astype(np.int64)
        ids = np.where(hit, ids, lookup_size)
        depth = np.where(hit, np.nan_to_num(t_hit, posinf=0.0) * (directions @ frame.pose[:3, 2]), 0.0)
        normals = hits["primitive_normals"].numpy()
        shading = 0.35 + 0.65 * np.abs(normals @ LIGHT_DIRECTION)
        frame.image = np.clip(colour_lookup[ids] * shading[..., None], 0, 255).astype(np.uint8)
        frame.depth = depth.astype(np.float32)
        frame.instances = instance_lookup[ids]


CATEGORY_COLOURS = {c.name: c.colour for c in FLOOR_CATEGORIES + TOP_CATEGORIES}


def category_colour(category: str) -> np.ndarray:
    """The generator's colour of a category; any other category (a scene from an adapter, a lifted scene) gets a
    mid-range colour fixed by its name, so every scene renders."""
    if category in CATEGORY_COLOURS:
        return np.array(CATEGORY_COLOURS[category], dtype=float)
    digest = hashlib.sha256(category.encode()).digest()
    return 60.0 + np.frombuffer(digest[:3], np.uint8).astype(float) * (160.0 / 255.0)


def generate_scene(seed: int, index: int, config: ProceduralConfig = ProceduralConfig(), *,
                   render: bool = True) -> Scene:
    """Scene `index` of the stream `seed`; `render=False` leaves the frames without pixels (geometry only)."""
    rng = np.random.default_rng([seed, index])
    room = rng.uniform(*config.room_size, size=2)
    floor = _place_floor_objects(rng, config, room)
    placed = floor + _place_top_objects(rng, config, floor)
    objects = [SceneObject(str(i + 1), i + 1, category.name, box, category.has_front)
               for i, (category, box) in enumerate(placed)]
    poses = _camera_poses(rng, config, room, [obj.box for obj in objects])
    fov = np.radians(rng.uniform(*config.horizontal_fov_deg))
    focal = config.width / 2 / np.tan(fov / 2)
    intrinsics = intrinsics_matrix(focal, focal, config.width / 2, config.height / 2)
    frames = [Frame(f"{i:03d}", config.width, config.height, intrinsics.copy(), pose) for i, pose in enumerate(poses)]
    if render:
        render_frames(objects, room, config.room_height, frames)
    scene = Scene(f"procedural-{seed}-{index:06d}", objects, frames, source_dataset="openspatial_procedural",
                  license="generated", metadata={"room_size": room.tolist(), "room_height": config.room_height})
    return validate_scene(scene, f"procedural://{seed}/{index}")
