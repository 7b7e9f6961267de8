"""The IQA cascade's cost relative to decoding: decode + statistical indicators + NIQE (preset stage2_512p)
versus decode alone, on the same ~1 MP JPEGs (1024 px long side), one worker process, one thread.

Both sides run the real stages in a fresh worker process (`decode_image` alone; `decode_image` then
`iqa_cascade`), over the same bytes in memory, so the ratio is throughput(cascade) / throughput(decode)
and the peak resident memory is that of one worker doing the cascade.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from benchmarks.common import write_result
from benchmarks.runtime_overhead import make_photo_set
from data_engine.ops.niqe import default_params_path, fetch_params
from data_engine.readers import ImageFolderConfig, ImageFolderReader

NAME = "iqa_cascade"


def _rows(photos: Path) -> pa.Table:
    """The photos as the image_folder reader emits them (bytes in memory, before any stage)."""
    reader = ImageFolderReader(ImageFolderConfig())
    return reader.read_items(str(photos), reader.list_items(str(photos)))


def _worker(photos: str, with_cascade: bool, repeats: int, batch_size: int) -> tuple[list[float], float]:
    """Seconds per repeat over all photos, and the worker's peak RSS in MB (runs in a spawned process)."""
    from threadpoolctl import threadpool_limits

    from data_engine.stage_runner import apply_stage
    from data_engine.stages.iqa_cascade import IqaCascadeConfig, IqaCascadeStage
    from data_engine.stages.image_basic import DecodeImageConfig, DecodeImageStage

    table = _rows(Path(photos))
    stages = [DecodeImageStage(DecodeImageConfig())]
    if with_cascade:
        stages.append(IqaCascadeStage(IqaCascadeConfig(preset="stage2_512p")))
    for stage in stages:
        stage.setup()
    seconds = []
    with threadpool_limits(1):
        for _ in range(repeats):
            started = time.perf_counter()
            rows = table
            for stage in stages:
                rows, _ = apply_stage(stage, rows, batch_size)
            seconds.append(time.perf_counter() - started)
    return seconds, peak_rss_mb()


def peak_rss_mb() -> float:
    """This process's own resident-memory high-water mark. Not getrusage's ru_maxrss: Linux carries that
    across fork + exec, so a spawned worker would report its parent's peak (every benchmark run before it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmHWM line (peak memory is measured on Linux only)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    if not default_params_path().is_file():
        fetch_params(default_params_path())
    work = Path(tempfile.mkdtemp(prefix="bench-iqa-"))
    try:
        make_photo_set(work, args.images)
        context = multiprocessing.get_context("spawn")
        with context.Pool(1, maxtasksperchild=1) as pool:
            decode_seconds, decode_rss = pool.apply(_worker, (str(work), False, args.repeats, args.batch_size))
        with context.Pool(1, maxtasksperchild=1) as pool:
            cascade_seconds, cascade_rss = pool.apply(_worker, (str(work), True, args.repeats, args.batch_size))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    decode_rate = args.images / statistics.median(decode_seconds)
    cascade_rate = args.images / statistics.median(cascade_seconds)
    metrics = {"ratio_to_decode": round(cascade_rate / decode_rate, 3), "peak_rss_mb": round(cascade_rss, 1)}
    write_result(NAME, metrics, baseline="decode_image stage alone on the same JPEGs, same process setup",
                 command=f"python -m benchmarks.iqa_cascade --images {args.images} --repeats {args.repeats}",
                 notes={"images": args.images, "decode_images_per_s": round(decode_rate, 1),
                        "cascade_images_per_s": round(cascade_rate, 1), "decode_peak_rss_mb": round(decode_rss, 1),
                        "seconds": {"decode": decode_seconds, "cascade": cascade_seconds},
                        "targets": {"ratio_to_decode": 0.25}})


if __name__ == "__main__":
    main()
