"""`make novel-views`: Thinking with Novel Views (report 6.1) from one config file (`pipelines/evals/`).

The roles are configured, not coded: questions from procedural scenes or local copies of 3DSRBench and
RealWorldQA (the report's 575 + 120 selection), a planner and a reasoner that are scripted or any captioning
backend, and an editor that is Blender (procedural scenes only: it renders the planned view exactly) or the
editing MMDiT from a trainer config and checkpoint.

`pipelines/evals/novel_views.yaml`: each procedural scene hides a coloured ball behind a wall from the
question's camera; the question asks the ball's colour. A scripted planner orbits the camera around the ball
(its answer goes through the engine's camera-move template like any model's would), the Blender renderer
renders exactly that view, and a scripted reasoner answers only from the colours it sees: when none of the
options is in view it falls back to option A. So the baseline is chance and the novel view should bring
accuracy to (near) 100%. `pipelines/evals/novel_views_models.yaml`: the same scenes with the tiny VLM as
planner and reasoner and the demo's MMDiT as editor (after `make demo`). Writes `<out>/steps.parquet` and
`<out>/summary.json` (trainer/evaluation/novel_views.py).

    python -m pipelines.novel_views --config pipelines/evals/novel_views.yaml --set questions.count=8
"""

from __future__ import annotations

import argparse
import colorsys
import contextlib
import io
import json
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from data_engine.camera_move import CameraMove, format_camera_move
from data_engine.captioning.backends import (GenerationBackend, OpenAIBackendConfig, TransformersBackendConfig,
                                             VllmBackendConfig, check_backend_available, make_backend)
from data_engine.config_files import apply_override, parse_override, read_yaml_mapping
from data_engine.job import JobConfigError
from render.client import RenderWorker, render_views
from render.geometry import focal_from_fov, look_at_pose, orbit_eye
from render.procedural import PALETTE, default_lights
from render.scene import Camera, Material, ObjectInstance, Primitive, PrimitivesAsset, RenderScene, RenderSettings
from render.scene import matrix_tuple
from trainer.core import TrainerError
from trainer.evaluation.benchmarks import (REALWORLDQA_SELECTION, THREEDSR_SELECTION, BenchmarkFormatError,
                                           BenchmarkQuestion, load_3dsrbench, load_realworldqa, select_questions)
from trainer.evaluation.novel_view_roles import (PLANNER_PROMPT_VERSION, REASONER_PROMPT_VERSION, BackendPlanner,
                                                 BackendReasoner, MMDiTEditor)
from trainer.evaluation.novel_views import Editor, run_novel_views

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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HiddenBallQuestions(_Section):
    source: Literal["hidden_ball"] = "hidden_ball"
    count: int = Field(default=8, ge=1)
    seed: int = 0


class BenchmarkQuestions(_Section):
    """Local copies in their published layouts: 3DSRBench's TSV/Parquet and RealWorldQA's Parquet files."""
    source: Literal["benchmarks"] = "benchmarks"
    threedsrbench: Path
    realworldqa: list[Path]
    seed: int = 0
    threedsrbench_count: int = Field(default=THREEDSR_SELECTION, ge=0)
    realworldqa_count: int = Field(default=REALWORLDQA_SELECTION, ge=0)


class ScriptedRole(_Section):
    kind: Literal["scripted"] = "scripted"


class BackendRole(_Section):
    kind: Literal["backend"] = "backend"
    backend: Annotated[TransformersBackendConfig | OpenAIBackendConfig | VllmBackendConfig, Field(discriminator="kind")]
    max_tokens: int = Field(default=64, gt=0)


class BlenderEditorConfig(_Section):
    kind: Literal["blender"] = "blender"


class MMDiTEditorConfig(_Section):
    kind: Literal["mmdit"] = "mmdit"
    config: Path  # a trainer config of an image-generating MMDiT task (trainer/configs/)
    checkpoint: str = "latest"  # a tag under the config's run.out_dir/checkpoints, "latest", or "base"
    set: list[str] = []  # --set overrides of that trainer config (e.g. its run.out_dir)


Role = Annotated[ScriptedRole | BackendRole, Field(discriminator="kind")]


