"""Load test: the curation job (pipelines/jobs/curate_images.yaml) over N generated images, one fresh process
(driver and local Ray) per count.

Recorded per count: rows in / written / accepted, wall time, peak RSS of the driver during the job and of
each kind of Ray process (task workers, actor workers, raylet, GCS), peak object-store use, and whether every
generated image is exactly one output row (nothing lost or duplicated). The goal is a driver whose memory does
not grow with the row count: driver peak RSS within 1.2x between the smallest and the largest count.

The images are small so 20,000 fit the time of a 2-core machine: JPEGs of 136-200 px per side (over the
stage1_208p preset's 128 px minimum, so every stage sees them), noise and shapes, about 3-6 KB each.
    python -m benchmarks.load                          # 60 and 240 images (make bench), about a minute
    python -m benchmarks.load --counts 5000 20000      # the issue's counts, most of an hour on 2 cores
It is a memory and exactly-once test, one run per count (the wall time is reported, not compared).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

NAME = "load"
MIB = 2**20


def generate_images(root: Path, count: int, seed: int = 0) -> list[str]:
    """`count` small JPEGs under root (100 per directory); returns their relative paths."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    names = []
    for index in range(count):
        width, height = rng.randint(136, 200), rng.randint(136, 200)
        pixels = noise.integers(0, 256, (height, width, 3), dtype=np.uint8) // 4 + rng.randint(40, 160)
        image = Image.fromarray(pixels.astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            x, y = rng.randint(0, width - 20), rng.randint(0, height - 20)
            draw.ellipse((x, y, x + rng.randint(10, 60), y + rng.randint(10, 60)),
                         fill=tuple(rng.randint(0, 255) for _ in range(3)))
        name = f"{index // 100:04d}/{index:06d}.jpg"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85)
        (root / name).write_bytes(buffer.getvalue())
        names.append(name)
    return names


def _rss_bytes(pid: int | str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _descendants(root: int) -> list[str]:
    """Pids of every process under `root`: the driver's local Ray (GCS, raylet, daemons) and the workers the
    raylet starts. Another Ray on the machine (a test session's, another user's) is not under it."""
    children: dict[str, list[str]] = {}
    for entry in Path("/proc").iterdir():
        try:
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
            parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1] if entry.name.isdigit() else None
        except (OSError, IndexError):
            continue
        if parent is not None:
            children.setdefault(parent, []).append(entry.name)
    found, pending = [], [str(root)]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _process_kind(cmdline: list[str]) -> str | None:
    """The kind of a Ray process from its command line (Ray workers retitle themselves `ray::...`)."""
    if not cmdline:
        return None
    title = cmdline[0]
    if title.startswith("ray::"):
        return "actor_worker" if title.startswith("ray::MapWorker") else "task_worker"
    executable = Path(title).name
    if executable in ("raylet", "gcs_server"):
        return executable
    joined = " ".join(cmdline)
    if "ray/_private" in joined or "ray/dashboard" in joined or "ray/autoscaler" in joined:
        return "ray_daemon"
    return None


