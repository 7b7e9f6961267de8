"""MMDiT training-step MFU: the `1b` preset in bf16 at 1024p token counts (target >= 40% on an H100/H200).

Self-contained on purpose: imports torch and `trainer.models.mmdit` / `trainer.models.attention` only (no
deepspeed, ray, diffusers or pydantic), so it runs on a bare GPU machine with PyTorch:

    python -m benchmarks.mmdit_mfu --preset 1b --steps 10 --resolution 1024 [--compile]
    python -m benchmarks.mmdit_mfu --preset tiny --steps 1 --resolution 64 --device cpu   # smoke test

One step = forward + backward + AdamW update under bf16 autocast (fp32 master weights), synthetic inputs
of one aspect-ratio bucket: resolution x resolution pixels -> (resolution / 16)^2 image tokens, plus
`--text-tokens` text tokens. Model FLOPs per step are analytic, the useful work of the step:
6 * (block weights a token passes through) * tokens + 12 * layers * tokens^2 * hidden (attention scores and
values, forward and backward); activation recompute (`--checkpointing`) is not useful work and is not counted.
`mfu` (the headline, issue 17) = analytic FLOPs / median step time / the GPU's dense bf16 peak. Beside it,
`mfu_counted` = the FLOPs `torch.utils.flop_counter.FlopCounterMode` counts over one eager step (every matmul
and attention kernel that runs, recompute included) over the same time: the hardware's utilisation. Before
issue 17 `mfu` was the counted figure. Steps are timed by the harness (warm-up, then repeated steps).
Results go to benchmarks/results/mmdit_mfu.json when run on a GPU; a CPU run only prints them (a CPU has no
agreed peak unless --peak-tflops is given; benchmarks/mmdit_cpu_roofline.py is the CPU proxy).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch

from benchmarks.common import MIN_REPEATS, interleaved, spread, start_benchmark

from trainer.models.mmdit import MMDiT, count_parameters, preset_config, stream_matmul_parameters

NAME = "mmdit_mfu"
# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, from the vendors' data sheets; first match wins.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H200", 989.4), ("H800", 989.4),
    ("GH200", 989.4), ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L4", 121.0),
)


def peak_tflops(device: torch.device, override: float | None) -> tuple[float | None, str]:
    if override is not None:
        return override, "--peak-tflops"
    if device.type != "cuda":
        return None, "none (CPU)"
    name = torch.cuda.get_device_name(device)
    for fragment, peak in PEAK_BF16_TFLOPS:
        if fragment in name:
            return peak, f"data-sheet dense bf16 peak for {fragment}"
    return None, f"unknown GPU {name!r}: pass --peak-tflops"


def synthetic_inputs(model: MMDiT, batch: int, resolution: int, text_tokens: int,
                     device: torch.device) -> dict[str, torch.Tensor]:
    config = model.mmdit_config
    side = resolution // 8  # Wan VAE: 8x spatial compression
    return {
        "latents": torch.randn(batch, config.in_channels, 1, side, side, device=device),
        "timestep": torch.rand(batch, device=device),
        "text_states": torch.randn(batch, text_tokens, config.text_dim, device=device),
    }


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, inputs: dict[str, torch.Tensor],
               autocast_dtype: torch.dtype | None) -> None:
    device_type = inputs["latents"].device.type
    with torch.autocast(device_type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
        prediction = model(inputs["latents"], inputs["timestep"], inputs["text_states"])
        loss = (prediction.float() - inputs["latents"]).pow(2).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def counted_flops(model: MMDiT, optimizer: torch.optim.Optimizer, inputs: dict[str, torch.Tensor],
                  autocast_dtype: torch.dtype | None) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        train_step(model, optimizer, inputs, autocast_dtype)
    return counter.get_total_flops()


def analytic_flops(model: MMDiT, batch: int, image_tokens: int, text_tokens: int) -> int:
    """Useful FLOPs of one training step (forward + backward = 3x forward): 2 per weight per token through its
    stream's block weights, and the attention scores and weighted values over all tokens."""
    config = model.mmdit_config
    image_weights, text_weights = stream_matmul_parameters(model)
    linear = 6 * (image_weights * image_tokens + text_weights * text_tokens) * batch
    tokens = image_tokens + text_tokens
    attention = 12 * config.num_layers * tokens * tokens * config.hidden_size * batch
    return linear + attention


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mmdit_mfu", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="1b")
    parser.add_argument("--steps", type=int, default=10, help=f"timed steps (at least {MIN_REPEATS})")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (allocator, autotuning, compile)")
    parser.add_argument("--resolution", type=int, default=1024, help="square image side in pixels")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--text-tokens", type=int, default=512)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--compile", action="store_true", help="torch.compile each dual-stream block")
    parser.add_argument("--checkpointing", action="store_true", help="activation checkpointing per block")
    parser.add_argument("--attention-backend", default="auto")
    parser.add_argument("--peak-tflops", type=float, help="override the device's dense bf16 peak")
    args = parser.parse_args(argv)
    if args.resolution % 16:
        parser.error(f"--resolution {args.resolution} must be a multiple of 16 (VAE /8, patch /2)")

    machine = start_benchmark()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA device is visible; use --device cpu for a smoke run")
    autocast_dtype = torch.bfloat16 if device.type == "cuda" else None
    torch.manual_seed(0)
    with device:  # initialise on the device: a CPU init of 1B parameters would take most of the budget
        model = MMDiT(preset_config(args.preset)).train()
    torch.nn.init.normal_(model.head.weight, std=0.02)  # a zero head would give the first steps no gradient
    model.attention_backend = args.attention_backend
    model.gradient_checkpointing = args.checkpointing
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.type == "cuda")
    inputs = synthetic_inputs(model, args.batch_size, args.resolution, args.text_tokens, device)
    image_tokens = model.patchify(inputs["latents"]).shape[1]

    flops = counted_flops(model, optimizer, inputs, autocast_dtype)
    if args.compile:
        for block in model.blocks:
            block.compile()

    def step() -> None:
        train_step(model, optimizer, inputs, autocast_dtype)
        synchronize(device)

    seconds = interleaved({"train_step": step}, repeats=args.steps, warmup=args.warmup)["train_step"]
    step_seconds = statistics.median(seconds)
    peak, peak_source = peak_tflops(device, args.peak_tflops)
    model_flops = analytic_flops(model, args.batch_size, image_tokens, args.text_tokens)
    tokens = args.batch_size * (image_tokens + args.text_tokens)

    def utilisation(flops_per_step: int) -> dict | None:
        return spread([flops_per_step / s / 1e12 / peak for s in seconds], 4) if peak else None

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    metrics = {
        "mfu": utilisation(model_flops),
        "mfu_counted": utilisation(flops),
        "achieved_tflops": spread([model_flops / s / 1e12 for s in seconds], 2),
        "step_seconds": spread(seconds, 4),
        "tokens_per_s": spread([tokens / s for s in seconds], 1),
    }
    notes = {
        "gpu": gpu, "device": str(device), "preset": args.preset, "parameters": count_parameters(model),
        "resolution": args.resolution, "batch_size": args.batch_size, "image_tokens": image_tokens,
        "text_tokens": args.text_tokens, "steps": args.steps, "warmup": args.warmup, "compile": args.compile,
        "checkpointing": args.checkpointing, "precision": "bf16 autocast, fp32 master weights, fused AdamW"
        if autocast_dtype else "fp32",
        "flop_count_method": "mfu: analytic model FLOPs (6 x block weights per token x tokens + attention, "
                             "recompute not counted); mfu_counted: torch.utils.flop_counter.FlopCounterMode over "
                             "one eager training step (forward + backward matmuls and attention, recompute "
                             "included; optimizer and elementwise ops excluded)",
        "flops_per_step_counted": flops,
        "flops_per_step_analytic": model_flops,
        "peak_tflops": peak, "peak_source": peak_source, "step_seconds_all": [round(s, 4) for s in seconds],
        "torch": torch.__version__,
    }
    print(json.dumps({"metrics": metrics, "notes": notes}, indent=2))
    if device.type == "cuda":
        from benchmarks.common import write_result

        command = " ".join(["python -m benchmarks.mmdit_mfu", *(sys.argv[1:] if argv is None else argv)])
        write_result(NAME, {key: value for key, value in metrics.items() if value is not None},
                     baseline=f"dense bf16 peak of the GPU ({peak_source})", command=command, notes=notes,
                     machine=machine, goals={"mfu": (">=", 0.4)})
    return {"metrics": metrics, "notes": notes}


if __name__ == "__main__":
    main()
