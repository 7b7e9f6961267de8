"""The trainer's one extension point: a `Task` turns shard rows into batches and batches into losses.

Everything else (streaming shard reader, dataset mixture, DeepSpeed engine, checkpoints, logs, CLI) is shared
by every model this project trains. To add a model, write one module under `trainer/objectives/` that defines
a `Task` subclass and decorates it with `@register_task("name")`; a config selects it with `task.name` and
configures it with `task.config` (validated against the task's `config_model`). Every module in
`trainer/objectives/` is imported when a task is looked up, so registration needs no other edit.

How the shared loop uses a task (trainer/loop.py; `step` counts optimizer steps):

    task = TaskClass(config, context)                  # context: rank, world size, device, dtype, out_dir
    model = task.build_model()                         # the trainable nn.Module, wrapped by DeepSpeed
    groups = task.parameter_groups(model)              # {group name: [params]}; lr per group from optim
    stream: rows of `task.schema` shards (accepted rows only, mixed by `data.datasets[*].ratio` per epoch,
            shuffled deterministically, rank r reading every world_size-th row)
      -> task.prepare(sample)                 -> an example (any object); raise ExampleError to skip a row
      -> task.plan_micro_batches(window)      -> lists of example indices, one list per micro-batch
                                                 (default: `engine.micro_batch_size` in a row; the MLLM
                                                 packs greedily by token count)
      -> task.collate(examples)               -> a batch (dict of tensors, on CPU)
    per step: totals = StepTotals(task.loss_counts(batch) summed over the step's micro-batches on every rank,
                                  micro-batches per step on all ranks)
    per micro-batch: losses = task.compute_loss(engine, task.to_device(batch), totals)
                     losses["loss"] is what is back-propagated; every other entry is logged
    task.state_dict() / load_state_dict(state)        (saved with each checkpoint, restored on resume)
    task.evaluate(model, samples) -> {metric: value}   (`python -m trainer eval`)
    TaskClass.meta_model(config)                      (`python -m trainer train --dry-run`: weights-free)
    task.export(model, out_dir)                       (`python -m trainer export`)
    task.write_samples(model, out_dir, checkpoint)    (`python -m trainer sample`: the fixed-prompt grid)

A loss that is a mean over tokens (the MLLM's SFT and KL) is a mean over the whole global batch, not over
one micro-batch: `compute_loss` returns `totals.share(key, local sum)`, so packing and gradient
accumulation do not change the objective (DeepSpeed then averages over accumulation steps and ranks).

`compute_loss` receives the DeepSpeed engine, which is called like the model (`engine(**inputs)`); the
unwrapped module is `engine.module`. Frozen helpers (a KD teacher, a VAE, a text encoder) belong to the
task, not to the model that `build_model` returns, so the optimizer and the checkpoint never see them.

Rules that keep runs exact and ranks in step:
- `prepare`, `plan_micro_batches` and `collate` must be deterministic functions of their inputs (use
  `sample.seed` for any per-sample randomness such as caption type sampling): resume re-reads the current
  window and skips the micro-batches already trained on.
- every rank calls the model the same number of times per micro-batch (ZeRO gathers in lockstep); a rank
  whose batch lacks an optional input (no image) still runs that sub-module with zero weight.

Config layout (trainer/config.py): `task` {name, config}, `data` {datasets: [{name, path, ratio, rows,
general_domain}], seed, window}, `optim` {lr, group_lr: {group: lr}, warmup_steps, schedule, ...},
`engine` {zero_stage, precision, micro_batch_size, grad_accum_steps, activation_checkpointing},
`run` {out_dir, max_steps or epochs, save_every, log_every, seed}. A dataset may name a registered synthetic writer
(`synthetic: general_qa`, see `register_synthetic_dataset` below) that fills its path when it has no shards.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class TrainerError(RuntimeError):
    """A one-line, user-facing error (bad config, bad data, missing checkpoint); the CLI prints it, exit 2."""


class ExampleError(ValueError):
    """A row cannot become a training example (too long, undecodable image); the stream counts and skips it.

    The message's first word is used as the skip reason in the logs, e.g. `too_long: 9000 tokens > 8192`."""


