"""Runtime faults on local Ray: error budgets, empty shards, a killed actor, shards sized by bytes.

The faults that need their own Ray (an injected full disk, two runs at once) run the CLI in a subprocess, in
tests/runtime/test_fault_processes.py.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import tests.runtime.fault_ops  # noqa: F401  (registers the fault operators)
from data_engine.error_budget import ErrorBudgetExceeded
from data_engine.executor import plan_shards, run_job
from data_engine.job import parse_job_config
from data_engine.readers import InputError
from data_engine import shards
from data_engine.shards import TEMP_PREFIX, iter_shards, read_manifest
from pipelines.cli import inspect_shards


def write_images(root: Path, names: list[str], side: int = 8) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for number, name in enumerate(names):
        buffer = io.BytesIO()
        Image.new("RGB", (side + number, side), (number * 9 % 256, 40, 90)).save(buffer, "PNG")
        (root / name).write_bytes(buffer.getvalue())
    return root


def fault_job(input_dir: Path, out: Path, *, reader: dict | None = None, stage: dict | None = None, **top):
    return parse_job_config({"name": "faults", "input": str(input_dir), "output": str(out), "schema": "image_sample",
                             "reader": {"kind": "image_folder", "shard_rows": 4} | (reader or {}),
                             "stages": [{"op": "test_faults", "name": "faults"} | (stage or {})]} | top)


def rows_by_id(out: Path) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for _, table in iter_shards(out):
        for row in table.to_pylist():
            assert row["id"] not in rows, "duplicated row"
            rows[row["id"]] = row
    return rows


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    names = [f"{prefix}{i:02d}.png" for prefix in "ab" for i in range(6)]
    return write_images(tmp_path_factory.mktemp("images"), names)


# ---- 1. error budget ---------------------------------------------------------------------------------

def test_error_budget_fails_the_job_after_writing_every_shard(ray_local, images, tmp_path):
    # 6 of 12 rows (the b* files) raise: 50% error rows, over the default 1%.
    job = fault_job(images, tmp_path / "out", stage={"config": {"fail_prefix": "b"}})
    with pytest.raises(ErrorBudgetExceeded) as raised:
        run_job(job, progress=False)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("stage faults: 6 error rows of 12 (50.0% > max_error_fraction 0.01)")
    assert "error:ValueError x6: injected failure on b0" in message
    # Nothing lost: every shard and the manifest are there, the error rows among them.
    manifest = read_manifest(tmp_path / "out")
    assert manifest["rows_written"] == 12 and manifest["rejects"] == {"faults:error:ValueError": 6}
    rows = rows_by_id(tmp_path / "out")
    assert sorted(r["upstream_id"] for r in rows.values() if r["reject_reason"] == "error:ValueError") == \
        [f"b{i:02d}.png" for i in range(6)]
    # inspect lists error rows by type with one example each.
    report = inspect_shards(tmp_path / "out", sample_rows=0)
    assert list(report["errors"]) == ["faults:error:ValueError"]
    assert report["errors"]["faults:error:ValueError"]["count"] == 6
    assert report["errors"]["faults:error:ValueError"]["example"].startswith("injected failure on b0")


@pytest.mark.parametrize("where", ["stage", "job"])
def test_error_budget_is_configurable_per_stage_and_per_job(ray_local, images, tmp_path, where):
    limit = {"max_error_fraction": 0.5}
    failing = {"config": {"fail_prefix": "b"}}
    job = fault_job(images, tmp_path / "out", stage=failing | (limit if where == "stage" else {}),
                    **(limit if where == "job" else {}))
    manifest = run_job(job, progress=False)  # exactly at the limit: allowed
    assert manifest["rejects"] == {"faults:error:ValueError": 6}
    # The stage's own value wins over the job's default.
    strict = fault_job(images, tmp_path / "strict", stage={"config": {"fail_prefix": "b"}, "max_error_fraction": 0.4},
                       max_error_fraction=0.9)
    with pytest.raises(ErrorBudgetExceeded, match="> max_error_fraction 0.4"):
        run_job(strict, progress=False)


# ---- 2. empty is not an error ------------------------------------------------------------------------

def test_a_shard_without_rows_is_a_valid_zero_row_shard(ray_local, tmp_path):
    # Shard 1 (skip*) yields no rows at all; shards 0 and 2 have rows.
    names = [f"a{i}.png" for i in range(4)] + [f"skip{i}.png" for i in range(4)] + [f"z{i}.png" for i in range(2)]
    root = write_images(tmp_path / "in", names)
    job = fault_job(root, tmp_path / "out", reader={"kind": "test_skipping"})
    manifest = run_job(job, progress=False)
    assert [shard["rows"] for shard in manifest["shards"]] == [4, 0, 2]
    empty = pq.read_table(tmp_path / "out" / "part-00001.parquet")
    assert empty.num_rows == 0 and empty.schema.equals(pq.read_table(tmp_path / "out" / "part-00000.parquet").schema)
    assert "payload_bytes" in empty.column_names
    stages = {stage["name"]: stage for stage in manifest["stages"]}
    assert stages["read"]["rows_in"] == 10 and stages["faults"]["rows_in"] == 6


def test_every_row_rejected_still_writes_the_shard(ray_local, images, tmp_path):
    job = fault_job(images, tmp_path / "out", stage={"config": {"fail_prefix": ""}, "max_error_fraction": 1.0},
                    reader={"max_file_bytes": 1})  # every file is over 1 byte: all rejected by the reader
    manifest = run_job(job, progress=False)
    assert manifest["rows_written"] == 12 and manifest["rows_accepted"] == 0
    assert manifest["rejects"] == {"read:file_too_large": 12}
    assert all(row["payload_bytes"] is None for row in rows_by_id(tmp_path / "out").values())


def test_empty_input_directory_is_one_line_before_ray(tmp_path):
    (tmp_path / "empty").mkdir()
    import ray

    started_before = ray.is_initialized()
    with pytest.raises(InputError, match=r"^input .*empty: nothing to read") as raised:
        run_job(fault_job(tmp_path / "empty", tmp_path / "out"), progress=False)
    assert "\n" not in str(raised.value)
    assert ray.is_initialized() == started_before  # refused before any Ray started
    assert not (tmp_path / "out").exists()


def test_a_scene_without_qa_is_a_no_qa_row(ray_local, tmp_path):
    from pipelines.jobfile import JOBS_DIR, load_job

    # No object can show 10^9 pixels, so the pairwise distance question finds no pair to ask about.
    job = load_job(JOBS_DIR / "spatial_qa.yaml", ["input=procedural://3?seed=0", f"output={tmp_path / 'out'}",
                                                   "reader.qa.tasks=[distance]",
                                                   "reader.index.min_visible_pixels=1000000000"])
    manifest = run_job(job, progress=False)
    rows = list(rows_by_id(tmp_path / "out").values())
    assert len(rows) == 3 and manifest["rejects"] == {"read:no_qa": 3}
    assert sorted(r["upstream_id"] for r in rows) == [f"procedural/0/{i:06d}#no_qa" for i in range(3)]


# ---- 3. worker loss -----------------------------------------------------------------------------------

def test_killed_actor_holding_a_batch_is_redone(ray_local, images, tmp_path):
    clean = run_job(fault_job(images, tmp_path / "clean", stage={"op": "test_faults_actor"}), progress=False)
    hold = tmp_path / "hold"
    hold.mkdir()
    killed: list[int] = []

    def kill_the_holder() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (hold / "holder").exists():
            time.sleep(0.2)
        time.sleep(0.2)  # the pid is written right after the file is created
        pid = int((hold / "holder").read_text())
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_the_holder, daemon=True)
    killer.start()
    job = fault_job(images, tmp_path / "out", stage={"op": "test_faults_actor", "config": {"hold_dir": str(hold)}})
    manifest = run_job(job, progress=False)
    killer.join(timeout=5)
    assert killed and killed[0] != os.getpid()
    assert rows_by_id(tmp_path / "out") == rows_by_id(tmp_path / "clean")
    for key in ("rows_in", "rows_written", "rows_accepted", "rejects", "shards"):
        assert manifest[key] == clean[key], key


# ---- 6. sizes -----------------------------------------------------------------------------------------

def test_plan_shards_by_bytes_and_rows():
    items = [f"i{n}" for n in range(7)]
    sizes = [40, 40, 30, 100, 10, 10, 10]
    plans = plan_shards(items, 3, sizes, 80)
    # 40+40 fills 80; 30 alone (30+100 > 80); 100 > 80 on its own; then three 10s (row limit 3).
    assert [p.items for p in plans] == [["i0", "i1"], ["i2"], ["i3"], ["i4", "i5", "i6"]]
    assert [p.shard_id for p in plans] == [0, 1, 2, 3]
    assert [p.items for p in plan_shards(items, 3)] == [["i0", "i1", "i2"], ["i3", "i4", "i5"], ["i6"]]


def test_shard_bytes_sizes_the_shards_of_a_run(ray_local, images, tmp_path):
    sizes = {path.name: path.stat().st_size for path in images.iterdir()}
    limit = 3 * max(sizes.values())
    manifest = run_job(fault_job(images, tmp_path / "out", reader={"shard_rows": 100, "shard_bytes": limit}),
                       progress=False)
    assert manifest["rows_written"] == 12
    for shard in manifest["shards"]:
        names = pq.read_table(tmp_path / "out" / shard["file"], columns=["upstream_id"]).column(0).to_pylist()
        assert sum(sizes[name] for name in names) <= limit
    assert len(manifest["shards"]) > 1  # by rows alone, all 12 would be one shard


# ---- 4. a write stopped part-way -----------------------------------------------------------------------

def test_a_cancelled_shard_write_deletes_its_temp_file(tmp_path, monkeypatch):
    """Ray cancels a failed job's other writers with KeyboardInterrupt; what they were writing goes with them."""
    def cancelled(point: str, *_: object) -> None:
        if point == "shard_mid_write":
            raise KeyboardInterrupt

    monkeypatch.setattr(shards, "_pause_at", cancelled)
    table = pa.table({"id": [f"r{n}" for n in range(3000)]})
    with pytest.raises(KeyboardInterrupt):
        shards.write_shard(tmp_path, 0, table, [], row_group_rows=1024)
    assert not list(tmp_path.glob(f"{TEMP_PREFIX}*"))
    assert shards.completed_shards(tmp_path) == set()


def test_a_run_deletes_the_temp_file_of_a_writer_killed_mid_write(ray_local, images, tmp_path):
    clean = run_job(fault_job(images, tmp_path / "clean", stage={"op": "test_faults_actor"}), progress=False)
    out = tmp_path / "out"
    job = fault_job(images, out, stage={"op": "test_faults_actor", "config": {"die_writing_into": str(out)}})
    run_job(job, progress=False)
    assert (tmp_path / "out.died").exists()  # a worker did die, leaving its temp behind
    assert not list(out.glob(f"{TEMP_PREFIX}*"))
    assert rows_by_id(out) == rows_by_id(tmp_path / "clean")
    assert read_manifest(out)["rows_written"] == clean["rows_written"]
