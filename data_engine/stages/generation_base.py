"""The base of model stages that prompt a generation backend (captioning, prompt rewriting, the render VLM
stages), and the image each of them sends."""

from __future__ import annotations

import io

from PIL import Image

from data_engine.captioning.backends import GenerationBackend, check_backend_available, make_backend
from data_engine.captioning.prompts import PromptSet, load_prompt_set
from data_engine.stage import Stage, StageUnavailable


class GenerationStage(Stage):
    """A model stage that prompts a generation backend (captioning, prompt rewriting): the backend is checked
    on the driver before the job starts, and the prompt set and backend load once per actor."""

    uses_model = True

    def preflight(self) -> None:
        problem = check_backend_available(self.config.backend)
        if problem:
            raise StageUnavailable(f"{self.name}: {problem}")

    def setup(self) -> None:
        self.prompts: PromptSet = load_prompt_set(self.config.prompt_version)
        self.backend: GenerationBackend = make_backend(self.config.backend)


def downscaled_image(data: bytes, max_side: int) -> bytes:
    """The image as sent to the model: unchanged when small enough, else resized and re-encoded as PNG."""
    with Image.open(io.BytesIO(data)) as image:
        if max(image.size) <= max_side:
            return data
        scale = max_side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        buffer = io.BytesIO()
        image.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(buffer, format="PNG")
        return buffer.getvalue()
