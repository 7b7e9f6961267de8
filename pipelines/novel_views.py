"""`make novel-views`: Thinking with Novel Views on procedural scenes, with Blender as an exact editor.

Each scene hides a coloured ball behind a wall from the question's camera; the question asks the ball's
colour. A scripted planner orbits the camera around the ball (its answer goes through the engine's camera-move
template like any model's would), the Blender renderer renders exactly that view, and a scripted reasoner
answers only from the colours it sees: when none of the options is in view it falls back to option A. So the
baseline is chance and the novel view should bring accuracy to (near) 100%. Writes `<out>/steps.parquet` and
`<out>/summary.json` (trainer/evaluation/novel_views.py).

    python -m pipelines.novel_views --out out/demo/novel_views --scenes 8
"""

from __future__ import annotations

import argparse
import colorsys
import io
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from data_engine.camera_move import CameraMove, format_camera_move
from render.client import RenderWorker, render_views
from render.geometry import focal_from_fov, look_at_pose, orbit_eye
from render.procedural import PALETTE, default_lights
from render.scene import Camera, Material, ObjectInstance, Primitive, PrimitivesAsset, RenderScene, RenderSettings
from render.scene import matrix_tuple
from trainer.evaluation.benchmarks import BenchmarkQuestion
from trainer.evaluation.novel_views import run_novel_views

BALL_COLOURS = ("red", "green", "blue", "yellow")
BALL_CENTRE = (0.0, 0.6, 0.2)  # behind the wall (y = 0) as seen from azimuth 0 (the -y side)
ZOOM_FACTORS = {"in": 0.7, "out": 1.4, "unchanged": 1.0}  # new camera distance / old
PLANNED_YAWS = (90, 135, 180, -90, -135)
SIZE_PX, FOV_DEG = 96, 45.0
MIN_SEEN_PIXELS = 8  # a colour the reasoner says it sees covers at least this many pixels
# Hues (degrees) of the options in sRGB, from the palette the scene is built with.
_HUES = {name: colorsys.rgb_to_hsv(*(channel ** (1 / 2.2) for channel in PALETTE[name]))[0] * 360
         for name in BALL_COLOURS}


@dataclass(frozen=True)
class OrbitView:
    """The question camera, as an orbit around the ball: what the editor moves."""
    azimuth_deg: float
    elevation_deg: float
    distance: float


def _part(name: str, shape: str, size, location, colour: str) -> PrimitivesAsset:
    material = Material(base_color=PALETTE[colour], roughness=0.8, color_name=colour)
    return PrimitivesAsset(name=name, category=name, materials={colour: material},
                           parts=(Primitive(shape=shape, size=size, location=location, material=colour),))


def hidden_ball_scene(colour: str) -> RenderScene:
    objects = [ObjectInstance(name="floor", asset=_part("floor", "box", (6, 6, 0.02), (0, 0, -0.01), "grey"),
                              pass_index=1),
               ObjectInstance(name="wall", asset=_part("wall", "box", (1.8, 0.2, 1.5), (0, 0, 0.75), "white"),
                              pass_index=2),
               ObjectInstance(name="ball", asset=_part("ball", "sphere", (0.4, 0.4, 0.4), BALL_CENTRE, colour),
                              pass_index=3)]
    return RenderScene(objects=tuple(objects), lights=default_lights(random.Random(0), 1.5))


def orbit_camera(view: OrbitView) -> Camera:
    focal = focal_from_fov(SIZE_PX, FOV_DEG)
    eye = orbit_eye(BALL_CENTRE, view.azimuth_deg, view.elevation_deg, view.distance)
    return Camera(width=SIZE_PX, height=SIZE_PX, fx=focal, fy=focal, cx=SIZE_PX / 2, cy=SIZE_PX / 2,
                  cam_to_world=matrix_tuple(look_at_pose(eye, BALL_CENTRE)))


def moved(view: OrbitView, move: CameraMove) -> OrbitView:
    """The orbit after a move: yaw adds to the azimuth, pitch to the elevation, zoom scales the distance."""
    return OrbitView(view.azimuth_deg + move.yaw_deg, view.elevation_deg + move.pitch_deg,
                     view.distance * ZOOM_FACTORS[move.zoom])


