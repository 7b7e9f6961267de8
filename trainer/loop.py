"""The training loop: task + data stream + DeepSpeed engine + checkpoints + logs, configured by one TrainConfig.

One `step` is one optimizer step: `engine.grad_accum_steps` micro-batches per rank, each back-propagated
through the engine (which scales by the accumulation and steps the optimizer and schedule at the boundary).
The step's micro-batches are read first so that token-mean losses can divide by the step's token counts
over every rank (`StepTotals`, trainer/core.py).
A non-finite loss on any rank stops every rank before that micro-batch's backward: nothing is saved after
it, so the last checkpoint stays the last good one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer import checkpoint
from trainer.config import TrainConfig
from trainer.core import RunContext, StepTotals, Task, TrainerError, task_class
from trainer.data import MicroBatchStream, ensure_synthetic_datasets
from trainer.engine import DistInfo, close_distributed, create_engine, init_distributed, single_process_info
from trainer.run_log import RunLog


class NonFiniteLoss(TrainerError):
    """The loss became NaN or inf; training stopped without saving."""


@dataclass
class TrainResult:
    start_step: int
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_task(config: TrainConfig, dist_info: DistInfo) -> Task:
    context = RunContext(rank=dist_info.rank, world_size=dist_info.world_size, device=dist_info.device,
                         dtype=dist_info.dtype, out_dir=config.run.out_dir,
                         activation_checkpointing=config.engine.activation_checkpointing)
    return task_class(config.task.name)(config.task_config(), context, config.engine.micro_batch_size)


def trained_model(config: TrainConfig, checkpoint_tag: str) -> tuple[Task, torch.nn.Module]:
    """(task, model) on one process, with the weights of checkpoint `checkpoint_tag` ("base": untouched)."""
    task = build_task(config, single_process_info(config.engine))
    model = task.build_model()
    if checkpoint_tag != "base":
        load_checkpoint_weights(model, config, checkpoint_tag)
    return task, model


def load_checkpoint_weights(model: torch.nn.Module, config: TrainConfig, checkpoint_tag: str) -> None:
    """Put checkpoint `checkpoint_tag`'s weights into `model` (`sample --checkpoint all` reuses one model)."""
    state = checkpoint.load_module_weights(checkpoint.checkpoint_root(config.run.out_dir), checkpoint_tag)
    missing, unexpected = model.load_state_dict(state, strict=False)
    loaded = {id(parameter) for name, parameter in model.named_parameters() if name in state}
    untied = [name for name, parameter in model.named_parameters() if name in missing and id(parameter) not in loaded]
    if unexpected or untied:
        raise TrainerError(f"checkpoint {checkpoint_tag}: weights do not match the model "
                           f"(missing {untied[:3]}, unexpected {unexpected[:3]})")


def _all_ranks_finite(value: torch.Tensor) -> bool:
    import torch.distributed as dist

    flag = torch.tensor([0.0 if torch.isfinite(value).all() else 1.0])
    dist.all_reduce(flag)
    return flag.item() == 0.0


def _mean_over_ranks(metrics: dict[str, float], world_size: int) -> dict[str, float]:
    import torch.distributed as dist

    keys = sorted(metrics)
    values = torch.tensor([metrics[key] for key in keys], dtype=torch.float64)
    dist.all_reduce(values)
    return {key: float(value) / world_size for key, value in zip(keys, values)}


def _step_totals(task: Task, batches: list[dict[str, Any]], micro_batches: int) -> StepTotals:
    import torch.distributed as dist

    counts: dict[str, float] = {}
    for batch in batches:
        for key, value in task.loss_counts(batch).items():
            counts[key] = counts.get(key, 0.0) + float(value)
    keys = sorted(counts)
    if keys:
        values = torch.tensor([counts[key] for key in keys], dtype=torch.float64)
        dist.all_reduce(values)
        counts = dict(zip(keys, values.tolist()))
    return StepTotals(counts, micro_batches)


