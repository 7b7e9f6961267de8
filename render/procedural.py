"""Procedural assets (the embedded default source): furniture- and object-like compositions of primitives
with varied materials, some carrying text, and procedural rooms for scene-centric data.

Every generator is a pure function of (category, seed), so a row's upstream id `procedural:<category>:<seed>`
regenerates the same asset anywhere. Assets rest on z = 0, face -y and are centred on the z axis.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import numpy as np

from render.assets import asset_bounds
from render.geometry import trs_matrix
from render.scene import Light, Material, ObjectInstance, Primitive, PrimitivesAsset, matrix_tuple

# Named colours (linear RGB) so captions can say what they see.
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.6, 0.05, 0.04), "orange": (0.8, 0.3, 0.03), "yellow": (0.8, 0.65, 0.05),
    "green": (0.08, 0.4, 0.08), "teal": (0.03, 0.35, 0.35), "blue": (0.05, 0.12, 0.6),
    "purple": (0.3, 0.08, 0.5), "pink": (0.8, 0.3, 0.45), "white": (0.85, 0.85, 0.85),
    "black": (0.03, 0.03, 0.03), "grey": (0.35, 0.35, 0.35), "brown": (0.25, 0.12, 0.05),
    "beige": (0.7, 0.58, 0.4),
}
LABEL_WORDS = ("OPEN", "SALE", "CAFE", "EXIT", "BOOKS", "TEA", "JOY", "PARK", "LAB", "MENU")


def _material(rng: random.Random, *, finish: str | None = None) -> Material:
    name = rng.choice(sorted(PALETTE))
    finish = finish or rng.choice(("matte", "glossy", "metal"))
    roughness = {"matte": 0.8, "glossy": 0.25, "metal": 0.35}[finish]
    return Material(base_color=PALETTE[name], roughness=roughness, metallic=1.0 if finish == "metal" else 0.0,
                    color_name=name if finish != "metal" else f"metallic {name}")


def _box(size, location, material, rotation=(0.0, 0.0, 0.0)) -> Primitive:
    return Primitive(shape="box", size=size, location=location, rotation_euler=rotation, material=material)


def _label(rng: random.Random, width: float, height: float, front_y: float, centre_z: float) -> Primitive:
    """A text label just in front of a face whose front plane is y = front_y."""
    return Primitive(shape="text", size=(width, 0.002, height), location=(0.0, front_y - 0.002, centre_z),
                     material="label", text=rng.choice(LABEL_WORDS))


def table(rng: random.Random) -> tuple[list[Primitive], dict[str, Material]]:
    width, depth, height = rng.uniform(0.8, 1.6), rng.uniform(0.5, 0.9), rng.uniform(0.6, 0.8)
    leg, top = rng.uniform(0.04, 0.07), rng.uniform(0.03, 0.06)
    parts = [_box((width, depth, top), (0, 0, height - top / 2), "top")]
    round_legs = rng.random() < 0.5
    for sx in (-1, 1):
        for sy in (-1, 1):
            location = (sx * (width / 2 - leg), sy * (depth / 2 - leg), (height - top) / 2)
            size = (leg, leg, height - top)
            parts.append(Primitive(shape="cylinder" if round_legs else "box", size=size, location=location,
                                   material="legs"))
    return parts, {"top": _material(rng), "legs": _material(rng)}


def chair(rng: random.Random) -> tuple[list[Primitive], dict[str, Material]]:
    seat, seat_h, back_h, leg = rng.uniform(0.4, 0.5), rng.uniform(0.42, 0.48), rng.uniform(0.35, 0.5), 0.04
    parts = [_box((seat, seat, 0.05), (0, 0, seat_h), "seat"),
             _box((seat, 0.05, back_h), (0, seat / 2 - 0.025, seat_h + back_h / 2 + 0.025), "seat")]
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(_box((leg, leg, seat_h - 0.025), (sx * (seat / 2 - leg), sy * (seat / 2 - leg),
                                                            (seat_h - 0.025) / 2), "legs"))
    return parts, {"seat": _material(rng), "legs": _material(rng)}


def shelf(rng: random.Random) -> tuple[list[Primitive], dict[str, Material]]:
    width, depth, height, board = rng.uniform(0.6, 1.2), rng.uniform(0.25, 0.4), rng.uniform(0.8, 1.8), 0.03
    shelves = rng.randint(2, 5)
    parts = [_box((board, depth, height), (sx * (width / 2 - board / 2), 0, height / 2), "frame") for sx in (-1, 1)]
    parts.append(_box((width, board, height), (0, depth / 2 - board / 2, height / 2), "frame"))
    for index in range(shelves):
        z = board / 2 + index * (height - board) / (shelves - 1)
        parts.append(_box((width - 2 * board, depth, board), (0, 0, z), "boards"))
    return parts, {"frame": _material(rng), "boards": _material(rng)}


def lamp(rng: random.Random) -> tuple[list[Primitive], dict[str, Material]]:
    base, pole_h, shade = rng.uniform(0.2, 0.3), rng.uniform(0.4, 1.2), rng.uniform(0.25, 0.45)
    pole = base / 4  # thick enough to stay wider than a pixel in small renders
    parts = [Primitive(shape="cylinder", size=(base, base, 0.03), location=(0, 0, 0.015), material="metal"),
             Primitive(shape="cylinder", size=(pole, pole, pole_h), location=(0, 0, 0.03 + pole_h / 2),
                       material="metal"),
             Primitive(shape="cone", size=(shade, shade, shade * 0.8), location=(0, 0, 0.03 + pole_h + shade * 0.3),
                       material="shade")]
    return parts, {"metal": _material(rng, finish="metal"), "shade": _material(rng, finish="matte")}


def mug(rng: random.Random) -> tuple[list[Primitive], dict[str, Material]]:
    radius, height = rng.uniform(0.04, 0.06), rng.uniform(0.09, 0.13)
    parts = [Primitive(shape="cylinder", size=(2 * radius, 2 * radius, height), location=(0, 0, height / 2),
                       material="body"),
             _box((0.015, 0.02, height * 0.6), (radius + 0.012, 0, height / 2), "body")]
    return parts, {"body": _material(rng, finish="glossy")}


def bottle(rng: random.Random) -> tuple[list[Primitive], dict[str, Material]]:
    radius, body_h, neck_h = rng.uniform(0.03, 0.05), rng.uniform(0.15, 0.25), rng.uniform(0.05, 0.08)
    parts = [Primitive(shape="cylinder", size=(2 * radius, 2 * radius, body_h), location=(0, 0, body_h / 2),
                       material="glass"),
             Primitive(shape="cone", size=(2 * radius, 2 * radius, radius), location=(0, 0, body_h + radius / 2),
                       material="glass"),
             Primitive(shape="cylinder", size=(radius * 0.6, radius * 0.6, neck_h),
                       location=(0, 0, body_h + radius * 0.5 + neck_h / 2), material="cap")]
    return parts, {"glass": _material(rng, finish="glossy"), "cap": _material(rng)}


def sign_crate(rng: random.Random) -> tuple[list[Primitive], dict[str, Material]]:
    """A crate with a text label on its front face."""
    width, depth, height = rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.5), rng.uniform(0.25, 0.5)
    parts = [_box((width, depth, height), (0, 0, height / 2), "crate"),
             _label(rng, width * 0.8, height * 0.4, -depth / 2, height / 2)]
    label = Material(base_color=(0.9, 0.9, 0.9), roughness=0.6, color_name="white")
    crate = _material(rng, finish="matte")
    if crate.color_name == "white":
        label = Material(base_color=(0.02, 0.02, 0.02), roughness=0.6, color_name="black")
    return parts, {"crate": crate, "label": label}


def ball(rng: random.Random) -> tuple[list[Primitive], dict[str, Material]]:
    diameter = rng.uniform(0.15, 0.35)
    return [Primitive(shape="sphere", size=(diameter,) * 3, location=(0, 0, diameter / 2), material="skin")], \
        {"skin": _material(rng)}


GENERATORS: dict[str, Callable[[random.Random], tuple[list[Primitive], dict[str, Material]]]] = {
    "table": table, "chair": chair, "shelf": shelf, "lamp": lamp, "mug": mug, "bottle": bottle,
    "sign_crate": sign_crate, "ball": ball,
}
FURNITURE = ("table", "chair", "shelf", "lamp")


class UnknownCategoryError(ValueError):
    """A procedural category that no generator makes."""


def procedural_asset(category: str, seed: int) -> PrimitivesAsset:
    try:
        generator = GENERATORS[category]
    except KeyError:
        known = ", ".join(GENERATORS)
        raise UnknownCategoryError(f"unknown procedural category {category!r}; known: {known}") from None
    rng = random.Random(f"{category}:{seed}")
    parts, materials = generator(rng)
    return PrimitivesAsset(name=f"{category}_{seed:05d}", category=category.replace("_", " "), parts=tuple(parts),
                           materials=materials)


def procedural_item_key(category: str, seed: int) -> str:
    return f"procedural:{category}:{seed:05d}"


def parse_procedural_item_key(key: str) -> tuple[str, int]:
    prefix, category, seed = key.split(":")
    if prefix != "procedural":
        raise ValueError(f"{key!r} is not a procedural item key")
    return category, int(seed)


def default_lights(rng: random.Random, target_height: float) -> tuple[Light, ...]:
    """A key sun from a random side plus a soft fill: enough to read shape and colour in 8 samples."""
    azimuth = rng.uniform(0, 2 * math.pi)
    key = Light(kind="sun", energy=rng.uniform(2.5, 4.0),
                direction=(-math.sin(azimuth) * 0.6, math.cos(azimuth) * 0.6, -0.8))
    fill = Light(kind="point", energy=60.0 * max(target_height, 0.5) ** 2,
                 location=(math.sin(azimuth + 2.5) * 3, -math.cos(azimuth + 2.5) * 3, 2.5 * max(target_height, 0.5)))
    return key, fill


def procedural_room(seed: int, *, n_furniture: int = 3, size: tuple[float, float] = (4.0, 4.0),
                    height: float = 2.6, clear_radius: float = 0.0) -> list[ObjectInstance]:
    """A floor, three walls (front side open for cameras) and furniture placed without overlap, outside a
    clear disc of `clear_radius` around the origin (where a focus object will stand).

    Pass indices: 1.. for furniture (the focus candidates), 200+ for the room shell.
    """
    rng = random.Random(f"room:{seed}")
    width, depth = size
    floor_material = {"floor": _material(rng, finish="matte")}
    wall_material = {"wall": Material(base_color=PALETTE["beige"], roughness=0.9, color_name="beige")}

    def shell(name: str, size3, location, index, materials) -> ObjectInstance:
        material = next(iter(materials))
        asset = PrimitivesAsset(name=name, category="room " + name,
                                parts=(_box(size3, (0, 0, 0), material),), materials=materials)
        return ObjectInstance(name=name, asset=asset, object_to_world=matrix_tuple(trs_matrix(location)),
                              pass_index=index)

    objects = [shell("floor", (width, depth, 0.02), (0, 0, -0.01), 200, floor_material),
               shell("back_wall", (width, 0.05, height), (0, depth / 2, height / 2), 201, wall_material),
               shell("left_wall", (0.05, depth, height), (-width / 2, 0, height / 2), 202, wall_material),
               shell("right_wall", (0.05, depth, height), (width / 2, 0, height / 2), 203, wall_material)]
    occupied: list[tuple[float, float, float]] = [(0.0, 0.0, clear_radius)] if clear_radius else []
    for index in range(n_furniture):
        category = rng.choice(FURNITURE)
        asset = procedural_asset(category, rng.randrange(100_000))
        radius = asset_footprint_radius(asset)
        for _ in range(50):
            x = rng.uniform(-width / 2 + radius + 0.1, width / 2 - radius - 0.1)
            y = rng.uniform(-depth / 2 + radius + 0.1, depth / 2 - radius - 0.1)
            if all(math.hypot(x - ox, y - oy) > radius + other + 0.1 for ox, oy, other in occupied):
                break
        else:
            continue  # the room is full; fewer pieces is still a valid room
        occupied.append((x, y, radius))
        pose = trs_matrix((x, y, 0.0), (0.0, 0.0, math.radians(rng.choice((0, 90, 180, 270)) + rng.uniform(-15, 15))))
        objects.append(ObjectInstance(name=f"furniture_{index}", asset=asset, object_to_world=matrix_tuple(pose),
                                      pass_index=index + 1))
    return objects


def asset_footprint_radius(asset: PrimitivesAsset) -> float:
    low, high = asset_bounds(asset)
    return float(np.linalg.norm((high - low)[:2]) / 2)
