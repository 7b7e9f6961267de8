"""Tiny MMDiT training step on the CPU: through the trainer's DeepSpeed engine versus a plain PyTorch loop.

Both run the same model (same initial weights), the same flow-matching loss on the same synthetic batch of
one bucket, and AdamW; the engine adds what the trainer really does per step in one process (ZeRO stage 0 as
mmdit_t2i_tiny.yaml sets it, gloo, gradient clipping, the LR scheduler). Ratio = engine step time / plain
step time (1.0 = no overhead), step by step of the harness's interleaved repeats (goal <= 1.2).
"""

from __future__ import annotations

import argparse
import copy
import tempfile

import torch

from benchmarks.common import MIN_REPEATS, interleaved, ratio_spread, spread, start_benchmark, write_result
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


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mmdit_cpu_step", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--latent-side", type=int, default=16, help="latent grid side (128 px images -> 16)")
    parser.add_argument("--text-tokens", type=int, default=32)
    parser.add_argument("--write", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    if args.steps < MIN_REPEATS:
        parser.error(f"--steps must be at least {MIN_REPEATS}")
    machine = start_benchmark()

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

            seconds = interleaved({"plain": plain_step, "deepspeed": engine_step}, repeats=args.steps,
                                  warmup=args.warmup)
        finally:
            close_distributed()

    metrics = {"ratio_to_plain_torch": ratio_spread(seconds["deepspeed"], seconds["plain"]),
               "plain_step_ms": spread([1000 * s for s in seconds["plain"]], 2),
               "deepspeed_step_ms": spread([1000 * s for s in seconds["deepspeed"]], 2)}
    notes = {"batch_size": args.batch_size, "latent_side": args.latent_side, "text_tokens": args.text_tokens,
             "steps": args.steps, "warmup": args.warmup, "torch_threads": torch.get_num_threads(),
             "seconds": seconds}
    if args.write:
        write_result(NAME, metrics, baseline="plain PyTorch loop: same tiny MMDiT, loss, batch, AdamW and clipping",
                     command=" ".join(["python -m benchmarks.mmdit_cpu_step", *(argv or [])]), notes=notes,
                     machine=machine, goals={"ratio_to_plain_torch": ("<=", 1.2)})
    return {"metrics": metrics, "notes": notes}


if __name__ == "__main__":
    main()
