"""Run a job on Ray Data: input listing -> shards -> reader -> stages -> atomic shard writes -> manifest.

The executor builds and runs the dataset; the output directory's lifecycle (claim, clean-up, resume, manifest,
lineage, summary) is `data_engine/output_dir.py`'s, the shard file protocol `data_engine/shards.py`'s.

How scheduling maps onto Ray:
- One Ray block is one output shard. Blocks are never split (`target_max_block_size = None`) and every
  operator takes whole blocks (`batch_size=None`), sub-batching inside by the stage's own batch size; the
  writer groups rows by their `_shard` column, so merged blocks would still be written correctly.
- Pure stages are Ray tasks (Ray fuses consecutive ones with the reader and writer into one task per
  shard); stages with `uses_model` are actor pools, so `setup()` loads the model once per actor.
- Per-stage counts travel with the rows (a JSON list on the first row of each shard) into the shard's
  stats sidecar, so a resumed run still reports the work of the shards it skipped. A shard whose items yield
  no rows has no row to travel on: its read task writes it, a zero-row shard with the schema.
- After the manifest, each stage's `error:*` rows are held against its error budget (data_engine/error_budget.py).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from data_engine.job import JobConfig, StageSpec
from data_engine.error_budget import check_error_budget, error_fraction_limits
from data_engine.nodes import NODES_READY, check_nodes, setup_failure, stage_setup_failed
from data_engine.output_dir import (build_manifest, job_fingerprint, open_output_dir, output_lock,
                                    remove_stale_temps, summary_lines, write_manifest)
from data_engine.readers import InputError, make_reader
from data_engine.registry import job_registrations, register_json
from data_engine.schemas import conform_table, get_schema
from data_engine.shards import ShardDirError, completed_shards, read_manifest, shard_file_name, write_shard
from data_engine.stage import Stage, StageStats
from data_engine.stage_runner import apply_stage
from data_engine.storage import Location, StorageConfig, resolve

SHARD_COLUMN = "_shard"
STATS_COLUMN = "_stage_stats"
INTERNAL_COLUMNS = (SHARD_COLUMN, STATS_COLUMN)


@dataclass(frozen=True)
class ShardPlan:
    shard_id: int
    items: list[str]


def plan_shards(items: list[str], shard_rows: int, item_bytes: list[int] | None = None,
                shard_bytes: int | None = None) -> list[ShardPlan]:
    """Consecutive items, at most `shard_rows` per shard and, with sizes, at most `shard_bytes` of input (an
    item larger than that is a shard of its own)."""
    if item_bytes is None or shard_bytes is None:
        return [ShardPlan(i // shard_rows, items[i:i + shard_rows]) for i in range(0, len(items), shard_rows)]
    plans: list[ShardPlan] = []
    current: list[str] = []
    current_bytes = 0
    for item, size in zip(items, item_bytes, strict=True):
        if current and (len(current) == shard_rows or current_bytes + size > shard_bytes):
            plans.append(ShardPlan(len(plans), current))
            current, current_bytes = [], 0
        current.append(item)
        current_bytes += size
    if current:
        plans.append(ShardPlan(len(plans), current))
    return plans


def output_schema(job: JobConfig, stages: list[Stage]) -> pa.Schema:
    extra = tuple(field for stage in stages for field in stage.output_fields())
    return get_schema(job.schema_name).arrow(extra)


# ---- worker side -------------------------------------------------------------------------------------

_WORKER_STAGES: dict[str, Stage] = {}


def _stage_for_worker(spec_json: str, registrations: str) -> Stage:
    """Build and set up a stage once per worker process (Ray reuses task workers across tasks)."""
    stage = _WORKER_STAGES.get(spec_json)
    if stage is None:
        register_json(registrations)
        spec = StageSpec.model_validate_json(spec_json)
        try:
            stage = spec.build()
            _setup_on_node_once(stage, spec_json)
            stage.setup()
        except Exception as exc:  # a configuration problem met on this node: one line naming stage and node
            raise stage_setup_failed(spec.name, exc) from exc
        _WORKER_STAGES[spec_json] = stage
    return stage


def _setup_on_node_once(stage: Stage, spec_json: str) -> None:
    key = hashlib.sha256(spec_json.encode()).hexdigest()[:16]
    lock_dir = Path(tempfile.gettempdir(), "joyai-node-setup")
    lock_dir.mkdir(exist_ok=True)
    done_marker = lock_dir / f"{key}.done"
    with open(lock_dir / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done_marker.exists():
            stage.setup_on_node()
            done_marker.touch()


def _shard_groups(block: pa.Table) -> Iterator[pa.Table]:
    shard_ids = block.column(SHARD_COLUMN)
    if block.num_rows and pc.min_max(shard_ids)["min"] == pc.min_max(shard_ids)["max"]:
        yield block
        return
    for shard_id in pc.unique(shard_ids).to_pylist():
        yield block.filter(pc.equal(shard_ids, shard_id))


def _append_stats(group: pa.Table, stats: StageStats) -> pa.Table:
    column = group.column(STATS_COLUMN).to_pylist()
    if not column or column[0] is None:
        raise RuntimeError("shard split across Ray blocks: its first row (with stats) is missing")
    column[0] = json.dumps(json.loads(column[0]) + [stats.to_json()])
    position = group.column_names.index(STATS_COLUMN)
    return group.set_column(position, STATS_COLUMN, pa.array(column, type=pa.string()))


def _run_stage_on_block(stage: Stage, batch_size: int, block: pa.Table) -> pa.Table:
    processed = []
    for group in _shard_groups(block):
        table, stats = apply_stage(stage, group, batch_size)
        processed.append(_append_stats(table, stats))
    return pa.concat_tables(processed) if processed else block


def run_task_stage(block: pa.Table, spec_json: str, registrations: str, batch_size: int) -> pa.Table:
    return _run_stage_on_block(_stage_for_worker(spec_json, registrations), batch_size, block)


class StageActor:
    """Actor-pool wrapper for model stages: setup() (model load) happens once, in the constructor."""

    def __init__(self, spec_json: str, registrations: str, batch_size: int) -> None:
        self.stage = _stage_for_worker(spec_json, registrations)
        self.batch_size = batch_size

    def __call__(self, block: pa.Table) -> pa.Table:
        return _run_stage_on_block(self.stage, self.batch_size, block)


def read_shards(plans: pa.Table, job_json: str, registrations: str, writer_args: tuple) -> pa.Table:
    register_json(registrations)
    job = JobConfig.model_validate_json(job_json)
    reader = make_reader(job.reader, job.storage)
    tables = []
    for shard_id, items in zip(plans.column("shard").to_pylist(), plans.column("items").to_pylist()):
        started = time.perf_counter()
        table = reader.read_items(job.input, items)
        reasons = table.column("reject_reason").to_pylist()
        stats = StageStats("read", rows_in=len(items), rows_out=sum(r is None for r in reasons))
        stats.add_rejects(reasons)
        stats.seconds = time.perf_counter() - started
        if table.num_rows == 0:
            # No row can carry this shard through the stages, so it is written here: a valid zero-row shard
            # with the schema, and zero counts for every stage.
            stage_stats = [stats.to_json()] + [StageStats(spec.name).to_json() for spec in job.stages]
            _write_one_shard(shard_id, table, stage_stats, *writer_args)
            first_row_stats: list[str | None] = []
        else:
            first_row_stats = [json.dumps([stats.to_json()])] + [None] * (table.num_rows - 1)
        table = table.append_column(SHARD_COLUMN, pa.array([shard_id] * table.num_rows, type=pa.int64()))
        tables.append(table.append_column(STATS_COLUMN, pa.array(first_row_stats, type=pa.string())))
    return pa.concat_tables(tables)


def _write_one_shard(shard_id: int, rows: pa.Table, stage_stats: list[dict[str, Any]], out_dir: str,
                     storage_json: str, schema_bytes: bytes, row_group_rows: int) -> int:
    import ray

    out = resolve(out_dir, StorageConfig.model_validate_json(storage_json))
    schema = pa.ipc.read_schema(pa.py_buffer(schema_bytes))
    # A shard without rows never went through the stages that add columns: it is the schema, empty.
    rows = conform_table(rows, schema, where=shard_file_name(shard_id)) if rows.num_rows else schema.empty_table()
    write_shard(out, shard_id, rows, stage_stats, row_group_rows=row_group_rows,
                node_id=ray.get_runtime_context().get_node_id())
    return rows.num_rows


def write_shards(block: pa.Table, *writer_args: Any) -> pa.Table:
    written: dict[str, list[int]] = {"shard": [], "rows": []}
    for group in _shard_groups(block):
        shard_id = group.column(SHARD_COLUMN)[0].as_py()
        stage_stats = json.loads(group.column(STATS_COLUMN)[0].as_py())
        rows = _write_one_shard(shard_id, group.drop_columns(list(INTERNAL_COLUMNS)), stage_stats, *writer_args)
        written["shard"].append(shard_id)
        written["rows"].append(rows)
    return pa.table({name: pa.array(values, type=pa.int64()) for name, values in written.items()})


# ---- driver side -------------------------------------------------------------------------------------

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def project_pythonpath() -> str:
    """PYTHONPATH with this checkout first: child processes (Ray workers, trainer runs) import the project from
    the clone without installing it."""
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    return os.pathsep.join(filter(None, [str(PROJECT_ROOT), *(p for p in paths if p != str(PROJECT_ROOT))]))


def init_local_ray(num_cpus: int | None = None, object_store_memory: int | None = None) -> None:
    """Start a single-machine Ray that workers of this checkout can import the project from."""
    import ray

    # A one-machine Ray otherwise advertises the host's interface address; keep all its traffic on loopback.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    # Workers inherit the driver's environment.
    os.environ["PYTHONPATH"] = project_pythonpath()
    ray.init(num_cpus=num_cpus or os.cpu_count(), object_store_memory=object_store_memory,
             include_dashboard=False, log_to_driver=True)


def joins_cluster(job: JobConfig, address: str | None) -> bool:
    """Whether this run connects to a running Ray (a cluster) rather than starting or reusing a local one."""
    import ray

    return not ray.is_initialized() and bool(address or os.environ.get("RAY_ADDRESS") or job.ray.address)


@contextlib.contextmanager
def ray_session(job: JobConfig, address: str | None) -> Iterator[None]:
    """Use a running Ray (tests share one), a cluster address, or start a local Ray sized by the job."""
    import ray

    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS") or job.ray.address
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        init_local_ray(job.ray.num_cpus, job.ray.object_store_memory)
    try:
        yield
    finally:
        ray.shutdown()


def _build_dataset(job: JobConfig, specs_and_stages: list[tuple[StageSpec, Stage]], pending: list[ShardPlan],
                   out_dir: Location, schema: pa.Schema, registrations: str, progress: bool) -> Any:
    import ray
    from ray.data import DataContext

    context = DataContext.get_current()
    context.target_max_block_size = None  # a block is a whole shard; never split it
    context.enable_progress_bars = progress
    # Per-operator reservations keep actor pools and readers from starving each other. When every stage is a
    # task, reader, stages and writer fuse into one operator, and the reservation only idles CPUs (measured:
    # 2 workers on 2 cores went from 1.2x to 1.6x a plain loop without it).
    context.op_resource_reservation_enabled = any(stage.uses_model for _, stage in specs_and_stages)
    ds = ray.data.from_items([{"shard": p.shard_id, "items": p.items} for p in pending],
                             override_num_blocks=len(pending))
    writer_args = (str(out_dir), job.storage.model_dump_json(), schema.serialize().to_pybytes(), job.row_group_rows)
    ds = ds.map_batches(read_shards, fn_args=(job.model_dump_json(by_alias=True), registrations, writer_args),
                        batch_size=None, batch_format="pyarrow", num_cpus=1)
    for spec, stage in specs_and_stages:
        resources = spec.stage_resources()
        common: dict[str, Any] = dict(batch_size=None, batch_format="pyarrow", num_cpus=resources.num_cpus,
                                      num_gpus=resources.num_gpus or None, memory=resources.memory)
        if stage.uses_model:
            ds = ds.map_batches(StageActor,
                                fn_constructor_args=(spec.model_dump_json(), registrations, resources.batch_size),
                                concurrency=resources.concurrency or 1, **common)
        else:
            ds = ds.map_batches(run_task_stage, fn_args=(spec.model_dump_json(), registrations, resources.batch_size),
                                concurrency=resources.concurrency, **common)
    return ds.map_batches(write_shards, fn_args=writer_args, batch_size=None, batch_format="pyarrow", num_cpus=1)


def run_job(job: JobConfig, *, out_dir: Path | str | None = None, address: str | None = None,
            progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a job; returns the manifest it wrote. `out_dir` (a path or URI) overrides job.output.

    Raises ErrorBudgetExceeded after writing every shard and the manifest when a stage's error rows exceed
    its max_error_fraction."""
    started_wall = time.time()
    started = time.perf_counter()
    out = resolve(str(out_dir or job.output), job.storage)
    reader = make_reader(job.reader, job.storage)
    specs_and_stages = [(spec, spec.build()) for spec in job.stages]
    on_cluster = joins_cluster(job, address)
    if not on_cluster:  # a local Ray's workers see this process's environment; a cluster's nodes are checked below
        for _, stage in specs_and_stages:
            stage.preflight()
    schema = output_schema(job, [stage for _, stage in specs_and_stages])
    items = reader.list_items(job.input)
    if not items:
        raise InputError(f"input {job.input}: nothing to read (no {job.reader.kind} items found)")
    item_bytes = reader.item_bytes(job.input, items) if job.reader.shard_bytes else None
    plans = plan_shards(items, job.reader.shard_rows, item_bytes, job.reader.shard_bytes)
    # With shard_bytes the sizes decide the shard boundaries, so a resize must not pass for the same listing.
    listing = items if item_bytes is None else [f"{item}\t{size}" for item, size in zip(items, item_bytes)]
    listing_hash = hashlib.sha256("\n".join(listing).encode()).hexdigest()

    with _disk_full_in_one_line(out), output_lock(out):
        done = open_output_dir(out, job_fingerprint(job, listing_hash))
        pending = [p for p in plans if p.shard_id not in done]
        _log(f"[{job.name}] {len(items)} items in {len(plans)} shards; {len(done)} already complete, "
             f"{len(pending)} to run -> {out}")
        if pending:
            # Workers never run the composition root (pipelines/registry.py): the job's registrations travel with it.
            registrations = job_registrations(job.reader.kind, [spec.op for spec in job.stages])
            with _temps_removed_after(out), ray_session(job, address):
                if on_cluster:
                    nodes = check_nodes([spec.model_dump_json() for spec, _ in specs_and_stages], registrations)
                    _log(f"[{job.name}] {NODES_READY} {len(nodes)} ({', '.join(nodes)})")
                _execute(_build_dataset(job, specs_and_stages, pending, out, schema, registrations, progress), out)
            _log(f"[{job.name}] wrote {len(completed_shards(out) - done)} shards")
        missing = [p.shard_id for p in plans if p.shard_id not in completed_shards(out)]
        if missing:
            raise ShardDirError(f"{out}: shards {missing[:10]} were not written; rerun to resume")

        manifest = build_manifest(job, out, [p.shard_id for p in plans], items_count=len(items),
                                  listing_hash=listing_hash)
        manifest["timings"] = {
            "started": datetime.fromtimestamp(started_wall, timezone.utc).isoformat(),
            "finished": datetime.now(timezone.utc).isoformat(),
            "wall_seconds": round(time.perf_counter() - started, 3),
            "shards_run": len(pending),
            "shards_skipped": len(plans) - len(pending),
        }
        write_manifest(out, manifest, crashpoint="manifest_mid_write")
        finalizing = [stage for _, stage in specs_and_stages
                      if type(stage).finalize_output is not Stage.finalize_output]
        for stage in finalizing:
            _log(f"[{job.name}] {stage.name}: pass over all shards")
            # Local outputs stay Paths for the stages' passes; object-store ones go as Locations (data_engine.shards).
            stage.finalize_output(out.local_path if out.is_local else out)
        if finalizing:
            manifest = read_manifest(out)
    for line in summary_lines(manifest):
        _log(line)
    check_error_budget(manifest, error_fraction_limits(job), out)
    return manifest


