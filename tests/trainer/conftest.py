"""Shared trainer fixtures: small QA shard directories and a tiny MLLM training config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from trainer.synthetic_qa import write_synthetic_qa

REPO = Path(__file__).resolve().parents[2]
_LAUNCH_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(scope="session")
def qa_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("trainer-qa")
    write_synthetic_qa(root / "spatial", "spatial_qa", 60, shard_rows=20)
    write_synthetic_qa(root / "general", "general_qa", 30, shard_rows=20)
    return {"spatial": root / "spatial", "general": root / "general"}


def tiny_config(qa_dirs: dict[str, Path], out_dir: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A tiny-model config: 64-token packs of about two samples, 8-row windows, KL on."""
    config: dict[str, Any] = {
        "task": {"name": "mllm_sft", "config": {"model_path": "tiny:qwen3vl", "max_length": 64,
                                                "image_min_pixels": 1024, "image_max_pixels": 16384,
                                                "kd_layers": [0], "eval_max_new_tokens": 4}},
        "data": {"window": 8, "datasets": [
            {"name": "spatial", "path": str(qa_dirs["spatial"]), "ratio": 3},
            {"name": "general", "path": str(qa_dirs["general"]), "ratio": 1, "general_domain": True}]},
        "optim": {"lr": 1e-3, "group_lr": {"vision": 1e-4}, "warmup_steps": 0},
        "engine": {"zero_stage": 1},
        "run": {"out_dir": str(out_dir), "max_steps": 4, "progress": False},
    }
    for name, values in sections.items():
        config[name].update(values)
    return config


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def clean_env() -> dict[str, str]:
    """The environment for a trainer subprocess: no launch variables left over from in-process runs."""
    env = {key: value for key, value in os.environ.items() if key not in _LAUNCH_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["HF_HUB_OFFLINE"] = "1"
    return env


def run_python(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=REPO, env=clean_env(), capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="session")
def tiny_clip() -> Path:
    """The tiny random text-image CLIPModel of `make tiny-models` (the rewards' CLIP)."""
    from data_engine.model_refs import tiny_model_path

    return tiny_model_path("clip")