class Monitor(threading.Thread):
    """Samples, every `interval` s: the driver's RSS, the RSS of each of its Ray's processes by kind, and
    object-store bytes."""

    def __init__(self, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.stop = threading.Event()
        self.driver_peak = 0
        self.kind_peak: dict[str, int] = {}
        self.object_store_peak: int | None = None  # None: the store's stats could not be read
        self._cluster_state: Any = None

    def object_store_bytes(self) -> int:
        """Bytes in use in the object stores of this driver's cluster, all nodes (what `ray memory --stats-only`
        reads from a raylet). The cluster is named by its GCS address: without one, Ray looks for a cluster on
        the machine and refuses when it finds more than one (another user's, a test session's)."""
        import ray
        from ray._private.internal_api import get_memory_info_reply, get_state_from_address

        if self._cluster_state is None:
            self._cluster_state = get_state_from_address(ray.get_runtime_context().gcs_address)
        return get_memory_info_reply(self._cluster_state).store_stats.object_store_bytes_used

    def run(self) -> None:
        import ray

        while not self.stop.is_set():
            self.driver_peak = max(self.driver_peak, _rss_bytes("self"))
            for pid in _descendants(os.getpid()):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
                except OSError:
                    continue
                kind = _process_kind([part for part in cmdline if part])
                if kind:
                    self.kind_peak[kind] = max(self.kind_peak.get(kind, 0), _rss_bytes(pid))
            if ray.is_initialized():
                try:
                    self.object_store_peak = max(self.object_store_peak or 0, self.object_store_bytes())
                except Exception:  # the cluster starting or stopping between two samples
                    pass
            self.stop.wait(self.interval)


def run_one(count: int, shard_rows: int, preset: str, num_cpus: int) -> dict[str, Any]:
    """Generate, run the curation job once in this process, check the rows; returns the figures."""
    import pipelines.registry  # noqa: F401  (the composition root, as the CLI runs it)
    from data_engine.executor import run_job
    from data_engine.shards import iter_shards
    from pipelines.jobfile import JOBS_DIR, load_job

    with tempfile.TemporaryDirectory(prefix="joyai-load-") as scratch:
        images, out = Path(scratch, "images"), Path(scratch, "out")
        names = generate_images(images, count)
        input_bytes = sum((images / name).stat().st_size for name in names)
        overrides = [f"input={images}", f"output={out}", f"preset={preset}", f"reader.shard_rows={shard_rows}",
                     f"ray.num_cpus={num_cpus}"]
        job = load_job(JOBS_DIR / "curate_images.yaml", overrides)
        monitor = Monitor()
        driver_before = _rss_bytes("self")
        monitor.start()
        started = time.perf_counter()
        manifest = run_job(job, progress=False)
        wall = time.perf_counter() - started
        monitor.stop.set()
        monitor.join()
        seen: dict[str, int] = {}
        for _, table in iter_shards(out, columns=["upstream_id"]):
            for upstream_id in table.column(0).to_pylist():
                seen[upstream_id] = seen.get(upstream_id, 0) + 1
    return {
        "images": count,
        "input_mib": round(input_bytes / MIB, 1),
        "rows_in": manifest["rows_in"],
        "rows_written": manifest["rows_written"],
        "rows_accepted": manifest["rows_accepted"],
        "rows_lost": len(set(names) - set(seen)),
        "rows_duplicated": sum(n - 1 for n in seen.values() if n > 1),
        "wall_s": round(wall, 1),
        "rows_per_s": round(count / wall, 1),
        "driver_rss_before_mib": round(driver_before / MIB, 1),
        "driver_peak_rss_mib": round(monitor.driver_peak / MIB, 1),
        "peak_rss_mib_by_kind": {kind: round(value / MIB, 1) for kind, value in sorted(monitor.kind_peak.items())},
        "object_store_peak_mib": (None if monitor.object_store_peak is None
                                  else round(monitor.object_store_peak / MIB, 1)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[60, 240])
    parser.add_argument("--shard-rows", type=int, default=256)
    parser.add_argument("--preset", default="stage1_208p")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child run: print one JSON
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.counts[0], args.shard_rows, args.preset, args.num_cpus)))
        return 0

    from benchmarks.common import start_benchmark, write_result

    machine = start_benchmark()
    runs = []
    for count in args.counts:
        # A fresh process per count: the driver's memory of one run never counts against the next.
        child = subprocess.run([sys.executable, "-m", "benchmarks.load", "--one", "--counts", str(count),
                                "--shard-rows", str(args.shard_rows), "--preset", args.preset,
                                "--num-cpus", str(args.num_cpus)], capture_output=True, text=True, check=False)
        if child.returncode != 0:
            print(child.stderr[-4000:], file=sys.stderr)
            return child.returncode
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]), file=sys.stderr)
    smallest, largest = runs[0], runs[-1]
    metrics = {
        f"wall_s_{largest['images']}": largest["wall_s"],
        f"rows_per_s_{largest['images']}": largest["rows_per_s"],
        f"driver_peak_rss_mib_{smallest['images']}": smallest["driver_peak_rss_mib"],
        f"driver_peak_rss_mib_{largest['images']}": largest["driver_peak_rss_mib"],
        "driver_rss_ratio": round(largest["driver_peak_rss_mib"] / smallest["driver_peak_rss_mib"], 3),
        f"object_store_peak_mib_{largest['images']}": largest["object_store_peak_mib"],
        "rows_lost": sum(run["rows_lost"] for run in runs),
        "rows_duplicated": sum(run["rows_duplicated"] for run in runs),
    }
    command = "python -m benchmarks.load " + " ".join(sys.argv[1:] if argv is None else argv)
    write_result(NAME, metrics, baseline=f"goal: driver_rss_ratio <= 1.2 ({smallest['images']} -> "
                                         f"{largest['images']} images); rows_lost = rows_duplicated = 0",
                 command=command.strip(), notes={"runs": runs}, machine=machine,
                 goals={"driver_rss_ratio": ("<=", 1.2), "rows_lost": ("<=", 0), "rows_duplicated": ("<=", 0)})
    failed = metrics["rows_lost"] or metrics["rows_duplicated"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
