"""`tar` reader: WebDataset-style tar shards (`key.jpg` + `key.json` + ...), read in memory, never extracted.

Members are grouped into samples by the WebDataset convention: the key is the member path up to the first
dot of its file name, the rest is the field (`a/b.seg.png` -> key `a/b`, field `seg.png`). One item (and one
row) per key; its image is the member whose field is the first of `image_fields` present. Other fields (the
JSON sidecar, labels) are not read: `image_sample` has no column for them.

Rows with reasons instead of crashes or silent gaps: an image member that is a link, a device, a FIFO or has
an absolute or `..` name (`unsafe_member_name`, `link_member`, `special_member`), a key without an image
field, a field present twice, a member too large or truncated, and a tar that cannot be opened or that stops
on a corrupt header (one row for the tar itself, item `<tar>#`).

Listing reads headers only (an uncompressed tar is scanned by seeking over member data). Reading a shard
opens each tar once and makes one pass over it; a `.tar.gz` is decompressed on each pass, so give gzip
inputs a `shard_rows` of at least their samples per tar.
"""

from __future__ import annotations

import contextlib
import tarfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Literal

import pyarrow as pa
from pydantic import Field

from data_engine.io.containers import (WHOLE_CONTAINER, ImageRecord, container_item, group_items_by_container,
                                       image_sample_table, input_root, item_pattern, list_container_files,
                                       resolve_container)
from data_engine.readers import DEFAULT_IMAGE_EXTENSIONS, Reader, ReaderConfig, register_reader
from data_engine.schemas import IMAGE_SAMPLE
from data_engine.storage import Location

# What a damaged archive raises from tarfile, gzip and zlib.
_ARCHIVE_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error)
_SCAN_CHUNK = 1 << 20


class TarConfig(ReaderConfig):
    kind: Literal["tar"] = "tar"
    image_fields: tuple[str, ...] = tuple(e.lstrip(".") for e in DEFAULT_IMAGE_EXTENSIONS)  # in order of preference
    tar_suffixes: tuple[str, ...] = (".tar", ".tar.gz", ".tgz")
    max_member_bytes: int = Field(default=256 * 1024 * 1024, gt=0)


def sample_key(member_name: str) -> tuple[str, str]:
    """(key, field) of a member by the WebDataset convention; field is lower-cased, "" without a dot."""
    directory, slash, name = member_name.rpartition("/")
    stem, _, suffix = name.partition(".")
    return f"{directory}{slash}{stem}", suffix.lower()


class ContainerError(Exception):
    """A tar that cannot be opened or read to its end; becomes the row of item `<tar>#`."""


def _iter_members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """Members in archive order; raises ContainerError where the archive is damaged, including a corrupt
    header in the middle, which tarfile itself takes for the end of the archive."""
    try:
        for member in tar:
            yield member
        tail = _nonzero_tail_offset(tar)
    except _ARCHIVE_ERRORS as exc:
        raise ContainerError(_one_line(exc)) from exc
    if tail is not None:
        raise ContainerError(f"unreadable header at byte {tail} of the archive; later members are lost")


def _nonzero_tail_offset(tar: tarfile.TarFile) -> int | None:
    """Where non-zero data follows the end-of-archive marker tarfile stopped at, or None (a clean end)."""
    offset = tar.offset
    tar.fileobj.seek(offset)
    while chunk := tar.fileobj.read(_SCAN_CHUNK):
        if chunk.strip(b"\0"):
            return offset
        offset += len(chunk)
    return None


@contextlib.contextmanager
def _open(location: Location) -> Iterator[tarfile.TarFile]:
    with contextlib.ExitStack() as stack:
        try:
            handle = stack.enter_context(location.open_input())
            tar = stack.enter_context(tarfile.open(fileobj=handle, mode="r:*"))
        except _ARCHIVE_ERRORS as exc:
            raise ContainerError(_one_line(exc)) from exc
        yield tar


