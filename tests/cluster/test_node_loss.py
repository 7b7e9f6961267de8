"""Losing the worker node of the two-node cluster mid-job: the job either completes on the head or fails with
one line, and the rerun completes exactly once, equal to a local run. This module gets a cluster of its own
(the fixture is module-scoped), since the test kills half of it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_engine.executor import run_job
from data_engine.shards import completed_shards, read_manifest
from pipelines.jobfile import JOBS_DIR, load_job
from tests.cluster.test_cluster import REPO, cluster, rows_by_id, shipped, submitter_env  # noqa: F401

pytestmark = pytest.mark.slow


def worker_node_session(gcs_address: str) -> int:
    """The session of the fixture's worker node: `ray start --block --address=<this cluster's GCS>` leads it
    (started in a session of its own), and its raylet and workers stay in it."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"start" in cmdline and f"--address={gcs_address}".encode() in cmdline:
            return os.getsid(int(entry.name))
    raise AssertionError(f"no worker node of {gcs_address} found")


def test_worker_node_killed_mid_job_then_rerun_completes_once(cluster, shipped, tmp_path):
    local_out, out = tmp_path / "local", tmp_path / "cluster"
    overrides = [f"input={shipped.corpus}", "reader.shard_rows=2"]
    run_job(load_job(JOBS_DIR / "demo.yaml", overrides + [f"output={local_out}"]), progress=False)
    command = [sys.executable, "-m", "pipelines", "run", str(JOBS_DIR / "demo.yaml"), "--no-progress", "--out",
               str(out), "--address", cluster.gcs] + [arg for o in overrides for arg in ("--set", o)]
    job = subprocess.Popen(command, cwd=REPO, env=submitter_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    deadline = time.monotonic() + 240
    while not completed_shards(out):  # mid-job: the first shard is written, most are not
        assert time.monotonic() < deadline and job.poll() is None, "the job never wrote a shard"
        time.sleep(0.1)
    # SIGKILL the worker node: its raylet and every worker on it.
    subprocess.run(["pkill", "-9", "-s", str(worker_node_session(cluster.gcs))], check=False)
    _, stderr = job.communicate(timeout=400)
    if job.returncode != 0:
        lines = stderr.strip().splitlines()
        assert lines[-1].startswith(f"error: {out}: "), stderr[-3000:]
        assert "Traceback" not in stderr, stderr[-3000:]
    finish = subprocess.run(command, cwd=REPO, env=submitter_env(), capture_output=True, text=True, timeout=400)
    assert finish.returncode == 0, finish.stderr[-3000:]
    assert rows_by_id(out) == rows_by_id(local_out)
    manifest = read_manifest(out)
    assert manifest["rows_written"] == sum(1 for _ in rows_by_id(local_out))
