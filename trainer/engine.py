"""Process group and DeepSpeed engine from one config: the same code on a 2-core CPU (gloo, fp32) and on GPU
nodes (nccl, bf16), launched by torchrun, the `deepspeed` launcher (hostfile for multi-node) or plainly.

The optimizer is torch AdamW handed to DeepSpeed as a client optimizer (DeepSpeedCPUAdam would JIT-compile for
~40 s on first use), with one parameter group per task group name and its own learning rate; the schedule is
linear warmup then cosine (or constant), stepped by DeepSpeed at each optimizer step.

ZeRO stage for one process: ZeRO shards optimizer state (1), gradients (2) and weights (3) across data-parallel
ranks; with a single rank there is nothing to shard, and stages 1-2 only add gradient copies, bucketing and a
float64 per-parameter norm (profiled on the tiny Qwen3-VL, one CPU thread: about 1.5x the CPU time of a plain
PyTorch step, stage 0 about 1.1x). Single-process configs therefore use `engine.zero_stage: 0`; multi-rank
configs use 1-3.
"""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass
from typing import Any

import torch

from trainer.config import EngineConfig, OptimConfig, TrainConfig
from trainer.core import TrainerError


_LAUNCH_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_created_launch_env = False  # True once this process made up its own one-process launch variables


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    dtype: torch.dtype


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def init_distributed(engine: EngineConfig) -> DistInfo:
    """Join (or, for a plain `python -m trainer`, create a one-process) process group."""
    import deepspeed
    import torch.distributed as dist

    global _created_launch_env
    if "RANK" not in os.environ or _created_launch_env:
        # No launcher: a one-process group on a fresh loopback port (fresh for every run in one process).
        values = ("0", "0", "1", "1", "127.0.0.1", str(_free_port()))
        os.environ.update(dict(zip(_LAUNCH_ENV, values)))
        _created_launch_env = True
    gpu = torch.cuda.is_available()
    backend = engine.backend if engine.backend != "auto" else ("nccl" if gpu else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if gpu:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        deepspeed.init_distributed(dist_backend=backend, verbose=False)
    local = single_process_info(engine)
    return DistInfo(rank=dist.get_rank(), local_rank=local_rank, world_size=dist.get_world_size(),
                    device=torch.device("cuda", local_rank) if gpu else local.device, dtype=local.dtype)


def close_distributed() -> None:
    """Barrier then destroy: without it gloo runs sometimes abort at exit after training finished. Destroyed
    through DeepSpeed so that it also drops its cached groups (a later run in this process starts clean)."""
    import deepspeed.comm
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        deepspeed.comm.destroy_process_group()


def deepspeed_config(config: TrainConfig, world_size: int, dtype: torch.dtype) -> dict[str, Any]:
    engine = config.engine
    accumulation = engine.accumulation_steps(world_size)
    return {
        "train_micro_batch_size_per_gpu": engine.micro_batch_size,
        "gradient_accumulation_steps": accumulation,
        "train_batch_size": engine.micro_batch_size * accumulation * world_size,
        "gradient_clipping": config.optim.grad_clip,
        "zero_optimization": {"stage": engine.zero_stage},
        "bf16": {"enabled": dtype == torch.bfloat16},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


def lr_factor(step: int, optim: OptimConfig, max_steps: int) -> float:
    """Multiplier of each group's base LR before optimizer step `step + 1` (LambdaLR counts from 0)."""
    if step < optim.warmup_steps:
        return (step + 1) / optim.warmup_steps
    if optim.schedule == "constant":
        return 1.0
    progress = (step - optim.warmup_steps) / max(1, max_steps - optim.warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return optim.min_lr_ratio + (1.0 - optim.min_lr_ratio) * cosine


def check_group_names(groups: dict[str, list[torch.nn.Parameter]], optim: OptimConfig) -> None:
    unknown = sorted(set(optim.group_lr) - set(groups))
    if unknown:
        raise TrainerError(f"optim.group_lr.{unknown[0]}: no such parameter group; groups: {', '.join(groups)}")


def build_optimizer(groups: dict[str, list[torch.nn.Parameter]], optim: OptimConfig) -> torch.optim.Optimizer:
    check_group_names(groups, optim)
    param_groups = [{"params": params, "lr": optim.group_lr.get(name, optim.lr), "name": name}
                    for name, params in groups.items() if params]
    return torch.optim.AdamW(param_groups, lr=optim.lr, betas=optim.betas, eps=optim.eps,
                             weight_decay=optim.weight_decay)


def create_engine(model: torch.nn.Module, groups: dict[str, list[torch.nn.Parameter]], config: TrainConfig,
                  dist_info: DistInfo, total_steps: int | None = None) -> Any:
    """`total_steps`: the length of the LR schedule (default `run.max_steps`; runs in epochs pass theirs)."""
    import deepspeed

    optimizer = build_optimizer(groups, config.optim)
    length = total_steps if total_steps is not None else config.run.max_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config.optim, length))
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler,
        config=deepspeed_config(config, dist_info.world_size, dist_info.dtype))
    if config.engine.zero_stage == 0 and dist_info.world_size == 1:
        # One rank has no gradients to average: skip the flatten + all-reduce + copy-back of every gradient
        # (about a tenth of a tiny-model CPU step), as DeepSpeed itself does without a process group. ZeRO
        # stages keep their reduction: it also builds the flat gradient partitions their optimizer steps on.
        engine.enable_backward_allreduce = False
    return engine


def single_process_info(engine: EngineConfig) -> DistInfo:
    """Device and dtype for work outside a training run (eval, export): one process, no process group."""
    gpu = torch.cuda.is_available()
    precision = engine.precision if engine.precision != "auto" else ("bf16" if gpu else "fp32")
    return DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cuda" if gpu else "cpu"),
                    dtype=torch.bfloat16 if precision == "bf16" else torch.float32)
