"""`make bench`: run every benchmark (or those named), then refresh the README table from benchmarks/results/."""

from __future__ import annotations

import importlib
import sys

from benchmarks.common import update_readme_table

# Module names under benchmarks/, each a benchmark with a `main(argv)` whose defaults take a few minutes at most.
# Not here: the GPU-only mmdit_mfu (run it on a GPU machine), and the shared modules of NOT_BENCHMARKS.
BENCHMARKS = ("runtime_overhead", "readers", "niqe", "iqa_cascade", "caption_overhead", "caption_chain",
              "embedding_overhead", "tagging", "semdedup", "caption_content_filter", "spatial_qa", "lifting", "render",
              "text_render", "packing", "deepspeed_cpu_step", "mmdit_cpu_step", "mmdit_cpu_roofline", "load",
              "grpo_step", "video_pairs")
GPU_BENCHMARKS = ("mmdit_mfu",)
NOT_BENCHMARKS = ("__init__", "common", "overhead", "run")


def main(argv: list[str] | None = None) -> None:
    names = (argv if argv is not None else sys.argv[1:]) or BENCHMARKS
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        raise SystemExit(f"unknown benchmarks {unknown}; known: {', '.join(BENCHMARKS)}")
    for name in names:
        importlib.import_module(f"benchmarks.{name}").main([])
    update_readme_table()


if __name__ == "__main__":
    main()
