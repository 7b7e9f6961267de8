"""Shard files of one stage output directory: atomic writes, completion, stats sidecars, manifest.

Layout of an output directory:
  _job.json                 fingerprint of the job that owns the directory (config hash, input listing hash)
  part-00000.parquet        rows of shard 0, present only when complete (written to a temp name, renamed)
  part-00000.stats.json     per-stage counts for shard 0, renamed into place before the parquet file
  _manifest.json            summary over all shards, written last

A shard is complete exactly when its parquet file exists under its final name, so a rerun after any crash
(SIGKILL included) redoes incomplete shards and never duplicates or loses rows.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from data_engine.schemas import validate_table

MANIFEST_NAME = "_manifest.json"
JOB_FINGERPRINT_NAME = "_job.json"
_TEMP_PREFIX = ".tmp-"
# Fault injection for the exactly-once tests: "point:seconds:marker_dir" makes the writer announce that it
# reached `point` (a marker file) and pause there, so a test can SIGKILL the job at that exact moment.
CRASHPOINT_ENV = "JOYAI_CRASHPOINT_PAUSE"


class ShardDirError(RuntimeError):
    """An output directory is missing, malformed, or owned by a different job."""


def shard_file_name(shard_id: int) -> str:
    return f"part-{shard_id:05d}.parquet"


def stats_file_name(shard_id: int) -> str:
    return f"part-{shard_id:05d}.stats.json"


def _pause_at(point: str, tag: str) -> None:
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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    temp = path.with_name(f"{_TEMP_PREFIX}{path.name}.{uuid.uuid4().hex}")
    with open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, payload: Any, *, crashpoint: str | None = None) -> None:
    data = json.dumps(payload, indent=2, sort_keys=True).encode()
    if crashpoint is None:
        atomic_write_bytes(path, data)
        return
    temp = path.with_name(f"{_TEMP_PREFIX}{path.name}.{uuid.uuid4().hex}")
    with open(temp, "wb") as handle:
        handle.write(data[: len(data) // 2])
        handle.flush()
        _pause_at(crashpoint, path.name)
        handle.write(data[len(data) // 2 :])
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    _fsync_dir(path.parent)


def write_shard(out_dir: Path, shard_id: int, table: pa.Table, stage_stats: list[dict[str, Any]],
                *, row_group_rows: int = 1024, node_id: str | None = None) -> Path:
    """Write one complete shard: stats sidecar first, then the parquet file under a temp name, then rename."""
    atomic_write_json(out_dir / stats_file_name(shard_id), {"shard": shard_id, "rows": table.num_rows,
                                                              "stages": stage_stats, "node_id": node_id})
    final = out_dir / shard_file_name(shard_id)
    temp = final.with_name(f"{_TEMP_PREFIX}{final.name}.{uuid.uuid4().hex}")
    tag = f"{shard_id:05d}"
    # Dictionary-encoding encoded images never pays (they are all distinct) and slows reads ~2.5x.
    dictionary_columns = [f.name for f in table.schema if not pa.types.is_binary(f.type)]
    with pq.ParquetWriter(temp, table.schema, compression="zstd", use_dictionary=dictionary_columns) as writer:
        for index, batch in enumerate(table.to_batches(max_chunksize=row_group_rows)):
            writer.write_batch(batch)
            if index == 0:
                _pause_at("shard_mid_write", tag)
    with open(temp, "rb+") as handle:
        os.fsync(handle.fileno())
    _pause_at("shard_before_rename", tag)
    os.replace(temp, final)
    _fsync_dir(out_dir)
    return final


def completed_shards(out_dir: Path) -> set[int]:
    if not out_dir.is_dir():
        return set()
    return {int(p.name[5:10]) for p in out_dir.glob("part-[0-9][0-9][0-9][0-9][0-9].parquet")}


def remove_stale_temps(out_dir: Path) -> int:
    """Delete temp files left by a killed run; they are never read, this only reclaims space."""
    stale = list(out_dir.glob(f"{_TEMP_PREFIX}*")) if out_dir.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def read_shard_stats(out_dir: Path, shard_id: int) -> dict[str, Any]:
    path = out_dir / stats_file_name(shard_id)
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ShardDirError(f"{path}: stats of a completed shard unreadable ({exc})") from exc


def shard_paths(shard_dir: Path) -> list[Path]:
    if not shard_dir.is_dir():
        raise ShardDirError(f"{shard_dir}: not a directory")
    return sorted(shard_dir.glob("part-[0-9][0-9][0-9][0-9][0-9].parquet"))


def read_shard(path: Path, columns: list[str] | None = None) -> pa.Table:
    try:
        table = pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ShardDirError(f"{path}: unreadable parquet ({exc})") from exc
    if columns is None:
        validate_table(table, where=str(path))
    return table


def iter_shards(shard_dir: Path, columns: list[str] | None = None) -> Iterator[tuple[Path, pa.Table]]:
    for path in shard_paths(shard_dir):
        yield path, read_shard(path, columns)


def read_manifest(shard_dir: Path) -> dict[str, Any]:
    path = shard_dir / MANIFEST_NAME
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ShardDirError(f"{path}: no manifest; the job that writes {shard_dir} has not finished") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ShardDirError(f"{path}: malformed manifest ({exc})") from exc
