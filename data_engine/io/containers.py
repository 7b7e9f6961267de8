"""What the container readers share: finding container files under the input, naming items inside them, and
building `image_sample` rows.

An item is `<container path relative to the input root>#<member>`; the member part is empty for the item that
stands for the container itself when it cannot be listed (a corrupt tar, a Parquet file without a footer), so
that failure becomes one row with a reason instead of a crash or a silent gap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from data_engine.readers import InputError, ReaderConfig, list_input_files, row_id
from data_engine.schemas import IMAGE_SAMPLE
from data_engine.storage import Location

WHOLE_CONTAINER = ""  # member part of the item that reports a container-level failure


@dataclass(frozen=True)
class ImageRecord:
    """One output row before it becomes Arrow: the item it came from and either bytes or a reason."""

    upstream_id: str
    image_bytes: bytes | None = None
    image_uri: str | None = None
    reason: str | None = None
    detail: str | None = None


def input_root(input: Location) -> Location:
    """The directory item paths are relative to: the input itself, or the folder of a single input file."""
    return input.parent if input.is_file() else input


def list_container_files(input: Location, suffixes: Sequence[str]) -> list[str]:
    """Sorted paths (relative to `input_root`) of the files with one of `suffixes`: a directory is walked
    recursively, a single file must itself have one of the suffixes."""
    lowered = tuple(s.lower() for s in suffixes)
    if input.is_file():
        if not input.name.lower().endswith(lowered):
            raise InputError(f"input {input}: not a directory and not a file ending in {', '.join(suffixes)}")
        return [input.name]
    if not input.is_dir():
        raise InputError(f"input {input}: no such file or directory")
    return list_input_files(input, lambda name: name.lower().endswith(lowered))


def resolve_container(root: Location, relative: str) -> Location | None:
    """A listed container file, or None when it resolves outside the input root (a symlink)."""
    location = root / relative
    return location if root.contains(location) else None


def container_item(container: str, member: str) -> str:
    return f"{container}#{member}"


def item_pattern(suffixes: Sequence[str]) -> re.Pattern[str]:
    """Splits an item at the first '#' that follows a container suffix (member names may contain '#')."""
    alternatives = "|".join(re.escape(s) for s in sorted(suffixes, key=len, reverse=True))
    return re.compile(rf"^(.*?(?:{alternatives}))#(.*)$", re.IGNORECASE | re.DOTALL)


def group_items_by_container(items: Iterable[str], pattern: re.Pattern[str]) -> dict[str, list[str]]:
    """Member parts per container, containers in first-seen order (the shard's order)."""
    groups: dict[str, list[str]] = {}
    for item in items:
        match = pattern.match(item)
        if match is None:
            raise ValueError(f"item {item!r} does not name a container file and a member")
        groups.setdefault(match.group(1), []).append(match.group(2))
    return groups


def image_sample_table(config: ReaderConfig, records: Sequence[ImageRecord]) -> pa.Table:
    """`image_sample` rows as the folder reader makes them: provenance, raw bytes, and a `read` reject."""
    columns: dict[str, list] = {f.name: [None] * len(records) for f in IMAGE_SAMPLE.fields}
    for index, record in enumerate(records):
        values = {
            "id": row_id(config.source_dataset, record.upstream_id), "source_dataset": config.source_dataset,
            "upstream_id": record.upstream_id, "license": config.license, "image_bytes": record.image_bytes,
            "image_uri": record.image_uri, "reject_reason": record.reason, "reject_detail": record.detail,
            "reject_stage": "read" if record.reason else None,
        }
        for name, value in values.items():
            columns[name][index] = value
    return pa.table(columns, schema=IMAGE_SAMPLE.arrow())
