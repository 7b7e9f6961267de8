"""Runtime overhead: the decode_image stage over the same JPEG files, through the Ray runtime at 1 and 2
workers versus a plain single-process Python loop doing the same work (read, decode + stats, Parquet write).

Ratios are throughput(runtime) / throughput(plain loop), measured in one run on one machine. Ray is started
and its workers warmed up (one small job) outside the timed region: a production job runs for hours, so
start-up is not overhead per row. Per-job fixed costs (planning, scheduling, the manifest) are timed.
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from benchmarks.common import write_result
from data_engine.demo_corpus import sample_photo_paths
from data_engine.executor import init_local_ray, run_job
from data_engine.readers import ImageFolderReader
from data_engine.stage_runner import apply_stage
from pipelines.jobfile import JOBS_DIR, load_job

NAME = "runtime_overhead"


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
    return load_job(JOBS_DIR / "demo.yaml", [f"input={photos}", f"output={out}", f"reader.shard_rows={shard_rows}"])


def plain_loop(photos: Path, out: Path, shard_rows: int) -> float:
    """The same reader, stage and Parquet writing, called directly in one process; returns seconds."""
    job = job_for(photos, out, shard_rows)
    stage = job.stages[0].build()
    stage.setup()
    reader = ImageFolderReader(job.reader)
    batch_size = job.stages[0].stage_resources().batch_size
    out.mkdir(parents=True)
    started = time.perf_counter()
    items = reader.list_items(job.input)
    for shard, start in enumerate(range(0, len(items), shard_rows)):
        table, _ = apply_stage(stage, reader.read_items(job.input, items[start:start + shard_rows]), batch_size)
        pq.write_table(table, out / f"part-{shard:05d}.parquet", compression="zstd")
    return time.perf_counter() - started


def runtime_run(photos: Path, out: Path, shard_rows: int) -> float:
    started = time.perf_counter()
    run_job(job_for(photos, out, shard_rows), progress=False)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("--shard-rows", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    import ray

    work = Path(tempfile.mkdtemp(prefix="bench-runtime-"))
    try:
        photos = work / "photos"
        make_photo_set(photos, args.images)
        warmup = work / "warmup"
        make_photo_set(warmup, 2 * args.shard_rows, seed=1)
        plain = [plain_loop(photos, work / f"plain-{i}", args.shard_rows) for i in range(args.repeats)]
        seconds: dict[int, list[float]] = {}
        for workers in (1, 2):
            init_local_ray(num_cpus=workers)
            runtime_run(warmup, work / f"warm-{workers}", args.shard_rows)
            seconds[workers] = [runtime_run(photos, work / f"ray{workers}-{i}", args.shard_rows)
                                for i in range(args.repeats)]
            ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    plain_median = statistics.median(plain)
    metrics = {
        "ratio_1_worker": round(plain_median / statistics.median(seconds[1]), 3),
        "ratio_2_workers": round(plain_median / statistics.median(seconds[2]), 3),
        "plain_loop_images_per_s": round(args.images / plain_median, 1),
        "runtime_1_worker_images_per_s": round(args.images / statistics.median(seconds[1]), 1),
        "runtime_2_workers_images_per_s": round(args.images / statistics.median(seconds[2]), 1),
    }
    write_result(NAME, metrics,
                 baseline="plain single-process loop: same reader, decode_image stage and Parquet writes",
                 command=f"python -m benchmarks.runtime_overhead --images {args.images} "
                         f"--shard-rows {args.shard_rows} --repeats {args.repeats}",
                 notes={"images": args.images, "shard_rows": args.shard_rows, "repeats": args.repeats,
                        "targets": {"ratio_1_worker": 0.9, "ratio_2_workers": 1.7},
                        "seconds": {"plain": plain, "runtime_1": seconds[1], "runtime_2": seconds[2]}})


if __name__ == "__main__":
    main()
