"""Exactly once: SIGKILL the whole job at chosen and random moments, rerun, compare with an uninterrupted run.

The chosen moments are reached through the writer's crashpoint hook (it announces the point with a
marker file and pauses there): mid-way through a shard's parquet write, between the write and the
rename, and mid-way through the manifest write.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pytest

from data_engine.demo_corpus import generate_demo_corpus
from data_engine.shards import CRASHPOINT_ENV, MANIFEST_NAME, iter_shards, read_manifest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    generate_demo_corpus(root, n_procedural=24, seed=5)
    return root


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


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "out"
    started = time.perf_counter()
    finish(start_job(corpus, out))
    return Reference(out, rows_of(out), read_manifest(out), time.perf_counter() - started)


def assert_same_as_reference(out: Path, reference: Reference) -> None:
    assert rows_of(out) == reference.rows
    resumed = read_manifest(out)
    for key in ("rows_in", "rows_written", "rows_accepted", "rejects", "config_hash", "shards"):
        assert resumed[key] == reference.manifest[key], key


@pytest.mark.parametrize("point", ["shard_mid_write", "shard_before_rename", "manifest_mid_write"])
def test_kill_at_crashpoint_then_resume(corpus, reference, tmp_path, point):
    out, markers = tmp_path / "out", tmp_path / "markers"
    markers.mkdir()
    process = start_job(corpus, out, {CRASHPOINT_ENV: f"{point}:60:{markers}"})
    deadline = time.monotonic() + 180
    while not any(markers.iterdir()):
        assert process.poll() is None, process.communicate()[0][-3000:]
        assert time.monotonic() < deadline, f"crashpoint {point} never reached"
        time.sleep(0.05)
    kill_job(process)
    if point == "manifest_mid_write":
        assert not (out / MANIFEST_NAME).exists()
    assert list(out.glob(".tmp-*")), "the kill should have left a temp file behind"
    finish(start_job(corpus, out))
    assert_same_as_reference(out, reference)
    assert not list(out.glob(".tmp-*"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kill_at_random_moment_then_resume(corpus, reference, tmp_path, seed):
    out = tmp_path / "out"
    delay = random.Random(seed).uniform(0.3, reference.seconds)
    process = start_job(corpus, out)
    time.sleep(delay)
    kill_job(process)
    finish(start_job(corpus, out))
    assert_same_as_reference(out, reference)
