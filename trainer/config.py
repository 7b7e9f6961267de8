"""Typed training configs (one YAML file per run) with `--set key=value` overrides and one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from data_engine.config_files import apply_override, parse_override, read_yaml_mapping  # as job files do
from data_engine.job import JobConfigError
from trainer.core import TaskConfig, TrainerError, synthetic_writer, task_class

CONFIGS_DIR = Path(__file__).parent / "configs"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskSelection(_Strict):
    name: str
    config: dict[str, Any] = Field(default_factory=dict)


class DatasetSpec(_Strict):
    name: str
    path: Path
    # Per-dataset sampling ratio: one epoch draws ratio x (accepted rows) rows from this dataset (1: every row
    # once; 0.5: half; 2: twice), whatever the other datasets' sizes (trainer/data.py).
    ratio: float = Field(1.0, gt=0)
    # The source's size as documented (e.g. the report's count); `train --dry-run` plans with it where the
    # shards are not readable. Training always counts the shards.
    rows: int | None = Field(None, ge=1)
    general_domain: bool = False  # KL distillation applies to these samples only
    # When set and `path` holds no shards, the trainer writes this synthetic dataset there first (demo, tests).
    synthetic: str | None = None
    synthetic_rows: int = Field(64, ge=1)


class DataConfig(_Strict):
    datasets: list[DatasetSpec] = Field(min_length=1)
    seed: int = 0
    window: int = Field(256, ge=1)  # rows read ahead for planning micro-batches (the packing lookahead)

    @model_validator(mode="after")
    def _unique_names(self) -> DataConfig:
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"dataset names must be unique, got {names}")
        return self


class OptimConfig(_Strict):
    lr: float = Field(5e-5, gt=0)
    group_lr: dict[str, float] = Field(default_factory=dict)  # task parameter group -> its learning rate
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    grad_clip: float = Field(1.0, ge=0)  # 0 = off


class EngineConfig(_Strict):
    zero_stage: Literal[0, 1, 2, 3] = 1
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    backend: Literal["auto", "gloo", "nccl"] = "auto"  # auto: nccl on GPU, gloo on CPU
    micro_batch_size: int = Field(1, ge=1)
    grad_accum_steps: int = Field(1, ge=1)
    # Set instead of grad_accum_steps to keep the global batch whatever the world size: accumulation steps =
    # global_batch_size / (micro_batch_size x world size).
    global_batch_size: int | None = Field(None, ge=1)
    activation_checkpointing: bool = False

    @model_validator(mode="after")
    def _one_way_to_size_the_batch(self) -> EngineConfig:
        if self.global_batch_size is not None and self.grad_accum_steps != 1:
            raise ValueError("set either global_batch_size or grad_accum_steps, not both")
        return self

    def accumulation_steps(self, world_size: int) -> int:
        if self.global_batch_size is None:
            return self.grad_accum_steps
        per_step = self.micro_batch_size * world_size
        if self.global_batch_size % per_step:
            raise TrainerError(f"engine.global_batch_size: {self.global_batch_size} is not a multiple of "
                               f"micro_batch_size x world size = {per_step}")
        return self.global_batch_size // per_step


class RunConfig(_Strict):
    out_dir: Path
    # The training length: optimizer steps, or epochs of the data mixture (steps derived at launch by
    # planning one epoch's micro-batches, logged as the `plan` event). Exactly one of the two.
    max_steps: int | None = Field(None, ge=1)
    epochs: float | None = Field(None, gt=0)
    save_every: int = Field(0, ge=0)  # 0: save only at the end
    log_every: int = Field(1, ge=1)
    seed: int = 0
    resume: bool = True  # continue from the latest checkpoint in out_dir when there is one
    progress: bool = True
    tensorboard: bool = True

    @model_validator(mode="after")
    def _one_length(self) -> RunConfig:
        if (self.max_steps is None) == (self.epochs is None):
            raise ValueError("set exactly one of run.max_steps and run.epochs")
        return self


class TrainConfig(_Strict):
    task: TaskSelection
    data: DataConfig
    optim: OptimConfig = Field(default_factory=OptimConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    run: RunConfig

    def task_config(self) -> TaskConfig:
        model = task_class(self.task.name).config_model
        try:
            return model.model_validate(self.task.config)
        except ValidationError as exc:
            raise TrainerError(f"task.config.{first_validation_error(exc)}") from None


def first_validation_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or "<root>"
    more = f" (and {exc.error_count() - 1} more errors)" if exc.error_count() > 1 else ""
    return f"{location}: {first['msg'].removeprefix('Value error, ')}{more}"


def load_config_data(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise TrainerError(f"{path}: config file does not exist")
    try:
        return read_yaml_mapping(path)  # the same YAML reading and one-line syntax errors as job files
    except JobConfigError as exc:
        raise TrainerError(str(exc)) from None


def parse_config(data: dict[str, Any], *, source: str = "config") -> TrainConfig:
    try:
        config = TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise TrainerError(f"{source}: {first_validation_error(exc)}") from None
    try:
        config.task_config()
        for index, spec in enumerate(config.data.datasets):
            if spec.synthetic is not None:
                try:
                    synthetic_writer(spec.synthetic)
                except TrainerError as exc:
                    raise TrainerError(f"data.datasets.{index}.synthetic: {exc}") from None
    except TrainerError as exc:
        raise TrainerError(f"{source}: {exc}") from None
    return config


def load_config(path: Path, overrides: list[str] = (), data_dir: Path | None = None) -> TrainConfig:
    """Read a YAML config, apply `--set` overrides (and `--data DIR`: train on that one directory)."""
    data = load_config_data(path)
    for text in overrides:
        try:
            apply_override(data, *parse_override(text))
        except JobConfigError as exc:
            raise TrainerError(str(exc)) from None
    if data_dir is not None:
        data.setdefault("data", {})["datasets"] = [{"name": data_dir.name, "path": str(data_dir)}]
    return parse_config(data, source=str(path))
