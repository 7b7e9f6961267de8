"""Runtime overhead: the decode_image stage over the same JPEG files, through the Ray runtime at 1 and 2
workers versus a plain single-process Python loop doing the same work.

Each contender lives in its own process pinned, as `taskset -a -p` does, to the cores it is stated to use: the
plain loop and "1 worker" (`ray.init(num_cpus=1)`: driver, raylet, GCS and the worker, every thread of each,
on core 0) on one core, "2 workers" on two. Ray starts on every core (its 30 s start-up deadline is too short
for one core of a loaded machine) and its processes are pinned once it is up; workers it starts later inherit
the raylet's cores. Each process starts once (Ray and its workers warm: a production job runs for hours, so
start-up is not overhead per row) and then runs one whole pass per request; the harness warms each up with
one untimed pass and interleaves the timed passes. Per-job fixed costs (planning, scheduling, the manifest)
are timed.

Both sides write the same shards: the plain loop reads with the job's reader, runs the stage through the
stage runner and writes each shard with `data_engine.shards.write_shard` (stats sidecar, temp name, fsync,
rename), as the runtime's writer tasks do. What only the runtime writes: the job fingerprint, the manifest
and the lineage/summary files at the end of the job (a few small JSON files per job).

Ratios are throughput(runtime) / throughput(plain loop), round by round (median, min, max).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from benchmarks.common import MIN_REPEATS, interleaved, rate_spread, ratio_spread, start_benchmark, write_result
from data_engine.demo_corpus import sample_photo_paths

NAME = "runtime_overhead"
CONTENDERS = {"plain": ("0", 0), "runtime_1_worker": ("0", 1), "runtime_2_workers": ("0,1", 2)}  # cores, Ray CPUs


def make_photo_set(root: Path, count: int, seed: int = 0) -> None:
    """~1 MP JPEGs cut from the photos shipped with scikit-learn at random crops, scales and flips."""
    rng = random.Random(seed)
    photos = [Image.open(path).convert("RGB") for path in sample_photo_paths()]
    root.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        photo = rng.choice(photos)
        width, height = photo.size
        crop_w, crop_h = rng.randint(width // 2, width), rng.randint(height // 2, height)
        left, top = rng.randint(0, width - crop_w), rng.randint(0, height - crop_h)
        image = photo.crop((left, top, left + crop_w, top + crop_h))
        scale = 1024 / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
        if rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=rng.randint(80, 95))
        (root / f"{index // 100:03d}" / f"{index:05d}.jpg").parent.mkdir(exist_ok=True)
        (root / f"{index // 100:03d}" / f"{index:05d}.jpg").write_bytes(buffer.getvalue())


def job_for(photos: Path, out: Path, shard_rows: int):
    from pipelines.jobfile import JOBS_DIR, load_job

    return load_job(JOBS_DIR / "demo.yaml", [f"input={photos}", f"output={out}", f"reader.shard_rows={shard_rows}"])


def plain_pass(photos: Path, out: Path, shard_rows: int) -> None:
    """The same reader, stage and shard writes as the job, called directly in one process."""
    from data_engine.readers import ImageFolderReader
    from data_engine.shards import write_shard
    from data_engine.stage_runner import apply_stage

    job = job_for(photos, out, shard_rows)
    stage = job.stages[0].build()
    stage.setup()
    reader = ImageFolderReader(job.reader)
    batch_size = job.stages[0].stage_resources().batch_size
    out.mkdir(parents=True)
    items = reader.list_items(job.input)
    for shard, start in enumerate(range(0, len(items), shard_rows)):
        table, stats = apply_stage(stage, reader.read_items(job.input, items[start:start + shard_rows]), batch_size)
        write_shard(out, shard, table, [stats.to_json()], row_group_rows=job.row_group_rows)


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, frontier = [], [pid]
    while frontier:
        for child in children.get(frontier.pop(), []):
            found.append(child)
            frontier.append(child)
    return found


def pin_process_tree(cores: set[int]) -> None:
    """Every thread of this process and of all its descendants on `cores` (what `taskset -a -p` does)."""
    for pid in [os.getpid(), *descendants(os.getpid())]:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                os.sched_setaffinity(int(task.name), cores)
            except (OSError, ValueError):
                pass  # the thread ended meanwhile


def serve(kind: str, cores: set[int], ray_cpus: int, photos: Path, work: Path, shard_rows: int) -> None:
    """Contender process: one pass per line read from stdin, each into a fresh output directory."""
    if ray_cpus:
        import ray

        from data_engine.executor import init_local_ray, run_job

        for attempt in range(3):  # on a loaded machine Ray's fixed 30 s start-up deadline can pass
            try:
                init_local_ray(num_cpus=ray_cpus, object_store_memory=256 * 2**20)
                break
            except Exception as error:  # Ray raises a bare Exception for it
                if "timed out during startup" not in str(error) or attempt == 2:
                    raise
                ray.shutdown()
    pin_process_tree(cores)
    print("READY", flush=True)
    for number, _ in enumerate(sys.stdin):
        out = work / f"{kind}-{number}"
        if ray_cpus:
            run_job(job_for(photos, out, shard_rows), progress=False)
        else:
            plain_pass(photos, out, shard_rows)
        shutil.rmtree(out, ignore_errors=True)
        print("DONE", flush=True)


class ContenderProcess:
    """A contender in its own process pinned to `cores`; calling it runs one pass and waits for it."""

    def __init__(self, kind: str, cores: str, ray_cpus: int, photos: Path, work: Path, shard_rows: int) -> None:
        repo = str(Path(__file__).parents[1])
        self.kind = kind
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.runtime_overhead", "--serve", kind, "--cores", cores,
             "--ray-cpus", str(ray_cpus), "--photos", str(photos), "--work", str(work),
             "--shard-rows", str(shard_rows)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=repo,
            env=os.environ | {"PYTHONPATH": repo})
        self._expect("READY")

    def _expect(self, word: str) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:  # Ray may print its own lines first
            if line.strip() == word:
                return
        raise RuntimeError(f"contender {self.kind} exited with code {self.process.wait()}")

    def __call__(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("pass\n")
        self.process.stdin.flush()
        self._expect("DONE")

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()  # the serve loop ends, and with it the process's Ray
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--shard-rows", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS)
    parser.add_argument("--serve", choices=sorted(CONTENDERS), help=argparse.SUPPRESS)
    parser.add_argument("--cores", help=argparse.SUPPRESS)
    parser.add_argument("--ray-cpus", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--photos", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, {int(core) for core in args.cores.split(",")}, args.ray_cpus, args.photos, args.work,
              args.shard_rows)
        return
    if os.cpu_count() is None or os.cpu_count() < 2:
        raise SystemExit("benchmarks.runtime_overhead pins contenders to cores 0 and 0,1: it needs two cores")
    machine = start_benchmark(threads=1)  # each contender process uses one thread per core it is pinned to

    work = Path(tempfile.mkdtemp(prefix="bench-runtime-"))
    contenders: dict[str, ContenderProcess] = {}
    try:
        photos = work / "photos"
        make_photo_set(photos, args.images)
        for kind, (cores, ray_cpus) in CONTENDERS.items():
            contenders[kind] = ContenderProcess(kind, cores, ray_cpus, photos, work, args.shard_rows)
        seconds = interleaved(contenders, repeats=args.repeats)
    finally:
        for contender in contenders.values():
            contender.close()
        shutil.rmtree(work, ignore_errors=True)

    metrics = {
        "ratio_1_worker": ratio_spread(seconds["plain"], seconds["runtime_1_worker"]),
        "ratio_2_workers": ratio_spread(seconds["plain"], seconds["runtime_2_workers"]),
        **{f"{kind}_images_per_s": rate_spread(args.images, seconds[kind], 1) for kind in CONTENDERS},
    }
    write_result(NAME, metrics, machine=machine,
                 baseline="plain single-process loop on core 0: same reader, decode_image stage and shard writes "
                          "(stats, temp, fsync, rename); every Ray process pinned to core 0 (1 worker) / cores 0-1",
                 command=f"python -m benchmarks.runtime_overhead --images {args.images} "
                         f"--shard-rows {args.shard_rows} --repeats {args.repeats}",
                 goals={"ratio_1_worker": (">=", 0.9), "ratio_2_workers": (">=", 1.7)},
                 notes={"images": args.images, "shard_rows": args.shard_rows, "repeats": args.repeats,
                        "cores": {kind: cores for kind, (cores, _) in CONTENDERS.items()},
                        "only_the_runtime_writes": "job fingerprint, manifest, lineage and summary JSON per job",
                        "seconds": seconds})


if __name__ == "__main__":
    main()