def planned_steps(config: TrainConfig, stream: MicroBatchStream, world_size: int) -> tuple[int, dict[str, Any]]:
    """(optimizer steps, how they were derived): `run.max_steps`, or `run.epochs` x the micro-batches of one
    epoch (the fewest over ranks: every rank steps together) / accumulation steps."""
    if config.run.max_steps is not None:
        return config.run.max_steps, {"max_steps": config.run.max_steps}
    import torch.distributed as dist

    counted = torch.tensor([stream.micro_batches_per_epoch()], dtype=torch.int64)
    dist.all_reduce(counted, op=dist.ReduceOp.MIN)
    accumulation = config.engine.accumulation_steps(world_size)
    per_epoch = int(counted.item())
    steps = int(config.run.epochs * per_epoch // accumulation)
    plan = {"epochs": config.run.epochs, "micro_batches_per_epoch_per_rank": per_epoch,
            "rows_per_epoch_per_rank": stream.mixture.epoch_rows, "accumulation_steps": accumulation,
            "world_size": world_size, "steps": steps}
    if steps < 1:
        raise TrainerError(f"run.epochs: {config.run.epochs} epoch(s) of {per_epoch} micro-batches per rank is less "
                           f"than one step of {accumulation} micro-batches")
    return steps, plan


def _train_steps(config: TrainConfig, dist_info: DistInfo, log: RunLog, result: TrainResult, engine: Any,
                 task: Task, stream: MicroBatchStream, root: Path, total_steps: int) -> None:
    accumulation = config.engine.accumulation_steps(dist_info.world_size)
    for step in range(result.start_step + 1, total_steps + 1):
        sums: dict[str, float] = {}
        learning_rates = {f"lr/{group.get('name', 'default')}": group["lr"] for group in engine.optimizer.param_groups}
        batches = [next(stream) for _ in range(accumulation)]
        totals = _step_totals(task, batches, accumulation * dist_info.world_size)
        for batch in batches:
            losses = task.compute_loss(engine, task.to_device(batch), totals)
            if not _all_ranks_finite(losses["loss"].detach().float().cpu()):
                log.event("stopped", step=step, reason="non-finite loss")
                raise NonFiniteLoss(
                    f"step {step}: loss is not finite; stopped without saving (last good checkpoint: "
                    f"{checkpoint.read_latest(root) or 'none'})")
            engine.backward(losses["loss"])
            engine.step()
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach().float())
        metrics = _mean_over_ranks({key: total / accumulation for key, total in sums.items()},
                                   dist_info.world_size)
        metrics.update(learning_rates)
        result.steps.append(step)
        result.losses.append(metrics["loss"])
        if step % config.run.log_every == 0 or step == total_steps:
            log.step(step, metrics)
        if (config.run.save_every and step % config.run.save_every == 0) or step == total_steps:
            checkpoint.save_checkpoint(engine, root, step, dist_info.rank, stream.state(), task.state_dict())
            log.event("checkpoint", step=step, tag=checkpoint.step_tag(step))


def train(config: TrainConfig) -> TrainResult:
    """Run (or resume) training; returns the global mean loss of every step this call ran."""
    dist_info = init_distributed(config.engine)
    log = None
    try:
        if dist_info.rank == 0:
            ensure_synthetic_datasets(config.data.datasets)
        torch.distributed.barrier()
        seed_all(config.run.seed)  # identical initial weights on every rank
        task = build_task(config, dist_info)
        model = task.build_model()
        if config.engine.activation_checkpointing:
            task.enable_activation_checkpointing(model)
        stream = MicroBatchStream(task, config.data.datasets, seed=config.data.seed, window=config.data.window,
                                  rank=dist_info.rank, world_size=dist_info.world_size)
        total_steps, plan = planned_steps(config, stream, dist_info.world_size)
        engine = create_engine(model, task.parameter_groups(model), config, dist_info, total_steps)
        seed_all(config.run.seed + dist_info.rank)
        root = checkpoint.checkpoint_root(config.run.out_dir)
        start_step = 0
        if config.run.resume and checkpoint.read_latest(root) is not None:
            start_step, data_state, task_state = checkpoint.load_checkpoint(engine, root, dist_info.rank)
            stream.load_state(data_state)
            task.load_state_dict(task_state)
        result = TrainResult(start_step=start_step)
        log = RunLog(config.run.out_dir, enabled=dist_info.rank == 0, total_steps=total_steps,
                     start_step=start_step, progress=config.run.progress, tensorboard=config.run.tensorboard)
        log.event("start", step=start_step, world_size=dist_info.world_size, task=config.task.name,
                  dtype=str(dist_info.dtype), config=config.model_dump(mode="json"))
        log.event("plan", step=start_step, **plan)
        if config.run.epochs is not None:
            log.message(f"{config.run.epochs:g} epoch(s) of {plan['micro_batches_per_epoch_per_rank']} micro-batches "
                        f"per rank at {plan['accumulation_steps']} per step: {total_steps} steps")
        if start_step >= total_steps:
            log.message(f"already trained to step {start_step} (of {total_steps})")
        _train_steps(config, dist_info, log, result, engine, task, stream, root, total_steps)
        log.event("end", step=total_steps, skipped_rows=stream.skipped)
        return result
    finally:
        if log is not None:
            log.close()
        close_distributed()
