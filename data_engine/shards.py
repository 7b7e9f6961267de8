"""Shard files of one stage output directory: names, the exactly-once write protocol, completion, reading.
The directory's lifecycle (claim, clean-up, manifest, lineage) is `data_engine/output_dir.py`'s.

Layout of an output directory (a local path or an object-store URI, see `data_engine.storage`):
  _job.json                 fingerprint of the job that owns the directory (config hash, input listing hash)
  part-00000.parquet        rows of shard 0
  part-00000.stats.json     per-stage counts for shard 0
  part-00000.commit         object stores only: the shard's commit marker, written last
  _manifest.json            summary over all shards, written last

Exactly once, whatever kills the job (SIGKILL included): a rerun redoes the shards that are not complete and
never duplicates or loses rows. What "complete" means depends on the filesystem:
- local: the parquet file exists under its final name. Stats sidecar, then parquet are each written to a
  temp name, fsynced and renamed into place, so a final name always holds a whole file.
- object stores (no rename): the stats sidecar and the parquet file go straight to their final keys (a put
  is all or nothing, but a crash can leave one without the other), then the commit marker is put. Listing,
  reading, the manifest and resume trust only shards with a marker; a rewrite deletes the marker first, and
  unmarked leftovers are deleted when a run resumes (or overwritten when their shard is redone).
"""

from __future__ import annotations

import errno
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from data_engine.schemas import validate_table
from data_engine.storage import Location, as_location

ShardDir = Path | str | Location  # a Path is local; a string may be a path or a storage URI
ShardFile = Path | Location  # local shard files stay Paths, as before object storage

MANIFEST_NAME = "_manifest.json"
JOB_FINGERPRINT_NAME = "_job.json"
TEMP_PREFIX = ".tmp-"
# Fault injection for the exactly-once tests: "point:seconds:marker_dir" makes the writer announce that it
# reached `point` (a marker file) and pause there, so a test can SIGKILL the job at that exact moment.
CRASHPOINT_ENV = "JOYAI_CRASHPOINT_PAUSE"
# Fault injection for the disk-full tests: the writer raises ENOSPC at the named point, as a full disk would.
ENOSPC_ENV = "JOYAI_INJECT_ENOSPC"


class ShardDirError(RuntimeError):
    """An output directory is missing, malformed, or owned by a different job."""


def shard_file_name(shard_id: int) -> str:
    return f"part-{shard_id:05d}.parquet"


def stats_file_name(shard_id: int) -> str:
    return f"part-{shard_id:05d}.stats.json"


def commit_file_name(shard_id: int) -> str:
    return f"part-{shard_id:05d}.commit"


_SHARD_FILE = re.compile(r"^part-(\d{5})\.(parquet|stats\.json|commit)$")


def _pause_at(point: str, tag: str, path: Path | str | None = None) -> None:
    if os.environ.get(ENOSPC_ENV) == point:
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (injected at {point})", str(path or tag))
    spec = os.environ.get(CRASHPOINT_ENV)
    if not spec:
        return
    wanted, seconds, marker_dir = spec.split(":", 2)
    if wanted == point:
        Path(marker_dir, f"{point}-{tag}-{os.getpid()}").touch()
        time.sleep(float(seconds))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _temp_beside(path: Path) -> Iterator[Path]:
    """A temporary name next to `path` for a file written whole, then renamed. A write that fails (a full
    disk) or is cancelled deletes it, giving the space back at once, and an OSError names the file: pyarrow's
    and a plain write()'s errors name none."""
    temp = path.with_name(f"{TEMP_PREFIX}{path.name}.{uuid.uuid4().hex}")
    try:
        yield temp
    except OSError as exc:
        temp.unlink(missing_ok=True)
        if exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(temp)) from exc
        raise
    except BaseException:  # a cancelled write (Ray cancels a failed job's other writers with KeyboardInterrupt)
        temp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path | Location, data: bytes) -> None:
    location = as_location(path)
    if not location.is_local:
        location.write_bytes(data)  # one put: the old object or the whole new one
        return
    path = location.local_path
    with _temp_beside(path) as temp, open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    _fsync_dir(path.parent)


