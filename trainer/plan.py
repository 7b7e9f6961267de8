"""`python -m trainer train --config C --dry-run`: what a config would train, checked without weights or data.

The task's model is built on the meta device (shapes only: the 8B MLLM and the 16B MMDiT build on a laptop in
seconds), its parameters counted per optimizer group (`optim.group_lr` checked against them), and the data
mixture planned: rows per dataset (counted from the shards where they are readable, else the dataset's
configured `rows`), the rows one epoch draws from each (ratio x rows) and which get KL distillation. The
training length follows: `run.max_steps` as given, or for `run.epochs` the steps implied by the rows per
epoch at `samples_per_micro_batch` samples per micro-batch (the micro batch size; for packing tasks pass the
mean samples per pack). Training itself derives the exact count by planning one epoch's micro-batches at
launch (the `plan` event of train_log.jsonl).
"""

from __future__ import annotations

from dataclasses import dataclass

from trainer.config import TrainConfig
from trainer.core import TrainerError, task_class
from trainer.data import epoch_quota, index_dataset
from trainer.engine import check_group_names


@dataclass(frozen=True)
class DatasetPlan:
    name: str
    rows: int | None  # None: not readable here and not configured
    rows_from: str  # "shards", "config" (DatasetSpec.rows), "synthetic" (written at launch) or "unknown"
    ratio: float
    per_epoch: int | None
    distilled: bool


def plan_datasets(config: TrainConfig) -> list[DatasetPlan]:
    schemas = task_class(config.task.name).schemas()
    plans = []
    for spec in config.data.datasets:
        if spec.path.is_dir() and any(spec.path.glob("part-*.parquet")):
            rows, source = index_dataset(spec.path, schemas).total, "shards"
        elif spec.rows is not None:
            rows, source = spec.rows, "config"
        elif spec.synthetic is not None:
            rows, source = spec.synthetic_rows, "synthetic"
        else:
            rows, source = None, "unknown"
        per_epoch = None if rows is None else epoch_quota(spec, rows)
        plans.append(DatasetPlan(spec.name, rows, source, spec.ratio, per_epoch, spec.general_domain))
    return plans


def dry_run(config: TrainConfig, *, world_size: int = 1, samples_per_micro_batch: float | None = None) -> str:
    """The report printed by `train --dry-run`."""
    cls = task_class(config.task.name)
    model = cls.meta_model(config.task_config())
    groups = cls.parameter_groups(model)
    check_group_names(groups, config.optim)
    if any(parameter.device.type != "meta" for parameter in model.parameters()):
        raise TrainerError(f"task {cls.name}: meta_model allocated weights")
    total = sum(parameter.numel() for parameter in model.parameters())
    lines = [f"task {config.task.name}: {type(model).__name__} on the meta device, {total:,} parameters "
             f"({total / 1e9:.3f}B)"]
    lines += [f"  {name}: {sum(p.numel() for p in params):,} (lr {config.optim.group_lr.get(name, config.optim.lr):g})"
              for name, params in groups.items()]

    datasets = plan_datasets(config)
    known = all(plan.per_epoch is not None for plan in datasets)
    per_epoch = sum(plan.per_epoch for plan in datasets) if known else None
    width = max(len(plan.name) for plan in datasets)
    lines.append(f"data: {len(datasets)} datasets, "
                 + (f"{per_epoch:,} rows per epoch" if known else "rows per epoch unknown here"))
    for plan in datasets:
        rows = "?" if plan.rows is None else f"{plan.rows:,}"
        quota = "?" if plan.per_epoch is None else f"{plan.per_epoch:,}"
        share = f" ({100 * plan.per_epoch / per_epoch:5.2f}%)" if known else ""
        lines.append(f"  {plan.name:<{width}}  {rows:>12} rows ({plan.rows_from:<9}) x ratio {plan.ratio:<5g}"
                     f"= {quota:>12} per epoch{share}{'  KD' if plan.distilled else ''}")

    accumulation = config.engine.accumulation_steps(world_size)
    micro_batches = accumulation * world_size
    samples = samples_per_micro_batch or config.engine.micro_batch_size
    lines.append(f"engine: world size {world_size}, {micro_batches} micro-batches per step "
                 f"({accumulation} accumulation steps x {world_size} ranks)")
    if config.run.max_steps is not None:
        epochs = (f" = {config.run.max_steps * micro_batches * samples / per_epoch:.3g} epoch(s) at {samples:g} samples "
                  "per micro-batch") if known else ""
        lines.append(f"steps: {config.run.max_steps:,} (run.max_steps){epochs}")
    elif not known:
        unknown = next(plan.name for plan in datasets if plan.per_epoch is None)
        raise TrainerError(f"data.datasets.{unknown}: no shards here and no `rows` to plan run.epochs with")
    else:
        steps = int(config.run.epochs * per_epoch / (samples * micro_batches))
        lines.append(f"steps: {steps:,} = {config.run.epochs:g} epoch(s) x {per_epoch:,} rows / ({samples:g} samples "
                     f"per micro-batch x {micro_batches}); exact count planned from the shards at launch")
    return "\n".join(lines)
