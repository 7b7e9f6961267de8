"""Faults that need a job of its own (the CLI in a subprocess, with its own Ray): a full disk (injected in the
shard writer, and a real size-limited filesystem), and two runs on the same output directory at once."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from data_engine.output_dir import LOCK_NAME
from data_engine.shards import (CRASHPOINT_ENV, ENOSPC_ENV, MANIFEST_NAME, TEMP_PREFIX, completed_shards, iter_shards,
                                read_manifest, shard_file_name)
from tests.runtime.demo_job import assert_same_as_reference, finish, kill_job, start_job

pytestmark = pytest.mark.slow


def test_disk_full_fails_in_one_line_and_the_rerun_completes_once(job_corpus, job_reference, tmp_path):
    out = tmp_path / "out"
    job = start_job(job_corpus, out, {ENOSPC_ENV: "shard_mid_write"})
    output, _ = job.communicate(timeout=240)
    assert job.returncode == 2, output[-3000:]
    last = output.strip().splitlines()[-1]
    assert last.startswith(f"error: {out}: no space left on device writing {out}/{TEMP_PREFIX}part-"), last
    assert last.endswith("free space and rerun to resume (complete shards are kept)")
    # Nothing a reader or a resume would trust: no shard under its final name, no manifest, no temp left over.
    assert completed_shards(out) == set()
    assert not (out / MANIFEST_NAME).exists()
    assert not list(out.glob(f"{TEMP_PREFIX}*"))
    finish(start_job(job_corpus, out))  # space is back
    assert_same_as_reference(out, job_reference)


PAGE = 4096  # tmpfs counts whole pages per file


def disk_pages(directory: Path) -> int:
    return sum(-(-path.stat().st_size // PAGE) for path in directory.iterdir() if path.name != MANIFEST_NAME)


@pytest.fixture
def small_disk(tmp_path):
    """A real filesystem of a chosen size: tmpfs, which `remount` can grow in place (space freed)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()

    def mount(pages: int, *, remount: bool = False) -> None:
        options = f"{'remount,' if remount else ''}size={pages * PAGE}"
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)], check=True,
                       capture_output=True, text=True)

    try:
        mount(1)
    except (OSError, subprocess.CalledProcessError) as exc:
        why = getattr(exc, "stderr", None) or str(exc)
        pytest.skip(f"no size-limited filesystem: `mount -t tmpfs` needs root with CAP_SYS_ADMIN ({why.strip()})")
    try:
        yield mount_point, mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=False)


def run_out_of_space(corpus: Path, out: Path, file_prefix: str) -> None:
    job = start_job(corpus, out)
    output, _ = job.communicate(timeout=240)
    assert job.returncode == 2, output[-3000:]
    last = output.strip().splitlines()[-1]
    assert last.startswith(f"error: {out}: no space left on device writing {out}/{file_prefix}"), last
    assert last.endswith("free space and rerun to resume (complete shards are kept)")


def test_a_real_full_disk_fails_in_one_line_keeps_complete_shards_and_the_rerun_completes_once(
        job_corpus, job_reference, small_disk):
    disk, mount = small_disk
    out = disk / "out"
    # One page: the run's lock fits, its job fingerprint does not (the driver's own writes, before Ray starts).
    run_out_of_space(job_corpus, out, f"{TEMP_PREFIX}_job.json")
    assert [path.name for path in out.iterdir()] == [LOCK_NAME]
    # Room for about half of what the reference run wrote: some shards complete, then the disk is full.
    mount(disk_pages(job_reference.out) // 2, remount=True)
    run_out_of_space(job_corpus, out, "")
    kept = completed_shards(out)
    assert kept and len(kept) < len(job_reference.manifest["shards"]), kept
    # What is under a final name is whole and right; nothing half-written is left and no manifest claims the run.
    for _, table in iter_shards(out):
        for row in table.to_pylist():
            assert row == job_reference.rows[row["id"]]
    assert not (out / MANIFEST_NAME).exists()
    assert not list(out.glob(f"{TEMP_PREFIX}*"))
    written = {shard: os.stat(out / shard_file_name(shard)) for shard in kept}
    mount(disk_pages(job_reference.out) * 2, remount=True)  # space is back
    finish(start_job(job_corpus, out))
    assert_same_as_reference(out, job_reference)
    # The rerun resumed: the shards the full disk did not stop were kept as they were, not written again.
    for shard, before in written.items():
        after = os.stat(out / shard_file_name(shard))
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), shard
    assert read_manifest(out)["timings"]["shards_skipped"] == len(kept)


def test_a_second_run_on_the_same_output_refuses_until_the_first_dies(job_corpus, job_reference, tmp_path):
    out, markers = tmp_path / "out", tmp_path / "markers"
    markers.mkdir()
    first = start_job(job_corpus, out, {CRASHPOINT_ENV: f"shard_mid_write:300:{markers}"})
    deadline = time.monotonic() + 240
    while not list(markers.iterdir()):
        assert time.monotonic() < deadline and first.poll() is None, "the first run never reached a shard write"
        time.sleep(0.5)
    second = start_job(job_corpus, out)
    output, _ = second.communicate(timeout=120)
    assert second.returncode == 2, output[-3000:]
    assert output.strip().splitlines() == [
        line for line in output.strip().splitlines() if line.startswith("error: ")], output  # one line, no Ray
    assert f"{out} is in use by another run (pid {first.pid} on " in output
    kill_job(first)  # SIGKILL: its lock must not outlive it
    finish(start_job(job_corpus, out))
    assert_same_as_reference(out, job_reference)