class NovelViewsConfig(_Section):
    out: Path
    questions: Annotated[HiddenBallQuestions | BenchmarkQuestions, Field(discriminator="source")]
    planner: Role = ScriptedRole()
    editor: Annotated[BlenderEditorConfig | MMDiTEditorConfig, Field(discriminator="kind")] = BlenderEditorConfig()
    reasoner: Role = ScriptedRole()

    @model_validator(mode="after")
    def _procedural_only_roles(self) -> "NovelViewsConfig":
        if self.questions.source != "hidden_ball":
            scripted = [name for name in ("planner", "reasoner") if getattr(self, name).kind == "scripted"]
            if scripted or self.editor.kind == "blender":
                parts = [*scripted, *(["editor"] if self.editor.kind == "blender" else [])]
                raise ValueError(f"{', '.join(parts)}: scripted roles and the Blender editor know only the "
                                 "procedural hidden_ball scenes; use a backend / the mmdit editor for benchmarks")
        return self


def load_novel_views_config(path: Path, overrides: list[str] = ()) -> NovelViewsConfig:
    data = read_yaml_mapping(path)
    for text in overrides:
        apply_override(data, *parse_override(text))
    try:
        return NovelViewsConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "config"
        raise JobConfigError(f"{path}: {where}: {first['msg']}") from None


def _backends(config: NovelViewsConfig) -> dict[str, GenerationBackend]:
    """One backend per distinct backend config (planner and reasoner share a model when they name the same)."""
    built: dict[str, GenerationBackend] = {}
    for role in (config.planner, config.reasoner):
        if isinstance(role, BackendRole) and role.backend.model_dump_json() not in built:
            problem = check_backend_available(role.backend)
            if problem:
                raise JobConfigError(f"backend {role.backend.kind}: {problem}")
            built[role.backend.model_dump_json()] = make_backend(role.backend)
    return built


def run_from_config(config: NovelViewsConfig) -> dict:
    """The configured questions through the configured roles; the summary also names the roles."""
    # The model roles first: a missing checkpoint or model is refused before anything is rendered.
    editor: Editor | None = None
    if isinstance(config.editor, MMDiTEditorConfig):
        editor = MMDiTEditor(config.editor.config, config.editor.checkpoint, config.editor.set)
    backends = _backends(config)
    seed = getattr(config.questions, "seed", 0)
    planner = (scripted_planner(seed) if isinstance(config.planner, ScriptedRole)
               else BackendPlanner(backends[config.planner.backend.model_dump_json()], config.planner.max_tokens))
    reasoner = (scripted_reasoner if isinstance(config.reasoner, ScriptedRole)
                else BackendReasoner(backends[config.reasoner.backend.model_dump_json()], config.reasoner.max_tokens))
    with contextlib.ExitStack() as stack:
        if isinstance(config.questions, HiddenBallQuestions):
            blender = BlenderEditor(stack.enter_context(RenderWorker()), {}, RenderSettings())
            questions = hidden_ball_questions(blender, config.questions.count, config.questions.seed)
            if editor is None:
                editor = blender
        else:
            questions = select_questions(load_3dsrbench(config.questions.threedsrbench),
                                         load_realworldqa(config.questions.realworldqa), config.questions.seed,
                                         config.questions.threedsrbench_count, config.questions.realworldqa_count)
        summary = run_novel_views(questions, planner, editor, reasoner, config.out)
    roles = {"planner": config.planner.model_dump(mode="json"), "editor": config.editor.model_dump(mode="json"),
             "reasoner": config.reasoner.model_dump(mode="json"),
             "prompts": [PLANNER_PROMPT_VERSION, REASONER_PROMPT_VERSION]}
    if isinstance(editor, MMDiTEditor):
        roles["editor"]["checkpoint"] = editor.checkpoint
    summary["roles"] = roles
    (config.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("pipelines/evals/novel_views.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. questions.count=4 or out=out/nv")
    args = parser.parse_args(argv)
    try:
        config = load_novel_views_config(args.config, args.set)
        summary = run_from_config(config)
    except (JobConfigError, BenchmarkFormatError, TrainerError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({key: summary[key] for key in ("baseline", "novel_views", "relative_gain")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
