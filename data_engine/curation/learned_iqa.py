"""Learned perceptual quality models of the IQA cascade (report 4.1.1): MUSIQ and CLIP-IQA.

Both are pyiqa's own architecture classes (`pyiqa.archs.musiq_arch.MUSIQ`, `pyiqa.archs.clipiqa_arch.CLIPIQA`),
built with `pretrained=False` and filled from a local model directory, so nothing is ever downloaded. A model
directory holds:

- `arch.json`: `{"metric": "musiq" | "clipiqa", "kwargs": {...}}`, keyword arguments of the pyiqa class
  (`{}` for MUSIQ-KonIQ and plain CLIP-IQA; `{"num_class": 10}` for MUSIQ-AVA; `{"model_type": "clipiqa+"}`);
- MUSIQ: `weights.pth`, the model's state dict (pyiqa's published checkpoints, e.g.
  `musiq_koniq_ckpt-e95806b9.pth`, are exactly this);
- CLIP-IQA: `clip.pt`, the OpenAI CLIP the image and prompt encoders come from, as the TorchScript archive
  OpenAI publishes (`RN50.pt` for pyiqa's CLIP-IQA); pyiqa rebuilds the CLIP that fits its weights' shapes.
  (pyiqa 0.1.16 cannot read a plain state dict there: after its TorchScript attempt fails it reads the file
  from its end.) Plus `weights.pth` for the variants with learned prompts (clipiqa+).

Scores: MUSIQ-KonIQ predicts a mean opinion score on about 0..100, CLIP-IQA the probability of the "good"
prompt of each antonym pair, 0..1; higher is better for both.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

LearnedIqaMetric = Literal["musiq", "clipiqa"]
LEARNED_IQA_METRICS: tuple[str, ...] = get_args(LearnedIqaMetric)
ARCH_FILE = "arch.json"
WEIGHTS_FILE = "weights.pth"
CLIP_FILE = "clip.pt"
# pyiqa's own dependency list pulls a second OpenCV build and much else. MUSIQ and CLIP-IQA need only what the
# environment has (torch, torchvision, scipy, huggingface_hub) plus OpenAI's `clip` package for the prompt
# tokenizer (with ftfy), whose import needs `pkg_resources`, removed from setuptools 81 on.
PYIQA_INSTALL = "pip install --no-deps pyiqa==0.1.16 openai-clip==1.0.1 ftfy==6.3.1 setuptools==80.10.2"


class LearnedIqaModelError(FileNotFoundError):
    """A learned-IQA model directory is missing a file or holds another metric's model; the message names it."""


def pyiqa_available() -> str | None:
    """None when pyiqa's MUSIQ and CLIP-IQA classes import, else a one-line reason with the install command."""
    try:
        import pyiqa.archs.clipiqa_arch  # noqa: F401
        import pyiqa.archs.musiq_arch  # noqa: F401
    except ImportError as exc:
        return f"pyiqa is not importable ({exc}); install it with `{PYIQA_INSTALL}`"
    return None


def _required(path: Path) -> Path:
    if not path.is_file():
        raise LearnedIqaModelError(f"{path} does not exist")
    return path


def read_arch(model_dir: Path, metric: LearnedIqaMetric) -> dict[str, Any]:
    """The pyiqa constructor arguments recorded in `model_dir`, checked to belong to `metric`."""
    path = _required(model_dir / ARCH_FILE)
    try:
        arch = json.loads(path.read_text())
    except ValueError as exc:
        raise LearnedIqaModelError(f"{path}: not JSON ({exc})") from None
    if not isinstance(arch, dict) or arch.get("metric") != metric:
        found = arch.get("metric") if isinstance(arch, dict) else None
        raise LearnedIqaModelError(f"{path}: holds a {found!r} model, expected {metric!r}")
    return dict(arch.get("kwargs", {}))


def _load_state_dict(model: Any, path: Path) -> None:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first_line = str(exc).splitlines()[0]
        raise LearnedIqaModelError(f"{path}: does not fit the architecture in {ARCH_FILE}: {first_line}") from None


def _uses_learned_prompts(kwargs: dict[str, Any]) -> bool:
    return "clipiqa+" in kwargs.get("model_type", "clipiqa")


def check_model_dir(metric: LearnedIqaMetric, model_dir: Path) -> dict[str, Any]:
    """The pyiqa constructor arguments of the model in `model_dir`, after checking that every file it needs is
    there (cheap: no torch, so the driver can run it before any worker starts)."""
    kwargs = read_arch(model_dir, metric)
    needed = [WEIGHTS_FILE] if metric == "musiq" else [CLIP_FILE] + [WEIGHTS_FILE] * _uses_learned_prompts(kwargs)
    for name in needed:
        _required(model_dir / name)
    return kwargs


def load_learned_iqa(metric: LearnedIqaMetric, model_dir: Path) -> Any:
    """The pyiqa network for `metric`, in eval mode on the CPU, with the weights found in `model_dir`."""
    kwargs = check_model_dir(metric, model_dir)
    if metric == "musiq":
        from pyiqa.archs.musiq_arch import MUSIQ

        model = MUSIQ(**kwargs, pretrained=False)
        _load_state_dict(model, model_dir / WEIGHTS_FILE)
    else:
        from pyiqa.archs.clipiqa_arch import CLIPIQA

        # pyiqa's CLIP loader takes a file path as the backbone and builds the CLIP that fits its weights.
        with warnings.catch_warnings():  # TorchScript is the format OpenAI publishes CLIP in; nothing to act on
            warnings.filterwarnings("ignore", message="`torch.jit.load` is deprecated", category=FutureWarning)
            model = CLIPIQA(**kwargs, backbone=str(model_dir / CLIP_FILE), pretrained=False)
        if _uses_learned_prompts(kwargs):
            _load_state_dict(model, model_dir / WEIGHTS_FILE)
    return model.eval()


def save_learned_iqa(metric: LearnedIqaMetric, out_dir: Path, kwargs: dict[str, Any], *,
                     weights: dict[str, Any] | None = None, clip: Any = None) -> Path:
    """Write a model directory `load_learned_iqa` reads: `weights` is the pyiqa network's state dict (MUSIQ,
    clipiqa+), `clip` a pyiqa `CLIP` module (CLIP-IQA), saved as a TorchScript archive like OpenAI's."""
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / ARCH_FILE).write_text(json.dumps({"metric": metric, "kwargs": kwargs}, indent=2, sort_keys=True) + "\n")
    if weights is not None:
        torch.save(weights, out_dir / WEIGHTS_FILE)
    if clip is not None:
        from pyiqa.archs.clip_imports import clip as openai_clip

        side = clip.visual.input_resolution
        example = (torch.zeros(1, 3, side, side), openai_clip.tokenize(["a photo"]))
        torch.jit.trace(clip.eval(), example, check_trace=False).save(str(out_dir / CLIP_FILE))
    return out_dir


def score_images(model: Any, images: list[np.ndarray], device: str = "cpu") -> list[float]:
    """One score per HxWx3 uint8 RGB image. Images go one at a time: both networks take any size (MUSIQ cuts
    its own multi-scale patches, CLIP-IQA runs its ResNet without positional embeddings), and sizes differ."""
    import torch

    scores = []
    with torch.no_grad():
        for rgb in images:
            tensor = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float().div_(255.0)
            scores.append(float(model(tensor.to(device)).reshape(-1)[0]))
    return scores
