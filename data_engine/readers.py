"""Input readers: list a job's input into items on the driver, read a shard's items into rows on a worker.

Listing is sorted and deterministic, so shard i always holds the same items and a rerun can skip the
shards that are already complete. A member that cannot be read becomes a row with a reason.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath
from typing import ClassVar, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from data_engine.schemas import IMAGE_SAMPLE, ShardSchema
from data_engine.storage import Location, StorageConfig, resolve, split_scheme

# Magic bytes of the image formats we decode; used for files whose extension is not an image one.
# Files the decoder then refuses (ICO, HEIF) are listed too, so they show up as rows with a reason.
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*",
                b"\x00\x00\x01\x00")
DEFAULT_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif", ".heic", ".ico")


class InputError(ValueError):
    """The job's input cannot be listed (missing root, not a directory)."""


# `procedural://N?seed=S`: N generated items of stream S, listed as `procedural/<S>/<index>` (readers that
# generate their inputs, and the stages that rebuild an item from its id, share this one spelling).
PROCEDURAL_URI = re.compile(r"^procedural://(?P<count>\d+)(\?seed=(?P<seed>\d+))?$")
PROCEDURAL_ITEM_PREFIX = "procedural/"


def procedural_items(input_uri: str) -> list[str] | None:
    """The items of a `procedural://N?seed=S` input; None for an input that is not `procedural://`;
    InputError for a malformed one."""
    if not input_uri.startswith("procedural://"):
        return None
    match = PROCEDURAL_URI.match(input_uri)
    if not match:
        raise InputError(f"input {input_uri!r}: expected procedural://N or procedural://N?seed=S")
    seed = int(match["seed"] or 0)
    return [f"{PROCEDURAL_ITEM_PREFIX}{seed}/{index:06d}" for index in range(int(match["count"]))]


def procedural_item(item: str) -> tuple[int, int] | None:
    """(seed, index) of a `procedural/<S>/<index>` item; None for any other item."""
    if not item.startswith(PROCEDURAL_ITEM_PREFIX):
        return None
    seed, index = item.removeprefix(PROCEDURAL_ITEM_PREFIX).split("/")
    return int(seed), int(index)


class ReaderConfig(BaseModel):
    """Fields every reader has; each reader kind subclasses it with its own fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Fields that name storage locations; the job checks them against the storage allow-list.
    location_fields: ClassVar[tuple[str, ...]] = ()

    kind: str
    shard_rows: int = Field(default=256, gt=0)  # items per output shard
    # Also close a shard before its input bytes would pass this (readers that know their items' sizes), so
    # shards of large images stay small; a single larger item is a shard of its own.
    shard_bytes: int | None = Field(default=None, gt=0)
    source_dataset: str = "local"
    license: str = "unknown"


class ImageFolderConfig(ReaderConfig):
    kind: Literal["image_folder"] = "image_folder"
    extensions: tuple[str, ...] = DEFAULT_IMAGE_EXTENSIONS
    sniff_content: bool = True  # also take files with other extensions whose bytes start like an image
    max_file_bytes: int = 256 * 1024 * 1024


def row_id(source_dataset: str, upstream_id: str) -> str:
    return hashlib.sha256(f"{source_dataset}\x00{upstream_id}".encode()).hexdigest()[:32]


def _looks_like_image(location: Location) -> bool:
    try:
        with location.open_input() as handle:
            head = handle.read(16)
    except OSError:
        return False
    is_webp = head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    is_iso_media = head[4:8] == b"ftyp"  # AVIF / HEIF
    return head.startswith(_IMAGE_MAGIC) or is_webp or is_iso_media


class Reader(ABC):
    """Lists a job's input into item keys (driver) and turns a shard's items into rows (worker).

    A reader may emit any number of rows per item (a scene can yield many QA rows); rows of one shard
    must be deterministic given its items, so reruns reproduce them exactly.
    """

    kind: ClassVar[str]
    Config: ClassVar[type[ReaderConfig]]
    schema: ClassVar[ShardSchema]
    # URI schemes of inputs the reader interprets itself (`procedural://`); every other input is a storage
    # location, checked against the allow-list.
    input_schemes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: ReaderConfig, storage: StorageConfig | None = None) -> None:
        self.config = config
        self.storage = storage or StorageConfig()

    @classmethod
    def generates_input(cls, input_uri: str) -> bool:
        """Whether the reader makes its items itself from this input (`procedural://N`): no storage location."""
        return split_scheme(input_uri)[0] in cls.input_schemes

    def location(self, input_uri: str) -> Location:
        """The input as a Location (a path or a filesystem URI), checked against the storage allow-list."""
        return resolve(input_uri, self.storage)

    @abstractmethod
    def list_items(self, input_uri: str) -> list[str]:
        """Deterministic, sorted item keys of the input (runs on the driver)."""

    @abstractmethod
    def read_items(self, input_uri: str, items: Sequence[str]) -> pa.Table:
        """Rows of the job's base schema for these items (runs on a worker)."""

    def item_bytes(self, input_uri: str, items: Sequence[str]) -> list[int] | None:
        """Input bytes of each item, for `shard_bytes` (runs on the driver); None: sizes unknown."""
        return None


