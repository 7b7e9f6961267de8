"""Training step time through the DeepSpeed engine on CPU versus a plain PyTorch loop, same model and batches.

Both sides train the tiny Qwen3-VL with the MLLM task's packed batches and SFT loss (KL off: this measures
the engine, not the objective), torch AdamW with the task's parameter groups, fp32, one process. The
DeepSpeed side is the trainer's own engine (gloo, gradient clipping as configured) at the ZeRO stage a
single-process config uses (0: one rank has nothing to shard, see trainer/engine.py); ZeRO stage 1 is timed
too, to show what sharding machinery costs when there is nothing to shard. The plain side is forward,
backward, clip, step, zero_grad. The sides take turns batch by batch, so load from other processes falls on
all of them alike. Warm-up steps are not timed; medians of per-step times.
`ratio_to_plain_torch` = DeepSpeed step time / plain step time (target <= 1.2).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.common import write_result
from trainer.config import parse_config
from trainer.core import RunContext, Sample
from trainer.engine import build_optimizer, close_distributed, create_engine, init_distributed
from trainer.objectives.mllm_sft import MllmSftTask
from trainer.synthetic_qa import synthetic_row

NAME = "deepspeed_cpu_step"


def config_for(out_dir: Path, zero_stage: int, max_length: int):
    return parse_config({
        "task": {"name": "mllm_sft", "config": {"model_path": "tiny:qwen3vl", "max_length": max_length,
                                                "image_min_pixels": 1024, "image_max_pixels": 16384,
                                                "kd_weight": 0}},
        "data": {"datasets": [{"name": "unused", "path": str(out_dir)}]},
        "optim": {"lr": 1e-4, "group_lr": {"vision": 1e-5}, "schedule": "constant"},
        "engine": {"zero_stage": zero_stage, "precision": "fp32"},
        "run": {"out_dir": str(out_dir), "max_steps": 1},
    })


def packed_batches(task: MllmSftTask, count: int) -> list[dict]:
    examples = [task.prepare(Sample(row=synthetic_row("spatial_qa", 2, n), dataset="spatial",
                                    general_domain=False, seed=n)) for n in range(count * 16)]
    plan = task.plan_micro_batches(examples)
    return [task.collate([examples[i] for i in group]) for group in plan[:count]]


def time_interleaved(sides: dict[str, Callable[[dict], None]], batches: list[dict],
                     warmup: int) -> dict[str, list[float]]:
    """Per-step seconds of every side, the sides taking turns on each batch."""
    seconds: dict[str, list[float]] = {side: [] for side in sides}
    for index, batch in enumerate(batches):
        for side, step in sides.items():
            started = time.perf_counter()
            step(batch)
            if index >= warmup:
                seconds[side].append(time.perf_counter() - started)
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--zero-stage", type=int, default=0, help="the stage of the headline ratio")
    parser.add_argument("--compare-stage", type=int, default=1, help="a second stage, reported beside it")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="bench-ds-") as work:
        config = config_for(Path(work), args.zero_stage, args.max_length)
        dist_info = init_distributed(config.engine)
        context = RunContext(rank=0, world_size=1, device=dist_info.device, dtype=dist_info.dtype, out_dir=Path(work))
        task = MllmSftTask(config.task_config(), context)
        batches = packed_batches(task, args.steps + args.warmup)

        torch.manual_seed(0)
        model = task.build_model()
        optimizer = build_optimizer(task.parameter_groups(model), config.optim)

        def plain_step(batch: dict) -> None:
            task.compute_loss(model, batch)["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        def deepspeed_step_at(stage: int):
            torch.manual_seed(0)
            ds_model = task.build_model()
            engine = create_engine(ds_model, task.parameter_groups(ds_model),
                                   config_for(Path(work), stage, args.max_length), dist_info)

            def deepspeed_step(batch: dict) -> None:
                engine.backward(task.compute_loss(engine, batch)["loss"])
                engine.step()

            return deepspeed_step

        sides = {"plain": plain_step, "deepspeed": deepspeed_step_at(args.zero_stage),
                 "compare": deepspeed_step_at(args.compare_stage)}
        seconds = time_interleaved(sides, batches, args.warmup)
        close_distributed()

    medians = {side: statistics.median(times) for side, times in seconds.items()}
    tokens = statistics.mean(int(batch["input_ids"].numel()) for batch in batches)
    write_result(NAME, {
        "ratio_to_plain_torch": round(medians["deepspeed"] / medians["plain"], 3),
        "deepspeed_step_ms": round(1000 * medians["deepspeed"], 1),
        "plain_torch_step_ms": round(1000 * medians["plain"], 1),
        f"ratio_zero{args.compare_stage}_to_plain_torch": round(medians["compare"] / medians["plain"], 3),
    }, baseline="plain PyTorch loop (forward, backward, clip, AdamW step) on the same model and packed batches",
        command=f"python -m benchmarks.deepspeed_cpu_step --steps {args.steps} --warmup {args.warmup} "
                f"--max-length {args.max_length} --zero-stage {args.zero_stage} "
                f"--compare-stage {args.compare_stage}",
        notes={"target": {"ratio_to_plain_torch": 1.2}, "tokens_per_step": round(tokens, 1),
               "threads": torch.get_num_threads(), "zero_stage": args.zero_stage,
               "compare_stage": args.compare_stage, "seconds": seconds})


if __name__ == "__main__":
    main()
