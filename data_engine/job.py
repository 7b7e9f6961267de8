"""Typed job configuration, validated at load time with one-line errors that name the field."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import (BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator,
                      model_validator)

from data_engine.curation.presets import PresetName
from data_engine.readers import ImageFolderConfig, ReaderConfig
from data_engine.registry import READER_MODULES, STAGE_MODULES, reader_class, stage_class
from data_engine.schemas import schema_names
from data_engine.stage import Resources, Stage, StageConfig
from data_engine.storage import StorageConfig, StorageError, check_allowed


class JobConfigError(ValueError):
    """A job configuration is invalid; str() is one line naming the field."""


class StageSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    op: str
    name: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    resources: dict[str, Any] = Field(default_factory=dict)
    # Most error:<Type> rows (the stage raised) this stage may leave, as a fraction of the rows it processed;
    # None: the job's max_error_fraction. Not part of the config hash: it judges rows, it does not make them.
    max_error_fraction: float | None = Field(default=None, ge=0, le=1)

    @field_validator("op")
    @classmethod
    def _known_op(cls, op: str) -> str:
        if op not in STAGE_MODULES:
            raise ValueError(f"unknown op {op!r}; allowed: {', '.join(sorted(STAGE_MODULES))}")
        return op

    @model_validator(mode="after")
    def _validate_nested(self) -> StageSpec:
        stage_cls = stage_class(self.op)
        self.config = _validated_dump(stage_cls.Config, self.config, f"{self.op}.config")
        merged = stage_cls.default_resources.model_dump() | self.resources
        self.resources = _validated_dump(Resources, merged, f"{self.op}.resources")
        self.name = self.name or self.op
        return self

    def stage_config(self) -> StageConfig:
        return stage_class(self.op).Config.model_validate(self.config)

    def build(self) -> Stage:
        return stage_class(self.op)(self.stage_config(), self.name)

    def stage_resources(self) -> Resources:
        return Resources.model_validate(self.resources)


class RayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str | None = None  # None: start a local Ray; "auto" or ray://host:port for a cluster
    num_cpus: int | None = None  # local Ray only; declared so a small machine never oversubscribes
    object_store_memory: int | None = None  # bytes, local Ray only


class JobConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    input: str
    output: str
    schema_name: str = Field(alias="schema")
    # Table 4 training-stage preset for every stage whose config takes one; a stage's own `preset` wins.
    preset: PresetName | None = None
    # SerializeAsAny: dump the reader kind's own fields, not only the base class's.
    reader: SerializeAsAny[ReaderConfig] = Field(default_factory=ImageFolderConfig)
    stages: list[StageSpec]
    ray: RayConfig = Field(default_factory=RayConfig)
    # Where data may live and how to reach object stores (allow-list, endpoints); never part of the config hash.
    storage: StorageConfig = Field(default_factory=StorageConfig)
    row_group_rows: int = Field(default=1024, gt=0)
    # Default error budget of every stage (see data_engine/error_budget.py); a stage's own value wins.
    max_error_fraction: float = Field(default=0.01, ge=0, le=1)

    @model_validator(mode="before")
    @classmethod
    def _preset_into_stages(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("preset") or not isinstance(data.get("stages"), list):
            return data
        stages = []
        for stage in data["stages"]:
            if isinstance(stage, dict) and stage.get("op") in STAGE_MODULES and \
                    "preset" in stage_class(stage["op"]).Config.model_fields:
                stage = stage | {"config": {"preset": data["preset"]} | (stage.get("config") or {})}
            stages.append(stage)
        return data | {"stages": stages}

    @field_validator("reader", mode="before")
    @classmethod
    def _reader_of_its_kind(cls, data: Any) -> ReaderConfig:
        """Validate the reader section against the config class of the reader kind it names."""
        if isinstance(data, ReaderConfig):
            return data
        if not isinstance(data, dict):
            raise ValueError("expected a mapping")
        kind = data.get("kind", ImageFolderConfig().kind)
        if kind not in READER_MODULES:
            raise ValueError(f"unknown reader kind {kind!r}; allowed: {', '.join(sorted(READER_MODULES))}")
        config_cls = reader_class(kind).Config
        try:
            return config_cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            message = first["msg"].removeprefix("Value error, ")
            raise ValueError(f"{kind}.{_format_location(first['loc'])}: {message}") from None

    @field_validator("schema_name")
    @classmethod
    def _known_schema(cls, name: str) -> str:
        if name not in schema_names():
            raise ValueError(f"unknown schema {name!r}; allowed: {', '.join(schema_names())}")
        return name

    @model_validator(mode="after")
    def _reader_emits_the_schema(self) -> JobConfig:
        emitted = reader_class(self.reader.kind).schema.name
        if emitted != self.schema_name:
            raise ValueError(f"schema: reader {self.reader.kind} emits {emitted} rows, not {self.schema_name}")
        return self

    @model_validator(mode="after")
    def _locations_allowed(self) -> JobConfig:
        """Every storage location the job names passes the allow-lists, so a refusal comes before Ray starts."""
        named = {"output": self.output}
        if not reader_class(self.reader.kind).generates_input(self.input):
            named["input"] = self.input
        named |= {f"reader.{field}": getattr(self.reader, field) for field in self.reader.location_fields}
        for field, where in named.items():
            if where:
                try:
                    check_allowed(where, self.storage)
                except StorageError as exc:
                    raise ValueError(f"{field}: {exc}") from None
        return self

    @model_validator(mode="after")
    def _unique_stage_names(self) -> JobConfig:
        names = [s.name for s in self.stages]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"stage names must be unique; repeated: {duplicated}")
        return self

    def result_config(self) -> dict[str, Any]:
        """The part of the config that determines the rows (not where or how fast they are computed)."""
        return {
            "name": self.name,
            "input": self.input,
            "schema": self.schema_name,
            "preset": self.preset,
            "reader": self.reader.model_dump(mode="json"),
            "stages": [{"op": s.op, "name": s.name, "config": s.config} for s in self.stages],
        }

    def config_hash(self) -> str:
        canonical = json.dumps(self.result_config(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def _validated_dump(model: type[BaseModel], data: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate a nested section, re-raising with the section's path so the one-line error names the field."""
    try:
        return model.model_validate(data).model_dump(mode="json")
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        raise ValueError(f"{where}.{_format_location(first['loc'])}: {message}") from None


def _format_location(location: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in location) or "<root>"


def parse_job_config(data: Any, *, source: str = "job") -> JobConfig:
    if not isinstance(data, dict):
        raise JobConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return JobConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        more = f" (and {exc.error_count() - 1} more errors)" if exc.error_count() > 1 else ""
        # Checks across fields have no location of their own; their message names the fields.
        where = f"{_format_location(first['loc'])}: " if first["loc"] else ""
        raise JobConfigError(f"{source}: {where}{message}{more}") from None
