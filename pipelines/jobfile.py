"""Job YAML files: load, apply `--set key=value` overrides (data_engine/config_files.py), validate into a
JobConfig."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from data_engine.config_files import apply_override, parse_override, read_yaml_mapping
from data_engine.job import JobConfig, JobConfigError, parse_job_config

JOBS_DIR = Path(__file__).parent / "jobs"


ENV_PREFIX = "env:"  # `env:NAME`: the job config is in environment variable NAME (how `submit` ships it)


def load_job_data(path: Path) -> dict[str, Any]:
    if str(path).startswith(ENV_PREFIX):
        name = str(path)[len(ENV_PREFIX):]
        if name not in os.environ:
            raise JobConfigError(f"{path}: environment variable {name} is not set")
        return yaml.safe_load(os.environ[name])
    if not path.is_file():
        raise JobConfigError(f"{path}: job file does not exist (jobs available: {', '.join(available_jobs())})")
    return read_yaml_mapping(path)


def available_jobs() -> list[str]:
    return sorted(p.name for p in JOBS_DIR.glob("*.yaml"))


def load_job(path: Path, overrides: list[str] = ()) -> JobConfig:
    data = load_job_data(path)
    for text in overrides:
        apply_override(data, *parse_override(text))
    return parse_job_config(data, source=str(path))
