"""One Flow-GRPO update of the tiny MMDiT on the CPU, split into its phases: rollout (SDE sampling with
step log-probs, CFG), reward (tiny Wan VAE decode + tiny aesthetic predictor) and train (the trained steps'
forward passes, reference passes for the KL, backward and the optimizer step). `rollout_fraction` = rollout /
total; no goal yet (issue 18). The phases run in sequence inside each update, so they are not interleaved
contenders: one warm-up update, then `--updates` (>= 5) timed ones, median/min/max per phase."""

from __future__ import annotations

import argparse
import copy
import time

import torch

from benchmarks.common import MIN_REPEATS, spread, start_benchmark, write_result
from trainer.models.mmdit import MMDiT, preset_config
from trainer.objectives.flow_grpo import (FlowGRPOConfig, flow_grpo_loss, group_advantages, sde_sample,
                                          trained_step_indices)
from trainer.rewards import build_reward_mixer

NAME = "grpo_step"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.grpo_step", description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=MIN_REPEATS, help="timed updates after one warm-up update")
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--latent-side", type=int, default=16, help="latent grid side (128 px images -> 16)")
    parser.add_argument("--write", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    if args.updates < MIN_REPEATS:
        parser.error(f"--updates must be at least {MIN_REPEATS}")
    machine = start_benchmark()

    config = FlowGRPOConfig(group_size=4, num_steps=6, timestep_fraction=0.5, guidance_scale=4.5, kl_beta=0.04)
    torch.manual_seed(0)
    model = MMDiT(preset_config("tiny"))
    torch.nn.init.normal_(model.head.weight, std=0.02)
    reference = copy.deepcopy(model).requires_grad_(False).eval()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    mixer = build_reward_mixer([{"name": "aesthetic", "model_path": "tiny:aesthetic"}], vae="tiny:wan_vae")
    generator = torch.Generator().manual_seed(0)
    batch = args.prompts * config.group_size
    states = torch.randn(args.prompts, 16, 64, generator=generator).repeat_interleave(config.group_size, 0)
    mask = torch.ones(batch, 16, dtype=torch.bool)
    phases: dict[str, list[float]] = {"rollout": [], "reward": [], "train": []}
    for update in range(args.updates + 1):  # the first update warms up (VAE and predictor loading)
        started = time.perf_counter()
        noise = torch.randn(batch, 16, 1, args.latent_side, args.latent_side, generator=generator)
        trajectory = sde_sample(model.eval(), noise, states, mask, num_steps=config.num_steps,
                                noise_level=config.noise_level, guidance_scale=config.guidance_scale,
                                generator=generator)
        rolled = time.perf_counter()
        rewards = mixer.latent_reward(trajectory.final, ["p"] * batch)
        rewarded = time.perf_counter()
        advantages, keep = group_advantages(rewards, config.group_size)
        steps = trained_step_indices(config.num_steps, config.timestep_fraction, generator)
        losses = flow_grpo_loss(model.train(), reference, trajectory, advantages, keep, steps, config, states, mask)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        trained = time.perf_counter()
        if update:
            for key, seconds in (("rollout", rolled - started), ("reward", rewarded - rolled),
                                 ("train", trained - rewarded)):
                phases[key].append(seconds)
    totals = [sum(values) for values in zip(*phases.values())]
    metrics = {f"{key}_s": spread(values, 3) for key, values in phases.items()}
    metrics.update(total_s=spread(totals, 3),
                   rollout_fraction=spread([r / t for r, t in zip(phases["rollout"], totals)], 3))
    notes = {"prompts": args.prompts, "group_size": config.group_size, "num_steps": config.num_steps,
             "trained_steps": len(steps), "latent_side": args.latent_side, "updates": args.updates,
             "torch_threads": torch.get_num_threads(), "seconds": phases}
    if args.write:
        write_result(NAME, metrics, baseline="none (phase split of one update; no goal yet)", machine=machine,
                     command=" ".join(["python -m benchmarks.grpo_step", *(argv or [])]), notes=notes)
    return {"metrics": metrics, "notes": notes}


if __name__ == "__main__":
    main()
