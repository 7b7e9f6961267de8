"""CPU proxy for MMDiT training efficiency (this machine has no GPU): forward + backward of `1b`-preset
dual-stream blocks (hidden 2048, 16 heads of 128) at a CPU-sized token count, fp32, all cores.

Contenders, warmed up and interleaved by the harness:
- `blocks`: the MMDiT with `--layers` blocks of the 1b preset (the last one's text stream keys/values only,
  as in every preset), forward, flow-style MSE loss, backward (no optimizer step: the proxy is the blocks'
  compute);
- `matmul`: a bare fp32 matmul of the blocks' largest shape (tokens x hidden) @ (hidden x MLP width), the
  roofline the blocks' matmuls cannot beat on this machine, measured in the same run.

fraction_of_matmul_roofline = (useful FLOPs of the step / blocks seconds) / (matmul FLOPs / matmul seconds),
round by round (goal >= 0.5). Useful FLOPs are benchmarks.mmdit_mfu's analytic count (6 x block weights per
token x tokens + attention; no recompute), the same definition as the GPU MFU.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import MIN_REPEATS, interleaved, ratio_spread, spread, start_benchmark, write_result
from benchmarks.mmdit_mfu import analytic_flops, synthetic_inputs
from trainer.models.mmdit import MMDiT, count_parameters, preset_config

NAME = "mmdit_cpu_roofline"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layers", type=int, default=2, help="1b-preset blocks (the preset has 10)")
    parser.add_argument("--resolution", type=int, default=256, help="pixels per side: (resolution/16)^2 tokens")
    parser.add_argument("--text-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS)
    args = parser.parse_args(argv)
    machine = start_benchmark()
    torch.manual_seed(0)
    model = MMDiT(preset_config("1b", num_layers=args.layers)).train()
    torch.nn.init.normal_(model.head.weight, std=0.02)  # a zero head would leave the blocks without gradient
    inputs = synthetic_inputs(model, args.batch_size, args.resolution, args.text_tokens, torch.device("cpu"))
    image_tokens = model.patchify(inputs["latents"]).shape[1]
    useful_flops = analytic_flops(model, args.batch_size, image_tokens, args.text_tokens)

    def blocks() -> None:
        prediction = model(inputs["latents"], inputs["timestep"], inputs["text_states"])
        (prediction - inputs["latents"]).pow(2).mean().backward()
        model.zero_grad(set_to_none=True)

    config = model.mmdit_config
    rows = args.batch_size * (image_tokens + args.text_tokens)
    generator = torch.Generator().manual_seed(0)
    left = torch.randn(rows, config.hidden_size, generator=generator)
    right = torch.randn(config.hidden_size, config.mlp_dim, generator=generator)
    matmul_flops = 2 * rows * config.hidden_size * config.mlp_dim

    seconds = interleaved({"blocks": blocks, "matmul": lambda: left @ right}, repeats=args.repeats)
    useful = [useful_flops / s / 1e9 for s in seconds["blocks"]]
    roofline = [matmul_flops / s / 1e9 for s in seconds["matmul"]]
    write_result(NAME, {
        "fraction_of_matmul_roofline": ratio_spread(useful, roofline),
        "useful_gflops": spread(useful, 1),
        "matmul_roofline_gflops": spread(roofline, 1),
        "step_seconds": spread(seconds["blocks"], 3),
    }, machine=machine,
        baseline=f"bare fp32 matmul ({rows} x {config.hidden_size}) @ ({config.hidden_size} x {config.mlp_dim}), "
                 "torch, same threads, same run, interleaved",
        command=f"python -m benchmarks.mmdit_cpu_roofline --layers {args.layers} --resolution {args.resolution} "
                f"--text-tokens {args.text_tokens} --batch-size {args.batch_size} --repeats {args.repeats}",
        goals={"fraction_of_matmul_roofline": (">=", 0.5)},
        notes={"preset": "1b", "layers": args.layers, "parameters": count_parameters(model),
               "image_tokens": image_tokens, "text_tokens": args.text_tokens, "batch_size": args.batch_size,
               "useful_flops_per_step": useful_flops, "precision": "fp32", "seconds": seconds})


if __name__ == "__main__":
    main()
