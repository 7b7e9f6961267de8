"""The demo job run as a user runs it (the CLI in a subprocess with its own local Ray), killed with SIGKILL and
resumed, and compared with an uninterrupted run: shared by the exactly-once and the process-fault tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from data_engine.shards import iter_shards, read_manifest

REPO = Path(__file__).resolve().parents[2]


def start_job(corpus: Path, out: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": str(REPO)} | (extra_env or {})
    command = [sys.executable, "-m", "pipelines", "run", str(REPO / "pipelines/jobs/demo.yaml"), "--no-progress",
               "--out", str(out), "--set", f"input={corpus}", "--set", "reader.shard_rows=6",
               "--set", "ray.num_cpus=2"]
    # A new session holds the driver and every process of the local Ray it starts (Ray workers move to
    # process groups of their own, but stay in the session), so the test can kill the whole job.
    return subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout: float = 240) -> None:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-3000:]


def kill_job(process: subprocess.Popen) -> None:
    """SIGKILL every process in the job's session: the driver, Ray's daemons and its workers."""
    subprocess.run(["pkill", "-9", "-s", str(process.pid)], check=False)
    process.communicate(timeout=60)


def rows_of(out: Path) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for _, table in iter_shards(out):
        for row in table.to_pylist():
            assert row["id"] not in rows, f"row {row['id']} duplicated"
            rows[row["id"]] = row
    return rows


class Reference(NamedTuple):
    """An uninterrupted run: what every interrupted one must end up writing."""

    out: Path
    rows: dict[str, dict]
    manifest: dict
    seconds: float


def assert_same_as_reference(out: Path, reference: Reference) -> None:
    assert rows_of(out) == reference.rows
    resumed = read_manifest(out)
    for key in ("rows_in", "rows_written", "rows_accepted", "rejects", "config_hash", "shards"):
        assert resumed[key] == reference.manifest[key], key