class ImageFolderReader(Reader):
    """Images under a directory tree, by extension and, optionally, by content sniffing."""

    kind = "image_folder"
    Config = ImageFolderConfig
    schema = IMAGE_SAMPLE

    def list_items(self, input_uri: str) -> list[str]:
        root = self.location(input_uri)
        extensions = {e.lower() for e in self.config.extensions}

        def is_image(name: str) -> bool:
            if PurePosixPath(name).suffix.lower() in extensions:
                return True
            return self.config.sniff_content and _looks_like_image(root / name)

        return list_input_files(root, is_image)

    def item_bytes(self, input_uri: str, items: Sequence[str]) -> list[int]:
        root = self.location(input_uri)
        return [(root / item).size() for item in items]

    def read_items(self, input_uri: str, items: Sequence[str]) -> pa.Table:
        root = self.location(input_uri)
        columns: dict[str, list] = {f.name: [] for f in self.schema.fields}
        for item in items:
            payload, reason, detail = self._read_one(root, item)
            row = dict.fromkeys(columns)
            row.update(id=row_id(self.config.source_dataset, item), source_dataset=self.config.source_dataset,
                       upstream_id=item, license=self.config.license, image_bytes=payload,
                       reject_reason=reason, reject_detail=detail, reject_stage="read" if reason else None)
            for name in columns:
                columns[name].append(row[name])
        return pa.table(columns, schema=self.schema.arrow())

    def _read_one(self, root: Location, item: str) -> tuple[bytes | None, str | None, str | None]:
        location = root / item
        if not root.contains(location):
            return None, "outside_input_root", f"{item} resolves outside {root}"
        try:
            size = location.size()
            if size > self.config.max_file_bytes:
                return None, "file_too_large", f"{size} bytes > {self.config.max_file_bytes}"
            return location.read_bytes(), None, None
        except OSError as exc:
            return None, "unreadable", f"{type(exc).__name__}: {exc}"


def list_input_files(root: Location, accept: Callable[[str], bool]) -> list[str]:
    """Sorted relative POSIX paths of the files below the input directory `root` (recursive, links to
    directories not followed) that `accept`, given the relative path, takes."""
    if not root.is_dir():
        raise InputError(f"input {root}: not a directory")
    return sorted(name for name in root.walk_files() if accept(name))


READERS: dict[str, type[Reader]] = {}


def register_reader(cls: type[Reader]) -> type[Reader]:
    if cls.kind in READERS and READERS[cls.kind] is not cls:
        raise ValueError(f"reader kind {cls.kind!r} registered twice")
    READERS[cls.kind] = cls
    return cls


register_reader(ImageFolderReader)


def make_reader(config: ReaderConfig, storage: StorageConfig | None = None) -> Reader:
    from data_engine.registry import reader_class  # the kind's module may not be imported yet

    return reader_class(config.kind)(config, storage)