@contextlib.contextmanager
def _temps_removed_after(out: Location) -> Iterator[None]:
    """Once the run's Ray session is over, still under the run's lock, the temp files of writers that died
    mid-write (a worker killed and its shard redone, or a failed run's writers stopped with their workers) are
    deleted: a writer deletes its own temp only when its write fails or is cancelled. Local outputs only: a temp
    deleted under a writer that outlived a failed run only fails its rename, whereas on an object store an
    uncommitted shard deleted under such a writer could gain its commit marker afterwards."""
    try:
        yield
    finally:
        if out.is_local:
            remove_stale_temps(out)


@contextlib.contextmanager
def _disk_full_in_one_line(out: Location) -> Iterator[None]:
    """A full disk, wherever the output's files are written (a shard in a worker, the lock, the job's
    fingerprint or the manifest here), becomes one line naming the output; the writer of a failed file has
    already deleted it (data_engine.shards)."""
    try:
        yield
    except Exception as exc:
        full = _disk_full_file(exc)
        if full is None:
            raise
        raise ShardDirError(f"{out}: no space left on device writing {full}; free space and rerun to resume "
                            "(complete shards are kept)") from None


def _execute(dataset: Any, out: Location) -> None:
    """Drive the streaming execution (the writer emits one row per shard written)."""
    try:
        for _ in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            pass
    except Exception as exc:
        failure = setup_failure(exc)
        if failure is not None:
            raise failure from None  # the worker's traceback is in its log; the user gets the one line
        lost = _lost_to_the_cluster(exc)
        if lost is not None:
            raise ShardDirError(f"{out}: {lost} after Ray's retries; rerun to resume (complete shards are kept)"
                                ) from None
        raise


