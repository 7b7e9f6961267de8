"""Packing efficiency of the MLLM trainer: real tokens / slot tokens of the packs it trains on, versus padding.

Samples are the synthetic spatial and general QA rows with 1-4 pictures each, rescaled to random sizes so
that the token counts vary the way real multi-image QA does (about 70 to 2,000 tokens), formatted by the
MLLM task exactly as in training. Packing: the task's own first-fit-decreasing plan over data windows, at
the production pack length (8192) and window (2048). Baselines on the same samples in the same order:
padding each micro-batch of `--pad-batch` samples to its longest sample, and padding every sample to 8192.
"""

from __future__ import annotations

import argparse
import io
import random
import time
from pathlib import Path

import torch
from PIL import Image

from benchmarks.common import write_result
from trainer.core import RunContext, Sample
from trainer.objectives.mllm_sft import MllmSftConfig, MllmSftTask
from trainer.packing import packing_efficiency
from trainer.synthetic_qa import FLAVOURS, synthetic_row

NAME = "packing"


def varied_sample(number: int, rng: random.Random) -> Sample:
    flavour = FLAVOURS[number % 2]
    row = synthetic_row(flavour, 1, number)
    picture = Image.open(io.BytesIO(row["images"][0]["bytes"]))
    images, parts = [], []
    for index in range(rng.randint(1, 4)):
        side = rng.randint(96, 640), rng.randint(96, 640)
        buffer = io.BytesIO()
        picture.resize(side).save(buffer, format="PNG")
        images.append({**row["images"][0], "bytes": buffer.getvalue(), "width": side[0], "height": side[1]})
        parts.append({"type": "image", "text": None, "image_index": index})
    row["images"] = images
    row["messages"][0]["content"] = parts + [p for p in row["messages"][0]["content"] if p["type"] == "text"]
    return Sample(row=row, dataset=flavour, general_domain=flavour == "general_qa", seed=number)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--max-length", type=int, default=8192)
    parser.add_argument("--window", type=int, default=2048)
    parser.add_argument("--pad-batch", type=int, default=8)
    args = parser.parse_args(argv)

    context = RunContext(rank=0, world_size=1, device=torch.device("cpu"), dtype=torch.float32, out_dir=Path("."))
    task = MllmSftTask(MllmSftConfig(model_path="tiny:qwen3vl", max_length=args.max_length, kd_weight=0), context)
    rng = random.Random(0)
    started = time.perf_counter()
    lengths = [task.prepare(varied_sample(n, rng)).length for n in range(args.samples)]
    prepare_seconds = time.perf_counter() - started

    started = time.perf_counter()
    packs = 0
    for start in range(0, len(lengths), args.window):
        packs += len(task.plan_micro_batches([_Length(n) for n in lengths[start:start + args.window]]))
    plan_seconds = time.perf_counter() - started
    packed = sum(lengths) / (packs * args.max_length)
    batches = [lengths[i:i + args.pad_batch] for i in range(0, len(lengths), args.pad_batch)]
    padded = sum(lengths) / sum(len(batch) * max(batch) for batch in batches)
    metrics = {
        "packing_efficiency": round(packed, 4),
        "padded_batch_efficiency": round(padded, 4),
        "pad_to_max_length_efficiency": round(packing_efficiency(lengths, [[i] for i in range(len(lengths))],
                                                                 args.max_length), 4),
        "packs": packs,
        "plan_ms_per_window": round(1000 * plan_seconds / max(1, -(-len(lengths) // args.window)), 2),
    }
    write_result(NAME, metrics,
                 baseline=f"same samples, micro-batches of {args.pad_batch} padded to their longest sample",
                 command=f"python -m benchmarks.packing --samples {args.samples} --max-length {args.max_length} "
                         f"--window {args.window} --pad-batch {args.pad_batch}",
                 notes={"target": {"packing_efficiency": 0.98}, "tokens": sum(lengths),
                        "sample_tokens": {"min": min(lengths), "max": max(lengths),
                                          "mean": round(sum(lengths) / len(lengths), 1)},
                        "prepare_seconds": round(prepare_seconds, 1)})


class _Length:
    """Stands in for a prepared example where only its length matters (the planner reads `.length`)."""

    def __init__(self, length: int) -> None:
        self.length = length


if __name__ == "__main__":
    main()