class TaskConfig(BaseModel):
    """Base for a task's typed `task.config` section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class RunContext:
    """What a task may know about the run it is part of."""

    rank: int
    world_size: int
    device: Any  # torch.device
    dtype: Any  # torch.dtype of the compute (float32 on CPU, bfloat16 on GPU)
    out_dir: Path
    activation_checkpointing: bool = False


@dataclass(frozen=True)
class Sample:
    """One accepted shard row on its way to a task, with where it came from."""

    row: dict[str, Any]
    dataset: str
    general_domain: bool
    seed: int  # a deterministic per-sample seed (dataset, epoch, row): use it for per-sample randomness


@dataclass(frozen=True)
class StepTotals:
    """What one optimizer step holds over all its micro-batches on every rank."""

    counts: dict[str, float]  # `Task.loss_counts` summed over the step
    micro_batches: int  # micro-batches per step on all ranks (accumulation x world size)

    def share(self, key: str, local_sum: Any) -> Any:
        """This micro-batch's part of the global mean of `key`, scaled by the micro-batch count because
        DeepSpeed averages the micro-batch losses over accumulation steps and ranks. Zero if the step holds
        no `key` units at all."""
        return local_sum * (self.micro_batches / max(self.counts.get(key, 0.0), 1.0))


class Task:
    """Base class of a training task; subclasses override the methods the loop calls (see module docstring)."""

    name: ClassVar[str] = ""
    schema: ClassVar[str] = ""  # the shard schema this task reads (data_engine/schemas.py)
    # Further schemas `prepare` accepts, told apart by their columns (the MLLM also trains on caption rows).
    extra_schemas: ClassVar[tuple[str, ...]] = ()
    config_model: ClassVar[type[TaskConfig]] = TaskConfig

    def __init__(self, config: TaskConfig, context: RunContext, micro_batch_size: int = 1) -> None:
        self.config = config
        self.context = context
        self.micro_batch_size = micro_batch_size

    @classmethod
    def schemas(cls) -> tuple[str, ...]:
        return (cls.schema, *cls.extra_schemas)

    def build_model(self) -> Any:
        raise NotImplementedError

    @classmethod
    def meta_model(cls, config: TaskConfig) -> Any:
        """The model's architecture on the meta device, without weights (`train --dry-run`)."""
        raise TrainerError(f"task {cls.name}: no dry run (meta_model is not implemented)")

    @classmethod
    def parameter_groups(cls, model: Any) -> dict[str, list[Any]]:
        """Trainable parameters by group name; `optim.group_lr` sets a learning rate per group name."""
        return {"default": [p for p in model.parameters() if p.requires_grad]}

    def enable_activation_checkpointing(self, model: Any) -> None:
        enable = getattr(model, "activation_checkpointing_enable", None) or getattr(
            model, "gradient_checkpointing_enable", None)
        if enable is None:
            raise TrainerError(f"task {self.name}: the model has no activation checkpointing")
        enable()

    def prepare(self, sample: Sample) -> Any:
        raise NotImplementedError

    def plan_micro_batches(self, examples: Sequence[Any]) -> list[list[int]]:
        size = self.micro_batch_size
        return [list(range(start, min(start + size, len(examples)))) for start in range(0, len(examples), size)]

    def collate(self, examples: Sequence[Any]) -> dict[str, Any]:
        raise NotImplementedError

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        import torch

        def move(value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                target_dtype = self.context.dtype if value.is_floating_point() else value.dtype
                return value.to(device=self.context.device, dtype=target_dtype)
            return value

        return {key: move(value) for key, value in batch.items()}

    def loss_counts(self, batch: dict[str, Any]) -> dict[str, float]:
        """Units (e.g. response tokens) per loss term whose mean spans the global batch; {} for none."""
        return {}

    def compute_loss(self, model: Any, batch: dict[str, Any], totals: StepTotals | None = None) -> dict[str, Any]:
        """Losses of one micro-batch; `totals` None: the micro-batch is the whole step (evaluation, tests)."""
        raise NotImplementedError

    def step_totals(self, batch: dict[str, Any], totals: StepTotals | None) -> StepTotals:
        return totals if totals is not None else StepTotals(self.loss_counts(batch), 1)

    def state_dict(self) -> dict[str, Any]:
        """Training state the task keeps outside the model (the RL tasks' rollout generator, DiffusionNFT's EMA
        old policy); saved per rank with every checkpoint and given back to `load_state_dict` on resume, so a
        resumed run repeats the uninterrupted one exactly."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise TrainerError(f"task {self.name}: the checkpoint holds task state {sorted(state)} it cannot restore")

    def evaluate(self, model: Any, samples: Iterable[Sample]) -> dict[str, Any]:
        raise TrainerError(f"task {self.name}: evaluation is not implemented")

    def export(self, model: Any, out_dir: Path) -> None:
        save = getattr(model, "save_pretrained", None)
        if save is None:
            raise TrainerError(f"task {self.name}: export is not implemented for {type(model).__name__}")
        save(out_dir, safe_serialization=True)

    def write_samples(self, model: Any, out_dir: Path, checkpoint: str) -> Path:
        """Generate the task's fixed sample set from checkpoint `checkpoint` into `out_dir` (image generators
        override this); returns the sample grid."""
        raise TrainerError(f"task {self.name} does not generate samples")


_TASKS: dict[str, type[Task]] = {}


def register_task(name: str):
    def register(cls: type[Task]) -> type[Task]:
        if name in _TASKS and _TASKS[name] is not cls:
            raise TrainerError(f"task name {name!r} registered twice ({_TASKS[name].__name__}, {cls.__name__})")
        cls.name = name
        _TASKS[name] = cls
        return cls

    return register


def _import_task_modules() -> None:
    import trainer.objectives as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")


def task_class(name: str) -> type[Task]:
    _import_task_modules()
    try:
        return _TASKS[name]
    except KeyError:
        raise TrainerError(f"task.name: unknown task {name!r}; known: {', '.join(sorted(_TASKS))}") from None


# Synthetic datasets: `data.datasets[*].synthetic: NAME` makes the trainer write NAME's rows into that dataset's
# path when it holds no shards yet (the demo and `make train-*` run without an upstream job). A writer takes
# (directory, rows) and writes shards + manifest; register it in a module that a task module imports.
SyntheticWriter = Callable[[Path, int], None]
_SYNTHETIC: dict[str, SyntheticWriter] = {}


def register_synthetic_dataset(name: str):
    def register(writer: SyntheticWriter) -> SyntheticWriter:
        _SYNTHETIC[name] = writer
        return writer

    return register


def synthetic_writer(name: str) -> SyntheticWriter:
    _import_task_modules()
    try:
        return _SYNTHETIC[name]
    except KeyError:
        raise TrainerError(f"unknown synthetic dataset {name!r}; known: {', '.join(sorted(_SYNTHETIC))}") from None