def atomic_write_json(path: Path | Location, payload: Any, *, crashpoint: str | None = None) -> None:
    data = json.dumps(payload, indent=2, sort_keys=True).encode()
    location = as_location(path)
    if crashpoint is None or not location.is_local:
        atomic_write_bytes(location, data)
        return
    path = location.local_path
    with _temp_beside(path) as temp, open(temp, "wb") as handle:
        handle.write(data[: len(data) // 2])
        handle.flush()
        _pause_at(crashpoint, path.name)
        handle.write(data[len(data) // 2 :])
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    _fsync_dir(path.parent)


def _write_parquet(where: Path | Location, table: pa.Table, row_group_rows: int, tag: str) -> None:
    # Dictionary-encoding encoded images never pays (they are all distinct) and slows reads ~2.5x.
    dictionary_columns = [f.name for f in table.schema if not pa.types.is_binary(f.type)]
    path, filesystem = (where.path, where.filesystem) if isinstance(where, Location) else (where, None)
    with pq.ParquetWriter(path, table.schema, compression="zstd", use_dictionary=dictionary_columns,
                          filesystem=filesystem) as writer:
        for index, batch in enumerate(table.to_batches(max_chunksize=row_group_rows)):
            writer.write_batch(batch)
            if index == 0:
                _pause_at("shard_mid_write", tag, path)


def write_shard(out_dir: ShardDir, shard_id: int, table: pa.Table, stage_stats: list[dict[str, Any]],
                *, row_group_rows: int = 1024, node_id: str | None = None) -> ShardFile:
    """Write one complete shard (see the module docstring for the protocol on each kind of filesystem)."""
    out = as_location(out_dir)
    stats = {"shard": shard_id, "rows": table.num_rows, "stages": stage_stats, "node_id": node_id}
    tag = f"{shard_id:05d}"
    if not out.is_local:
        marker = out / commit_file_name(shard_id)
        marker.delete()  # rewriting a committed shard: untrusted until the new marker lands
        atomic_write_json(out / stats_file_name(shard_id), stats)
        final = out / shard_file_name(shard_id)
        _write_parquet(final, table, row_group_rows, tag)
        _pause_at("shard_before_commit", tag)
        atomic_write_json(marker, {"shard": shard_id, "rows": table.num_rows, "parquet_bytes": final.size()})
        return final
    directory = out.local_path
    atomic_write_json(directory / stats_file_name(shard_id), stats)
    final = directory / shard_file_name(shard_id)
    with _temp_beside(final) as temp:
        _write_parquet(temp, table, row_group_rows, tag)
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
    _pause_at("shard_before_rename", tag)
    os.replace(temp, final)
    _fsync_dir(directory)
    return final


def object_store_shard_files(out: Location) -> dict[str, set[int]]:
    """Shard ids by kind of file ("parquet", "stats.json", "commit") under an object-store prefix."""
    found: dict[str, set[int]] = {"parquet": set(), "stats.json": set(), "commit": set()}
    for name in out.walk_files():
        match = _SHARD_FILE.match(name)
        if match:
            found[match.group(2)].add(int(match.group(1)))
    return found


def completed_shards(out_dir: ShardDir) -> set[int]:
    out = as_location(out_dir)
    if not out.is_local:
        files = object_store_shard_files(out)
        return files["parquet"] & files["commit"]
    directory = out.local_path
    if not directory.is_dir():
        return set()
    return {int(p.name[5:10]) for p in directory.glob("part-[0-9][0-9][0-9][0-9][0-9].parquet")}




def read_shard_stats(out_dir: ShardDir, shard_id: int) -> dict[str, Any]:
    location = as_location(out_dir) / stats_file_name(shard_id)
    try:
        return json.loads(location.read_bytes())
    except (OSError, json.JSONDecodeError) as exc:
        raise ShardDirError(f"{location}: stats of a completed shard unreadable ({exc})") from exc


def shard_paths(shard_dir: ShardDir) -> list[ShardFile]:
    """The complete shards of a directory, in shard order: Paths for a local directory, Locations otherwise."""
    directory = as_location(shard_dir)
    if not directory.is_dir():
        raise ShardDirError(f"{directory}: not a directory")
    if directory.is_local:
        return sorted(directory.local_path.glob("part-[0-9][0-9][0-9][0-9][0-9].parquet"))
    return [directory / shard_file_name(shard) for shard in sorted(completed_shards(directory))]


def open_parquet(path: ShardFile) -> pq.ParquetFile:
    """A shard file (a local Path or a Location from `shard_paths`) opened for metadata and row-group reads."""
    # pre_buffer: coalesced reads of the column chunks, one ranged GET for many on an object store
    if isinstance(path, Location):
        return pq.ParquetFile(path.path, filesystem=path.filesystem, pre_buffer=True)
    return pq.ParquetFile(path, pre_buffer=True)


def read_shard(path: ShardFile, columns: list[str] | None = None) -> pa.Table:
    try:
        with open_parquet(path) as parquet:
            table = parquet.read(columns=columns)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ShardDirError(f"{path}: unreadable parquet ({exc})") from exc
    if columns is None:
        validate_table(table, where=str(path))
    return table


def iter_shards(shard_dir: ShardDir, columns: list[str] | None = None) -> Iterator[tuple[ShardFile, pa.Table]]:
    for path in shard_paths(shard_dir):
        yield path, read_shard(path, columns)


def read_manifest(shard_dir: ShardDir) -> dict[str, Any]:
    directory = as_location(shard_dir)
    location = directory / MANIFEST_NAME
    try:
        return json.loads(location.read_bytes())
    except FileNotFoundError:
        raise ShardDirError(f"{location}: no manifest; the job that writes {directory} has not finished") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ShardDirError(f"{location}: malformed manifest ({exc})") from exc
