"""`parquet_images` reader: Parquet tables whose rows hold encoded image bytes, or URIs of image files.

Items are `<file>#<row index>`, listed from the footers' row counts (no column data is read). Reading a
shard opens each file once and reads only the row groups that hold its rows, and only the one column
configured. URIs resolve only under `media_root`, a local path or a storage URI
(`data_engine.paths.resolve_media_location`); anything else is a row with reason `unsafe_uri`. A file that
cannot be opened or lacks the configured column becomes one row for the file itself (item `<file>#`).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import ClassVar, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, model_validator

from data_engine.io.containers import (WHOLE_CONTAINER, ImageRecord, container_item, group_items_by_container,
                                       image_sample_table, input_root, item_pattern, list_container_files,
                                       resolve_container)
from data_engine.paths import UnsafePathError, resolve_media_location
from data_engine.readers import Reader, ReaderConfig, register_reader
from data_engine.schemas import IMAGE_SAMPLE
from data_engine.storage import Location, resolve

_SUFFIXES = (".parquet",)
_ITEM_PATTERN = item_pattern(_SUFFIXES)


class ParquetImagesConfig(ReaderConfig):
    location_fields: ClassVar[tuple[str, ...]] = ("media_root",)

    kind: Literal["parquet_images"] = "parquet_images"
    bytes_column: str | None = None  # binary column of encoded images ...
    uri_column: str | None = None  # ... or string column of media references under media_root
    media_root: str | None = None
    max_file_bytes: int = Field(default=256 * 1024 * 1024, gt=0)  # URI mode: larger files are not read

    @model_validator(mode="after")
    def _one_image_source(self) -> ParquetImagesConfig:
        if (self.bytes_column is None) == (self.uri_column is None):
            raise ValueError("set exactly one of bytes_column and uri_column")
        if self.uri_column is not None and not self.media_root:
            raise ValueError("uri_column needs media_root: URIs resolve only under it")
        return self


class _FileError(Exception):
    """A Parquet file unusable as a whole; becomes the row of item `<file>#`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@register_reader
class ParquetImagesReader(Reader):
    """Rows of Parquet files under a directory (recursive) or of one `.parquet` file."""

    kind = "parquet_images"
    Config = ParquetImagesConfig
    schema = IMAGE_SAMPLE

    @property
    def column(self) -> str:
        return self.config.bytes_column or self.config.uri_column

    def list_items(self, input_uri: str) -> list[str]:
        location = self.location(input_uri)
        root = input_root(location)
        items = []
        for name in list_container_files(location, _SUFFIXES):
            try:
                rows = self._open(root, name).metadata.num_rows
            except _FileError:
                items.append(container_item(name, WHOLE_CONTAINER))
                continue
            items.extend(container_item(name, str(index)) for index in range(rows))
        return items

    def _open(self, root: Location, name: str) -> pq.ParquetFile:
        path = resolve_container(root, name)
        if path is None:
            raise _FileError("outside_input_root", f"{name} resolves outside {root}")
        try:
            parquet = pq.ParquetFile(path.path, filesystem=path.filesystem)
        except (OSError, pa.ArrowException) as exc:
            raise _FileError("unreadable_parquet", f"{type(exc).__name__}: {exc}") from exc
        schema = parquet.schema_arrow
        if self.column not in schema.names:
            raise _FileError("missing_column", f"no column {self.column!r}; columns: {schema.names}")
        column_type = schema.field(self.column).type
        expected = (pa.types.is_binary, pa.types.is_large_binary) if self.config.bytes_column else (
            pa.types.is_string, pa.types.is_large_string)
        if not any(check(column_type) for check in expected):
            kind = "binary" if self.config.bytes_column else "string"
            raise _FileError("bad_column_type", f"column {self.column!r} is {column_type}, expected {kind}")
        return parquet

    def read_items(self, input_uri: str, items: Sequence[str]) -> pa.Table:
        root = input_root(self.location(input_uri))
        records = []
        for name, members in group_items_by_container(items, _ITEM_PATTERN).items():
            records.extend(self._read_file(root, name, members))
        return image_sample_table(self.config, records)

    def _read_file(self, root: Location, name: str, members: list[str]) -> list[ImageRecord]:
        try:
            parquet = self._open(root, name)
            values = _column_values(parquet, self.column, members)
        except _FileError as exc:
            return [ImageRecord(container_item(name, m), reason=exc.reason, detail=str(exc)) for m in members]
        except (OSError, pa.ArrowException) as exc:  # damaged pages behind a readable footer
            return [ImageRecord(container_item(name, m), reason="unreadable_parquet",
                                detail=f"{type(exc).__name__}: {exc}") for m in members]
        return [self._record(container_item(name, m), value) for m, value in zip(members, values)]

    def _record(self, upstream_id: str, value: bytes | str | LookupError | None) -> ImageRecord:
        if isinstance(value, LookupError):
            return ImageRecord(upstream_id, reason="row_missing", detail=str(value))
        if value is None:
            return ImageRecord(upstream_id, reason="missing_image", detail=f"column {self.column!r} is null")
        if self.config.bytes_column:
            return ImageRecord(upstream_id, image_bytes=value)
        return self._read_uri(upstream_id, value)

    def _read_uri(self, upstream_id: str, uri: str) -> ImageRecord:
        try:
            location = resolve_media_location(uri, resolve(self.config.media_root, self.storage))
        except UnsafePathError as exc:
            return ImageRecord(upstream_id, image_uri=uri, reason="unsafe_uri", detail=str(exc))
        try:
            size = location.size()
            if size > self.config.max_file_bytes:
                return ImageRecord(upstream_id, image_uri=uri, reason="file_too_large",
                                   detail=f"{uri}: {size} bytes > {self.config.max_file_bytes}")
            return ImageRecord(upstream_id, image_bytes=location.read_bytes(), image_uri=uri)
        except OSError as exc:
            return ImageRecord(upstream_id, image_uri=uri, reason="unreadable", detail=f"{type(exc).__name__}: {exc}")


def _column_values(parquet: pq.ParquetFile, column: str, members: list[str]) -> list[bytes | str | LookupError | None]:
    """Values of `column` at the item rows, reading only the row groups that hold them.

    Returns a value per member, or a LookupError for the file's own item and rows past the end of the file
    (the input changed since it was listed)."""
    metadata = parquet.metadata
    starts = [0]  # first file row of each row group, then the file's row count
    for group in range(metadata.num_row_groups):
        starts.append(starts[-1] + metadata.row_group(group).num_rows)
    rows = [int(m) if m.isdigit() and int(m) < starts[-1] else None for m in members]
    group_of = {row: bisect.bisect_right(starts, row) - 1 for row in rows if row is not None}
    wanted_groups = sorted(set(group_of.values()))
    # The wanted groups are read back to back: a group's rows start after the rows of the wanted groups before it.
    first_position, position = {}, 0
    for group in wanted_groups:
        first_position[group] = position
        position += starts[group + 1] - starts[group]
    positions = [first_position[group_of[row]] + row - starts[group_of[row]] for row in rows if row is not None]
    values = iter(parquet.read_row_groups(wanted_groups, columns=[column]).column(0).take(positions).to_pylist()
                  if wanted_groups else [])
    return [next(values) if row is not None else LookupError(f"row {member!r} not in a file of {starts[-1]} rows")
            for row, member in zip(rows, members)]
