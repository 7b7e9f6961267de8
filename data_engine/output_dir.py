"""The lifecycle of a job's output directory, in the order a run goes through it.

0. lock: `_lock` is held (flock) for the whole run, so a second run on the same directory refuses in one line;
   the kernel releases it when its holder dies, so a killed run never leaves it stuck;
1. claim: `_job.json` records the fingerprint of the job that owns the directory (config hash, input listing,
   sharding, schema); a different job is refused, so two configurations never mix shards;
2. clean: what a killed run left half-done is deleted (temp files locally, uncommitted shard files on object
   stores);
3. resume: completed shards (`data_engine.shards.completed_shards`) are skipped, the rest are written by the
   executor's workers with `data_engine.shards.write_shard`;
4. manifest: `_manifest.json`, written last and atomically, sums the shards' stats sidecars and records the
   config, the input and its upstream lineage; `write_manifest` is the one writer of every manifest, including
   outputs written without the executor (`standalone_manifest`: the trainer's synthetic datasets);
5. summary: the per-stage lines a run prints.

The layout of the files themselves and the exactly-once write protocol are `data_engine/shards.py`'s.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from data_engine.job import JobConfig
from data_engine.lineage import upstream_record
from data_engine.schemas import ShardSchema, get_schema
from data_engine.shards import (JOB_FINGERPRINT_NAME, MANIFEST_NAME, TEMP_PREFIX, ShardDir, ShardDirError,
                                atomic_write_json, completed_shards, object_store_shard_files, read_shard_stats,
                                shard_file_name, stats_file_name)
from data_engine.stage import StageStats
from data_engine.storage import Location, StorageConfig, as_location, is_storage_uri, resolve


def job_fingerprint(job: JobConfig, listing_hash: str) -> dict[str, Any]:
    """What makes an output directory's shards interchangeable: same rows config, same input, same sharding."""
    return {"config_hash": job.config_hash(), "listing_hash": listing_hash, "shard_rows": job.reader.shard_rows,
            "shard_bytes": job.reader.shard_bytes, "schema": job.schema_name}


LOCK_NAME = "_lock"


