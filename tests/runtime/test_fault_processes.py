"""Faults that need a job of its own (the CLI in a subprocess, with its own Ray): a full disk in the shard
writer, and two runs on the same output directory at once."""

from __future__ import annotations

import subprocess
import time

import pytest

from data_engine.shards import CRASHPOINT_ENV, ENOSPC_ENV, MANIFEST_NAME, TEMP_PREFIX, completed_shards
from tests.runtime.test_exactly_once import (assert_same_as_reference, corpus, finish, kill_job,  # noqa: F401
                                             reference, start_job)

pytestmark = pytest.mark.slow


def test_disk_full_fails_in_one_line_and_the_rerun_completes_once(corpus, reference, tmp_path):
    out = tmp_path / "out"
    job = start_job(corpus, out, {ENOSPC_ENV: "shard_mid_write"})
    output, _ = job.communicate(timeout=240)
    assert job.returncode == 2, output[-3000:]
    last = output.strip().splitlines()[-1]
    assert last.startswith(f"error: {out}: no space left on device writing {out}/{TEMP_PREFIX}part-"), last
    assert last.endswith("free space and rerun to resume (complete shards are kept)")
    # Nothing a reader or a resume would trust: no shard under its final name, no manifest, no temp left over.
    assert completed_shards(out) == set()
    assert not (out / MANIFEST_NAME).exists()
    assert not list(out.glob(f"{TEMP_PREFIX}*"))
    finish(start_job(corpus, out))  # space is back
    assert_same_as_reference(out, reference)


def test_a_second_run_on_the_same_output_refuses_until_the_first_dies(corpus, reference, tmp_path):
    out, markers = tmp_path / "out", tmp_path / "markers"
    markers.mkdir()
    first = start_job(corpus, out, {CRASHPOINT_ENV: f"shard_mid_write:300:{markers}"})
    deadline = time.monotonic() + 240
    while not list(markers.iterdir()):
        assert time.monotonic() < deadline and first.poll() is None, "the first run never reached a shard write"
        time.sleep(0.5)
    second = start_job(corpus, out)
    output, _ = second.communicate(timeout=120)
    assert second.returncode == 2, output[-3000:]
    assert output.strip().splitlines() == [
        line for line in output.strip().splitlines() if line.startswith("error: ")], output  # one line, no Ray
    assert f"{out} is in use by another run (pid {first.pid} on " in output
    kill_job(first)  # SIGKILL: its lock must not outlive it
    finish(start_job(corpus, out))
    assert_same_as_reference(out, reference)
