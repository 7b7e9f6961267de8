"""Tiny MMDiT training step on the CPU: through the trainer's DeepSpeed engine versus a plain PyTorch loop.

Both run the same model (same initial weights), the same flow-matching loss on the same synthetic batch of
one bucket, and AdamW; the engine adds what the trainer really does per step in one process (ZeRO stage 0 as
mmdit_t2i_tiny.yaml sets it, gloo, gradient clipping, the LR scheduler). Ratio = engine step time / plain
step time (1.0 = no overhead).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time

import torch

from benchmarks.common import write_result
from trainer.config import parse_config
from trainer.engine import close_distributed, create_engine, init_distributed
from trainer.models.mmdit import MMDiT, preset_config
from trainer.objectives.flow_matching import FlowMatchingConfig, MMDiTBatch, flow_matching_loss

NAME = "mmdit_cpu_step"


def synthetic_batch(batch_size: int, latent_side: int, text_tokens: int, text_dim: int) -> MMDiTBatch:
    generator = torch.Generator().manual_seed(0)
    return MMDiTBatch(torch.randn(batch_size, 16, 1, latent_side, latent_side, generator=generator),
                      torch.randn(batch_size, text_tokens, text_dim, generator=generator),
                      torch.ones(batch_size, text_tokens, dtype=torch.bool))


def time_interleaved(plain_step, engine_step, steps: int, warmup: int) -> tuple[list[float], list[float]]:
    """Per-step seconds of both sides, taking turns step by step so outside load falls on both alike."""
    plain, engine = [], []
    for index in range(warmup + steps):
        for step, seconds in ((plain_step, plain), (engine_step, engine)):
            started = time.perf_counter()
            step()
            if index >= warmup:
                seconds.append(time.perf_counter() - started)
    return plain, engine


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mmdit_cpu_step", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--latent-side", type=int, default=16, help="latent grid side (128 px images -> 16)")
    parser.add_argument("--text-tokens", type=int, default=32)
    parser.add_argument("--write", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    plain_model = MMDiT(preset_config("tiny")).train()
    engine_model = copy.deepcopy(plain_model)
    batch = synthetic_batch(args.batch_size, args.latent_side, args.text_tokens, plain_model.mmdit_config.text_dim)
    flow = FlowMatchingConfig()
    lr = 1e-3

    optimizer = torch.optim.AdamW(plain_model.parameters(), lr=lr, weight_decay=0.0)

    def plain_step() -> None:
        loss, _ = flow_matching_loss(plain_model, batch, flow)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(plain_model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with tempfile.TemporaryDirectory(prefix="bench-mmdit-") as out_dir:
        config = parse_config({
            "task": {"name": "mmdit_t2i", "config": {"preset": "tiny"}},
            "data": {"datasets": [{"name": "synthetic", "path": out_dir}]},
            "optim": {"lr": lr, "grad_clip": 1.0},
            "engine": {"zero_stage": 0, "precision": "fp32", "micro_batch_size": args.batch_size},
            "run": {"out_dir": out_dir, "max_steps": args.steps + args.warmup, "progress": False},
        }, source="benchmarks.mmdit_cpu_step")
        dist_info = init_distributed(config.engine)
        try:
            engine = create_engine(engine_model, {"default": list(engine_model.parameters())}, config, dist_info)

            def engine_step() -> None:
                loss, _ = flow_matching_loss(engine, batch, flow)
                engine.backward(loss)
                engine.step()

            plain, deepspeed = time_interleaved(plain_step, engine_step, args.steps, args.warmup)
        finally:
            close_distributed()

    plain_median, engine_median = statistics.median(plain), statistics.median(deepspeed)
    # Step-time ratio, as benchmarks/deepspeed_cpu_step.py reports it for the MLLM (target <= 1.2).
    metrics = {"ratio_to_plain_torch": round(engine_median / plain_median, 3),
               "plain_step_ms": round(1000 * plain_median, 2),
               "deepspeed_step_ms": round(1000 * engine_median, 2)}
    notes = {"batch_size": args.batch_size, "latent_side": args.latent_side, "text_tokens": args.text_tokens,
             "steps": args.steps, "warmup": args.warmup, "torch_threads": torch.get_num_threads(),
             "seconds": {"plain": plain, "deepspeed": deepspeed}}
    if args.write:
        write_result(NAME, metrics, baseline="plain PyTorch loop: same tiny MMDiT, loss, batch, AdamW and clipping",
                     command=" ".join(["python -m benchmarks.mmdit_cpu_step", *(argv or [])]), notes=notes)
    return {"metrics": metrics, "notes": notes}


if __name__ == "__main__":
    main()