@contextlib.contextmanager
def output_lock(out_dir: Location) -> Iterator[None]:
    """Hold the directory for one run. An flock dies with its holder (SIGKILL included), so a killed run
    never leaves the directory locked; the file's text (pid, host, start) only names the holder in the
    refusal. Object stores have no lock: two runs there must be kept apart by whoever starts them."""
    if not out_dir.is_local:
        yield
        return
    out_dir.make_dirs()
    # Opened without truncating: the holder's text must survive a refused open.
    with open(out_dir.local_path / LOCK_NAME, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown holder"
            raise ShardDirError(f"{out_dir} is in use by another run ({holder}); wait for it or use another "
                                "--out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                     f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}\n")
        handle.flush()
        yield


def claim_output_dir(out_dir: Location, fingerprint: dict[str, Any]) -> None:
    """An output directory belongs to one job configuration and input listing; refuse to mix two."""
    path = out_dir / JOB_FINGERPRINT_NAME
    if path.exists():
        try:
            existing = json.loads(path.read_bytes())
        except json.JSONDecodeError as exc:
            raise ShardDirError(f"{path}: malformed ({exc}); delete the output directory to start over") from exc
        differing = sorted(k for k in fingerprint if existing.get(k) != fingerprint[k])
        if differing:
            raise ShardDirError(
                f"{out_dir} holds shards of a different job ({', '.join(differing)} differ); "
                "use another --out or delete it"
            )
        return
    atomic_write_json(path, fingerprint)


def replace_fingerprint(out_dir: ShardDir, fingerprint: dict[str, Any]) -> None:
    """Hand the directory to a new configuration of its job (redecide: same rows, other thresholds)."""
    atomic_write_json(as_location(out_dir) / JOB_FINGERPRINT_NAME, fingerprint)


def remove_stale_temps(out_dir: ShardDir) -> int:
    """Delete what a killed run left half-done: temp files (local) or uncommitted shard files (object
    stores). They are never read; this only reclaims space. Call it only while no writer is running."""
    out = as_location(out_dir)
    if not out.is_local:
        files = object_store_shard_files(out)
        stale = [out / name(shard) for name, kind in ((shard_file_name, "parquet"), (stats_file_name, "stats.json"))
                 for shard in files[kind] - files["commit"]]
        for location in stale:
            location.delete()
        return len(stale)
    directory = out.local_path
    stale = list(directory.glob(f"{TEMP_PREFIX}*")) if directory.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def open_output_dir(out_dir: Location, fingerprint: dict[str, Any]) -> set[int]:
    """Create, claim and clean the directory for a run (under `output_lock`); returns the shard ids already
    complete."""
    out_dir.make_dirs()
    claim_output_dir(out_dir, fingerprint)
    remove_stale_temps(out_dir)
    return completed_shards(out_dir)


def build_manifest(job: JobConfig, out: ShardDir, shard_ids: Sequence[int], *, items_count: int,
                   listing_hash: str) -> dict[str, Any]:
    """The manifest of a job's output from its shards' stats sidecars (timings are the caller's)."""
    order = ["read"] + [spec.name for spec in job.stages]
    totals = {name: StageStats(name) for name in order}
    shards = []
    shards_per_node: dict[str, int] = {}
    for shard_id in shard_ids:
        shard_stats = read_shard_stats(out, shard_id)
        shards.append({"file": shard_file_name(shard_id), "rows": shard_stats["rows"]})
        node = shard_stats.get("node_id") or "unknown"
        shards_per_node[node] = shards_per_node.get(node, 0) + 1
        for entry in shard_stats["stages"]:
            totals[entry["name"]].merge(StageStats.from_json(entry))
    rejects = {f"{name}:{reason}": count for name in order for reason, count in sorted(totals[name].rejects.items())}
    rows_written = sum(s["rows"] for s in shards)
    return {
        "schema": {"name": job.schema_name, "version": get_schema(job.schema_name).version},
        "job": job.name,
        "stage_output": order[-1],
        "config": job.model_dump(mode="json", by_alias=True),
        "config_hash": job.config_hash(),
        "input": {"uri": job.input, "n_items": items_count, "listing_hash": listing_hash,
                  "upstream": upstream_record(job.input, job.storage)},
        "rows_in": items_count,
        "rows_written": rows_written,
        "rows_accepted": rows_written - sum(rejects.values()),
        "rejects": rejects,
        "stages": [totals[name].to_json() for name in order],
        "shards": shards,
        "shards_per_node": shards_per_node,  # which Ray node wrote each shard, for cluster runs
    }


def standalone_manifest(schema: ShardSchema, job: str, config: dict[str, Any], shard_rows: Sequence[int],
                        rejects: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The manifest of an output written without the executor (shards 0..n-1 with these row counts)."""
    shards = [{"file": shard_file_name(shard_id), "rows": rows} for shard_id, rows in enumerate(shard_rows)]
    manifest = {"schema": {"name": schema.name, "version": schema.version}, "job": job, "config": config,
                "rows_written": sum(shard_rows), "shards": shards}
    if rejects is not None:
        manifest |= {"rows_accepted": sum(shard_rows) - sum(rejects.values()), "rejects": dict(rejects)}
    return manifest


def write_manifest(out_dir: ShardDir, manifest: dict[str, Any], *, crashpoint: str | None = None) -> None:
    """Write `_manifest.json` last and atomically: a directory with a manifest is a finished output."""
    atomic_write_json(as_location(out_dir) / MANIFEST_NAME, manifest, crashpoint=crashpoint)


def summary_lines(manifest: dict[str, Any]) -> list[str]:
    lines = []
    for stage in manifest["stages"]:
        rejects = ", ".join(f"{reason}={count}" for reason, count in stage["rejects"].items()) or "none"
        rate = f"{stage['rows_per_s']:.1f} rows/s" if stage["rows_per_s"] else "- rows/s"
        lines.append(f"  {stage['name']}: {stage['rows_in']} in, {stage['rows_out']} out, {rate}; rejects: {rejects}")
    lines.append(f"  total: {manifest['rows_written']} rows written, {manifest['rows_accepted']} accepted")
    return lines
