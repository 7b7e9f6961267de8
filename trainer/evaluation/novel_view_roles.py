"""Model-backed roles for Thinking with Novel Views (`trainer/evaluation/novel_views.py`).

- `BackendPlanner` and `BackendReasoner`: any captioning backend (transformers, an OpenAI-compatible server,
  vLLM; `data_engine/captioning/backends.py`) with a versioned prompt. The backends take one image per request,
  so the reasoner sees the original view and the novel view side by side in one image (original on the left),
  and its prompt says so. A generation error becomes the role's text with an `error:` prefix: the planner's then
  parses as no move (its reason recorded), the reasoner's as a wrong answer; neither stops the run.
- `MMDiTEditor`: the editing MMDiT from a trainer config and checkpoint; the move is said in the one camera-move
  template (`data_engine/camera_move.py`), the instruction the spatial-edit renders teach it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from data_engine.camera_move import CameraMove, format_camera_move
from data_engine.captioning.backends import GenerationBackend, GenerationRequest
from trainer.evaluation.benchmarks import BenchmarkQuestion

PLANNER_PROMPT_VERSION = "novel-view-planner-v1"
REASONER_PROMPT_VERSION = "novel-view-reasoner-v1"

PLANNER_PROMPT = (
    "You will answer a question about this image. Before answering you may look at the scene from one other "
    "viewpoint. Choose the camera move that best reveals what the question needs, and reply with that move only, "
    "as one sentence in exactly this form:\n"
    f"{format_camera_move(CameraMove('chair', yaw_deg=90.0))}\n"
    f"{format_camera_move(CameraMove('table', pitch_deg=30.0, zoom='in'))}\n"
    "Name the object the camera moves around; yaw is at most 180 degrees, pitch at most 90.\n"
    "Question:\n{question}")
REASONER_PROMPT = (
    "Answer the question about the scene. {views}\n"
    "Question:\n{question}\n"
    "Reply with the letter of the correct option only.")
_ONE_VIEW = "The image shows the scene."
_TWO_VIEWS = ("The left half of the image is the original view; the right half shows the same static scene from a "
              "new camera position.")


def side_by_side(images: list[bytes]) -> bytes:
    """The images left to right at the height of the first (PNG)."""
    opened = [Image.open(io.BytesIO(image)).convert("RGB") for image in images]
    height = opened[0].height
    scaled = [image.resize((max(1, round(image.width * height / image.height)), height)) for image in opened]
    canvas = Image.new("RGB", (sum(image.width for image in scaled), height), (255, 255, 255))
    left = 0
    for image in scaled:
        canvas.paste(image, (left, 0))
        left += image.width
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def _generated_text(backend: GenerationBackend, request: GenerationRequest) -> str:
    generation = backend.generate([request])[0]
    return generation.text if generation.text is not None else f"error: {generation.error}"


class BackendPlanner:
    def __init__(self, backend: GenerationBackend, max_tokens: int = 64) -> None:
        self.backend, self.max_tokens = backend, max_tokens

    def __call__(self, question: BenchmarkQuestion) -> str:
        prompt = PLANNER_PROMPT.replace("{question}", question.question)
        return _generated_text(self.backend, GenerationRequest(prompt, self.max_tokens, image=question.image))


class BackendReasoner:
    def __init__(self, backend: GenerationBackend, max_tokens: int = 8) -> None:
        self.backend, self.max_tokens = backend, max_tokens

    def __call__(self, question: str, images: list[bytes]) -> str:
        prompt = REASONER_PROMPT.replace("{views}", _TWO_VIEWS if len(images) > 1 else _ONE_VIEW)
        prompt = prompt.replace("{question}", question)
        image = side_by_side(images) if len(images) > 1 else images[0]
        return _generated_text(self.backend, GenerationRequest(prompt, self.max_tokens, image=image))


class MMDiTEditor:
    """The novel view from an editing MMDiT: the question's image as the source, the move as the instruction,
    generated at the config's sample settings (`task.config.sample`: size, steps, guidance, seed)."""

    def __init__(self, config_path: Path, checkpoint: str = "latest", overrides: list[str] | None = None) -> None:
        from trainer import checkpoint as checkpoints
        from trainer.config import load_config
        from trainer.loop import trained_model

        config = load_config(config_path, overrides or [])
        tag = checkpoint if checkpoint == "base" else checkpoints.resolve_tag(
            checkpoints.checkpoint_root(config.run.out_dir), checkpoint)
        self.task: Any
        self.task, self.model = trained_model(config, tag)
        if not hasattr(self.task, "generate_images"):
            raise ValueError(f"{config_path}: task {config.task.name} does not generate images")
        self.checkpoint = tag

    def __call__(self, question: BenchmarkQuestion, move: CameraMove) -> bytes:
        source = Image.open(io.BytesIO(question.image))
        image = self.task.generate_images(self.model, [format_camera_move(move)], [source])[0]
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()
