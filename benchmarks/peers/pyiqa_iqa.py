"""Our learned-IQA stage against pyiqa called directly: MUSIQ and CLIP-IQA, the same weights (the model
directories `data_engine.curation.learned_iqa` reads: the tiny models of `make tiny-models`, or any directory
given), the same images in the same batches, one thread on each side.

- ours: the `learned_iqa` stage (one per metric, as in pipelines/jobs/curate_images.yaml) through the stage
  runner: JPEG bytes in an Arrow table, decode at `working_side`, score, Arrow columns out;
- pyiqa: `pyiqa.create_metric(metric, ...)` with the same weights, called on each image's bytes (pyiqa decodes
  them itself), as its README shows.

Both score every image one at a time (the stage does so because curation images differ in size); the images
here are 512 x 384 JPEGs, so the stage decodes them at their own size and both sides see the same pixels:
the largest score difference is recorded as the check that they did the same work.

overhead_fraction = stage seconds / pyiqa seconds - 1 over both metrics (goal <= 0.10); per metric beside it.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from PIL import Image

from benchmarks.common import interleaved, load_average, ratio_spread, spread, write_result
from benchmarks.peers.corpus import write_peer_corpus
from data_engine.curation.learned_iqa import ARCH_FILE, CLIP_FILE, WEIGHTS_FILE, read_arch
from data_engine.job import StageSpec
from data_engine.model_refs import tiny_model_path
from data_engine.readers import row_id
from data_engine.schemas import IMAGE_SAMPLE
from data_engine.stage_runner import apply_stage

NAME = "peer_pyiqa"
GOAL = 0.10
METRICS = ("musiq", "clipiqa")
SIDE = (512, 384)


def benchmark_images(count: int, seed: int = 0) -> list[bytes]:
    """`count` JPEGs of 512 x 384: photo crops of the peer corpus, resized to one size."""
    with tempfile.TemporaryDirectory() as tmp:
        files = write_peer_corpus(Path(tmp), count, copy_fraction=0.0, seed=seed)
        images = []
        for entry in files:
            with Image.open(Path(tmp) / "images" / entry["file"]) as image:
                buffer = io.BytesIO()
                image.convert("RGB").resize(SIDE, Image.Resampling.BILINEAR).save(buffer, "JPEG", quality=90)
                images.append(buffer.getvalue())
    return images


def pyiqa_metric(metric: str, model_dir: Path):
    """pyiqa's own inference wrapper around the network whose weights are in `model_dir`."""
    import pyiqa

    kwargs = read_arch(model_dir, metric)
    if metric == "musiq":
        return pyiqa.create_metric("musiq", device="cpu", pretrained=False,
                                   pretrained_model_path=str(model_dir / WEIGHTS_FILE), **kwargs)
    return pyiqa.create_metric("clipiqa", device="cpu", pretrained=False, backbone=str(model_dir / CLIP_FILE),
                               **kwargs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    for metric in METRICS:
        parser.add_argument(f"--{metric}-dir", type=Path, default=None,
                            help=f"{metric} model directory ({ARCH_FILE} + weights; default: the tiny model)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the stage's setup pins one thread per worker; the direct side gets the same
    model_dirs = {metric: getattr(args, f"{metric}_dir") or tiny_model_path(metric) for metric in METRICS}
    images = benchmark_images(args.images)
    table = pa.Table.from_pylist([{"id": row_id("bench", str(i)), "source_dataset": "bench", "upstream_id": str(i),
                                   "license": "none", "image_bytes": data} for i, data in enumerate(images)],
                                 schema=IMAGE_SAMPLE.arrow())
    contenders = {}
    for metric in METRICS:
        stage = StageSpec(op="learned_iqa", name=metric,
                          config={"metric": metric, "model_path": str(model_dirs[metric])}).build()
        stage.setup()
        direct = pyiqa_metric(metric, model_dirs[metric])

        def ours(stage=stage, metric=metric) -> list[float]:
            return apply_stage(stage, table, args.batch_size)[0].column(metric).to_pylist()

        def theirs(direct=direct) -> list[float]:
            scores = []
            for start in range(0, len(images), args.batch_size):
                scores += [float(direct(data).reshape(-1)[0]) for data in images[start:start + args.batch_size]]
            return scores

        contenders[f"ours_{metric}"], contenders[f"pyiqa_{metric}"] = ours, theirs
    scores: dict = {}
    seconds = interleaved(contenders, repeats=args.repeats, last_values=scores)
    ours_total = [sum(seconds[f"ours_{m}"][i] for m in METRICS) for i in range(args.repeats)]
    theirs_total = [sum(seconds[f"pyiqa_{m}"][i] for m in METRICS) for i in range(args.repeats)]
    median = lambda values: float(np.median(values))  # noqa: E731
    metrics = {"overhead_fraction": round(median(ours_total) / median(theirs_total) - 1, 4)}
    for metric in METRICS:
        metrics[f"{metric}_overhead_fraction"] = round(
            median(seconds[f"ours_{metric}"]) / median(seconds[f"pyiqa_{metric}"]) - 1, 4)
    notes = {
        "goal": {"overhead_fraction": f"<= {GOAL}"},
        "goal_met": metrics["overhead_fraction"] <= GOAL,
        "images": args.images, "image_size": list(SIDE), "batch_size": args.batch_size, "torch_threads": 1,
        "repeats": args.repeats, "warmup_rounds": 1, "interleaved": True, "load_average_at_end": load_average(),
        "model_dirs": {metric: str(path) for metric, path in model_dirs.items()},
        "seconds": {name: spread(values) for name, values in seconds.items()},
        "overhead_fraction_per_round": {"median_min_max": ratio_spread(ours_total, theirs_total)},
        "max_abs_score_difference": {metric: float(np.max(np.abs(np.subtract(scores[f"ours_{metric}"],
                                                                              scores[f"pyiqa_{metric}"]))))
                                     for metric in METRICS},
    }
    notes["overhead_fraction_per_round"]["median_min_max"] = {
        key: round(value - 1, 4) for key, value in notes["overhead_fraction_per_round"]["median_min_max"].items()}
    write_result(NAME, metrics, baseline="pyiqa.create_metric (MUSIQ, CLIP-IQA) called on the same JPEG bytes, "
                 "same weights, same batches, one thread", command=f"python -m benchmarks.peers.pyiqa_iqa "
                 f"--images {args.images} --repeats {args.repeats}", notes=notes)
    print(json.dumps(notes["max_abs_score_difference"]))


if __name__ == "__main__":
    main()