def _lost_to_the_cluster(exc: BaseException) -> str | None:
    """A node, worker or object Ray could not recover (its retries exhausted), as a few words."""
    from ray import exceptions

    lost = (exceptions.NodeDiedError, exceptions.WorkerCrashedError, exceptions.ActorDiedError,
            exceptions.ObjectLostError, exceptions.OwnerDiedError, exceptions.ActorUnavailableError)
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, lost):
            return f"lost a Ray {type(current).__name__.removesuffix('Error')}"
        current = current.__cause__ or current.__context__
    return None


_DISK_FULL = re.compile(r"\[Errno 28\][^\n]*?(?:: '([^'\n]+)')?$", re.MULTILINE)


def _disk_full_file(exc: BaseException) -> str | None:
    """The file a full disk stopped, from what Ray raised: a worker's exception reaches the driver wrapped, and
    often only as text, so the chain's messages are searched for ENOSPC (pyarrow's own reports have no errno).
    In a worker's traceback the error that names the file (data_engine.shards adds the name) comes last."""
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return str(current.filename or "a shard")
        text = str(current)
        named = [match.group(1) for match in _DISK_FULL.finditer(text) if match.group(1)]
        if named or _DISK_FULL.search(text) or os.strerror(errno.ENOSPC) in text:
            return named[-1] if named else "a shard"
        current = current.__cause__ or current.__context__
    return None


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