def _one_line(exc: BaseException) -> str:
    """tarfile lists each compression it tried on its own line; reject details are one line."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())


@dataclass
class _Sample:
    """Members of one wanted key seen in a pass, and the bytes (or read error) of its image candidates."""

    members: dict[str, list[tarfile.TarInfo]] = field(default_factory=dict)
    payloads: dict[int, bytes | str] = field(default_factory=dict)  # by member header offset


@register_reader
class TarReader(Reader):
    """WebDataset / plain tar shards under a directory (recursive) or one `.tar` / `.tar.gz` file."""

    kind = "tar"
    Config = TarConfig
    schema = IMAGE_SAMPLE

    def list_items(self, input_uri: str) -> list[str]:
        location = self.location(input_uri)
        root = input_root(location)
        items = []
        for tar_name in list_container_files(location, self.config.tar_suffixes):
            items.extend(container_item(tar_name, key) for key in self._list_keys(root, tar_name))
        return items

    def _list_keys(self, root: Location, tar_name: str) -> list[str]:
        keys: set[str] = set()
        path = resolve_container(root, tar_name)
        if path is None:
            return [WHOLE_CONTAINER]
        try:
            with _open(path) as tar:
                # update() adds member by member, so the keys before a damaged spot stay listed
                keys.update(sample_key(m.name)[0] for m in _iter_members(tar) if not m.isdir())
        except ContainerError:
            keys.add(WHOLE_CONTAINER)
        return sorted(keys)

    def read_items(self, input_uri: str, items: Sequence[str]) -> pa.Table:
        root = input_root(self.location(input_uri))
        records = []
        for tar_name, keys in group_items_by_container(items, item_pattern(self.config.tar_suffixes)).items():
            records.extend(self._read_tar(root, tar_name, keys))
        return image_sample_table(self.config, records)

    def _read_tar(self, root: Location, tar_name: str, keys: list[str]) -> list[ImageRecord]:
        path = resolve_container(root, tar_name)
        if path is None:
            return [ImageRecord(container_item(tar_name, key), reason="outside_input_root",
                                detail=f"{tar_name} resolves outside {root}") for key in keys]
        samples, failure = self._scan(path, set(keys))
        return [self._record(tar_name, key, samples.get(key), failure) for key in keys]

    def _scan(self, path: Location, wanted: set[str]) -> tuple[dict[str, _Sample], str | None]:
        """One pass over the tar: the members of the wanted keys and the bytes of their image candidates."""
        samples: dict[str, _Sample] = {}
        image_fields = {f.lower() for f in self.config.image_fields}
        try:
            with _open(path) as tar:
                for member in _iter_members(tar):
                    key, field_name = sample_key(member.name)
                    if member.isdir() or key not in wanted:
                        continue
                    sample = samples.setdefault(key, _Sample())
                    sample.members.setdefault(field_name, []).append(member)
                    if field_name in image_fields and self._refusal(member) is None:
                        sample.payloads[member.offset] = _read_member(tar, member)
        except ContainerError as exc:
            return samples, str(exc)
        return samples, None

    def _record(self, tar_name: str, key: str, sample: _Sample | None, failure: str | None) -> ImageRecord:
        upstream_id = container_item(tar_name, key)
        if key == WHOLE_CONTAINER:
            return ImageRecord(upstream_id, reason="unreadable_tar",
                               detail=failure or "listed as unreadable but read cleanly now: the input changed")
        if sample is None:
            detail = f"stopped early: {failure}" if failure else "not in the tar any more: the input changed"
            return ImageRecord(upstream_id, reason="member_missing", detail=detail)
        present = [f for f in self.config.image_fields if f.lower() in sample.members]
        if not present:
            return ImageRecord(upstream_id, reason="no_image_member",
                               detail=f"fields {sorted(sample.members)}, none of {list(self.config.image_fields)}")
        candidates = sample.members[present[0].lower()]
        if len(candidates) > 1:
            return ImageRecord(upstream_id, reason="duplicate_member",
                               detail=f"{len(candidates)} members named {candidates[0].name!r}")
        member = candidates[0]
        refusal = self._refusal(member)
        if refusal is not None:
            return ImageRecord(upstream_id, reason=refusal[0], detail=f"{member.name!r}: {refusal[1]}")
        payload = sample.payloads[member.offset]
        if isinstance(payload, str):
            return ImageRecord(upstream_id, reason="unreadable_member", detail=f"{member.name!r}: {payload}")
        return ImageRecord(upstream_id, image_bytes=payload)

    def _refusal(self, member: tarfile.TarInfo) -> tuple[str, str] | None:
        """Why this image member is not read: (reason, detail), or None for a plain file of a sane name."""
        name = PurePosixPath(member.name)
        if name.is_absolute() or ".." in name.parts:
            return "unsafe_member_name", "absolute or '..' path"
        if member.issym() or member.islnk():
            return "link_member", f"link to {member.linkname!r}"
        if not member.isfile():
            return "special_member", f"tar type {member.type!r} is not a regular file"
        if member.size > self.config.max_member_bytes:
            return "member_too_large", f"{member.size} bytes > {self.config.max_member_bytes}"
        return None


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes | str:
    """The member's bytes, or the error reading them (a truncated archive)."""
    try:
        handle = tar.extractfile(member)
        data = handle.read() if handle is not None else b""
    except _ARCHIVE_ERRORS as exc:
        return _one_line(exc)
    if len(data) != member.size:
        return f"{len(data)} of {member.size} bytes"
    return data