def _png(rgba: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgba[..., :3]).save(buffer, format="PNG")
    return buffer.getvalue()


class BlenderEditor:
    """The exact editor: renders the question's scene from the moved camera."""

    def __init__(self, worker: RenderWorker, scenes: dict[str, tuple[RenderScene, OrbitView]],
                 settings: RenderSettings) -> None:
        self.worker, self.scenes, self.settings = worker, scenes, settings

    def render(self, scene: RenderScene, view: OrbitView) -> bytes:
        return _png(render_views(self.worker, scene, [orbit_camera(view)], self.settings)[0].rgba)

    def __call__(self, question: BenchmarkQuestion, move: CameraMove) -> bytes:
        scene, view = self.scenes[question.id]
        return self.render(scene, moved(view, move))


def seen_colours(image: bytes) -> dict[str, int]:
    """Pixels per option colour: saturated pixels, each given to the option hue nearest its own."""
    hsv = np.asarray(Image.open(io.BytesIO(image)).convert("HSV"), dtype=float)
    saturated = (hsv[..., 1] > 100) & (hsv[..., 2] > 40)
    hues = hsv[..., 0][saturated] * 360 / 255
    names = list(_HUES)
    distance = np.stack([np.abs((hues - _HUES[name] + 180) % 360 - 180) for name in names])
    nearest = distance.argmin(axis=0)
    return {name: int((nearest == i).sum()) for i, name in enumerate(names)}


def scripted_reasoner(question: str, images: list[bytes]) -> str:
    """Answers the option whose colour it sees most of, in any image; sees none: option A."""
    options = dict(re.findall(r"^([A-D])\. (\w+)$", question, flags=re.MULTILINE))
    seen = {letter: sum(seen_colours(image).get(colour, 0) for image in images) for letter, colour in options.items()}
    best = max(seen, key=lambda letter: seen[letter])
    return best if seen[best] >= MIN_SEEN_PIXELS else "A"


def scripted_planner(seed: int):
    rng = random.Random(f"novel-views-planner:{seed}")

    def plan(question: BenchmarkQuestion) -> str:
        return format_camera_move(CameraMove("ball", yaw_deg=rng.choice(PLANNED_YAWS)))
    return plan


def hidden_ball_questions(editor: BlenderEditor, count: int, seed: int) -> list[BenchmarkQuestion]:
    """`count` scenes, ball colours balanced over the options, A..D order shuffled per question; each first
    view rendered from the side the wall hides the ball from."""
    rng = random.Random(f"novel-views:{seed}")
    questions = []
    for number in range(count):
        colour = BALL_COLOURS[number % len(BALL_COLOURS)]
        options = rng.sample(BALL_COLOURS, len(BALL_COLOURS))
        view = OrbitView(azimuth_deg=rng.uniform(-15, 15), elevation_deg=rng.uniform(5, 12),
                         distance=rng.uniform(3.5, 4.5))
        scene = hidden_ball_scene(colour)
        question_id = f"hidden-ball-{seed}-{number}"
        editor.scenes[question_id] = (scene, view)
        text = "What colour is the ball?\n" + "\n".join(f"{letter}. {name}" for letter, name in zip("ABCD", options))
        questions.append(BenchmarkQuestion(id=question_id, source="procedural", category="Hidden object",
                                           subcategory="hidden_ball", question=text,
                                           answer="ABCD"[options.index(colour)], image=editor.render(scene, view)))
    return questions


def run_hidden_ball_benchmark(out_dir: Path, scenes: int, seed: int, worker: RenderWorker) -> dict:
    editor = BlenderEditor(worker, {}, RenderSettings())
    questions = hidden_ball_questions(editor, scenes, seed)
    return run_novel_views(questions, scripted_planner(seed), editor, scripted_reasoner, out_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/demo/novel_views"))
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with RenderWorker() as worker:
        summary = run_hidden_ball_benchmark(args.out, args.scenes, args.seed, worker)
    print(json.dumps({key: summary[key] for key in ("baseline", "novel_views", "relative_gain")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
