"""Checkpoints: DeepSpeed states (model, optimizer, scheduler) plus, per rank, data position, RNG states and the
task's own state (`Task.state_dict`).

Layout under `<out_dir>/checkpoints/`:
  step-00000040/            DeepSpeed's files for that tag, and `rank-00000.pt` ... (data state, RNG)
  latest.json               {"tag": ..., "step": ...}: written atomically, last, after every rank finished
A checkpoint without `latest.json` pointing at it is never resumed from, so a crash or a NaN stop during
training can never replace the last good checkpoint with a partial or poisoned one.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data_engine.shards import atomic_write_json
from trainer.core import TrainerError

LATEST_NAME = "latest.json"


def checkpoint_root(out_dir: Path) -> Path:
    return out_dir / "checkpoints"


def step_tag(step: int) -> str:
    return f"step-{step:08d}"


def tag_step(tag: str) -> int:
    """The optimizer step a `step_tag` names."""
    prefix, _, number = tag.partition("-")
    if prefix != "step" or not number.isdigit():
        raise TrainerError(f"checkpoint tag {tag!r} is not of the form step-NNNNNNNN")
    return int(number)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def read_latest(root: Path) -> dict[str, Any] | None:
    path = root / LATEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TrainerError(f"{path}: malformed ({exc})") from None


def resolve_tag(root: Path, tag: str | None) -> str:
    """`tag` or, when None or "latest", the tag `latest.json` names."""
    if tag and tag != "latest":
        if not (root / tag).is_dir():
            raise TrainerError(f"{root / tag}: no such checkpoint")
        return tag
    latest = read_latest(root)
    if latest is None:
        raise TrainerError(f"{root}: no checkpoint ({LATEST_NAME} missing)")
    return latest["tag"]


def saved_tags(root: Path) -> list[str]:
    """Every complete checkpoint's tag in step order: up to the one `latest.json` names (a later directory is a
    save that never finished)."""
    latest = resolve_tag(root, None)
    tags = sorted(path.name for path in root.glob("step-*") if path.is_dir())
    return [tag for tag in tags if tag_step(tag) <= tag_step(latest)]


def save_checkpoint(engine: Any, root: Path, step: int, rank: int, data_state: dict[str, Any],
                    task_state: dict[str, Any] | None = None) -> None:
    import torch.distributed as dist

    tag = step_tag(step)
    engine.save_checkpoint(str(root), tag=tag, save_latest=False)
    torch.save({"step": step, "data": data_state, "rng": rng_state(), "task": task_state or {}},
               root / tag / f"rank-{rank:05d}.pt")
    dist.barrier()
    if rank == 0:
        atomic_write_json(root / LATEST_NAME, {"tag": tag, "step": step})
    dist.barrier()


def load_checkpoint(engine: Any, root: Path, rank: int) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """Restore the latest checkpoint into `engine`; returns (step, this rank's data state, its task state)."""
    tag = resolve_tag(root, None)
    rank_file = root / tag / f"rank-{rank:05d}.pt"
    if not rank_file.is_file():
        raise TrainerError(f"{rank_file}: missing; was the checkpoint written with a different world size?")
    load_path, _ = engine.load_checkpoint(str(root), tag=tag, load_optimizer_states=True,
                                          load_lr_scheduler_states=True)
    if load_path is None:
        raise TrainerError(f"{root / tag}: DeepSpeed could not load this checkpoint")
    state = torch.load(rank_file, weights_only=False)
    set_rng_state(state["rng"])
    return int(state["step"]), state["data"], state.get("task", {})


def load_module_weights(root: Path, tag: str | None) -> dict[str, torch.Tensor]:
    """Full fp32 weights of the trained module from a checkpoint of any ZeRO stage (for eval and export): ZeRO
    1-3 checkpoints are merged from their partitions' fp32 master weights; without ZeRO (stage 0) DeepSpeed
    saves the whole module in its model-states file."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    resolved = resolve_tag(root, tag)
    if any((root / resolved).glob("*zero_pp_rank_*optim_states.pt")):
        return get_fp32_state_dict_from_zero_checkpoint(str(root), tag=resolved)
    states = root / resolved / "mp_rank_00_model_states.pt"
    if not states.is_file():
        raise TrainerError(f"{root / resolved}: neither ZeRO partitions nor {states.name}")
    return {name: tensor.float() for name, tensor in torch.load(states, weights_only=False)["module"].items()}
