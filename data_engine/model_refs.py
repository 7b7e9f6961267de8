"""Model references in configs: a local checkpoint directory, or `tiny:<name>` for a tiny test model.

The tiny models' cache (its root and `manifest.json`) is read here, so any package resolves a reference without
importing the trainer; `trainer/tiny_models.py` builds the models into this cache (`make tiny-models`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

TINY_PREFIX = "tiny:"
ENV_VAR = "JOYAI_TINY_MODELS"  # the cache root; default <repo>/.cache/tiny-models
MANIFEST_NAME = "manifest.json"


class TinyModelsError(RuntimeError):
    """A tiny model is missing or incomplete, its tokenizer came out wrong, or a request names no known model."""


def default_root() -> Path:
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[1] / ".cache" / "tiny-models"


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST_NAME
    if not path.is_file():
        return {"models": {}}
    return json.loads(path.read_text())


def is_complete(root: Path, entry: dict[str, Any]) -> bool:
    """Every file the manifest recorded for the model is there with its recorded size."""
    model_dir = root / entry["path"]
    return all(
        (model_dir / name).is_file() and (model_dir / name).stat().st_size == info["bytes"]
        for name, info in entry["files"].items()
    )


def tiny_model_path(name: str, root: Path | str | None = None) -> Path:
    """The checkpoint directory of a built tiny model (root: `$JOYAI_TINY_MODELS` or `<repo>/.cache/tiny-models`).

    Checks that the model is there and whole, not that its recipe is current: callers may run in another
    environment (the vLLM one pins other library versions) where the recipe hash would differ.
    """
    cache_root = Path(root) if root is not None else default_root()
    entry = read_manifest(cache_root)["models"].get(name)
    if entry is None or not is_complete(cache_root, entry):
        raise TinyModelsError(
            f"tiny model {name!r} is missing or incomplete under {cache_root}: run `make tiny-models` "
            f"(or `python -m trainer.tiny_models --out {cache_root}`)"
        )
    return cache_root / entry["path"]


def resolve_model_path(reference: str) -> Path:
    """A local directory as it is, or `tiny:<name>` as the built tiny model's directory."""
    if reference.startswith(TINY_PREFIX):
        return tiny_model_path(reference.removeprefix(TINY_PREFIX))
    return Path(reference)
