"""YAML config files and their `--set key=value` overrides, shared by job files (`pipelines/jobfile.py`) and
training configs (`trainer/config.py`), which use it without importing each other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from data_engine.job import JobConfigError


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """A config file (which must exist) as a mapping; invalid YAML is a one-line error naming file and line."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise JobConfigError(f"{path}:{where} invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise JobConfigError(f"{path}: expected a mapping at the top level")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.0.c=value` -> (["a", "b", "0", "c"], value); the value is read as YAML (numbers, bools, lists)."""
    key, separator, raw_value = text.partition("=")
    if not separator or not key.strip():
        raise JobConfigError(f"--set {text!r}: expected key=value")
    try:
        value = yaml.safe_load(raw_value) if raw_value.strip() else ""
    except yaml.YAMLError:
        value = raw_value
    return key.strip().split("."), value


def apply_override(data: dict[str, Any], path: list[str], value: Any) -> None:
    """Set a nested key; list items are addressed by index or, for `stages`, by stage name."""
    node: Any = data
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        where = ".".join(path[: depth + 1])
        if isinstance(node, list):
            index = _list_index(node, part, where)
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise JobConfigError(f"--set {'.'.join(path)}: {'.'.join(path[:depth])} is not a mapping or list")


def _list_index(items: list[Any], part: str, where: str) -> int:
    if part.isdigit():
        if int(part) >= len(items):
            raise JobConfigError(f"--set {where}: index out of range (list has {len(items)} items)")
        return int(part)
    names = [item.get("name") or item.get("op") for item in items if isinstance(item, dict)]
    if part not in names:
        raise JobConfigError(f"--set {where}: no item named {part!r}; names: {', '.join(map(str, names))}")
    return names.index(part)
