"""Exactly once: SIGKILL the whole job at chosen and random moments, rerun, compare with an uninterrupted run.

The chosen moments are reached through the writer's crashpoint hook (it announces the point with a
marker file and pauses there): mid-way through a shard's parquet write, between the write and the
rename, and mid-way through the manifest write.
"""

from __future__ import annotations

import random
import time

import pytest

from data_engine.shards import CRASHPOINT_ENV, MANIFEST_NAME
from tests.runtime.demo_job import assert_same_as_reference, finish, kill_job, start_job

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("point", ["shard_mid_write", "shard_before_rename", "manifest_mid_write"])
def test_kill_at_crashpoint_then_resume(job_corpus, job_reference, tmp_path, point):
    out, markers = tmp_path / "out", tmp_path / "markers"
    markers.mkdir()
    process = start_job(job_corpus, out, {CRASHPOINT_ENV: f"{point}:60:{markers}"})
    deadline = time.monotonic() + 180
    while not any(markers.iterdir()):
        assert process.poll() is None, process.communicate()[0][-3000:]
        assert time.monotonic() < deadline, f"crashpoint {point} never reached"
        time.sleep(0.05)
    kill_job(process)
    if point == "manifest_mid_write":
        assert not (out / MANIFEST_NAME).exists()
    assert list(out.glob(".tmp-*")), "the kill should have left a temp file behind"
    finish(start_job(job_corpus, out))
    assert_same_as_reference(out, job_reference)
    assert not list(out.glob(".tmp-*"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kill_at_random_moment_then_resume(job_corpus, job_reference, tmp_path, seed):
    out = tmp_path / "out"
    delay = random.Random(seed).uniform(0.3, job_reference.seconds)
    process = start_job(job_corpus, out)
    time.sleep(delay)
    kill_job(process)
    finish(start_job(job_corpus, out))
    assert_same_as_reference(out, job_reference)
