"""Tagging throughput: top-1000 tags per caption over a 285K-leaf synthetic vocabulary (384-d, MiniLM's
width), blockwise as the tag_captions stage does it, as a fraction of this machine's measured rate for the
bare score matrix multiply of the same shapes (the roofline the retrieval cannot beat).

fraction_of_matmul_roofline = (2 * captions * tags * dim / tagging seconds) / matmul FLOP/s.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from benchmarks.common import write_result
from data_engine.rebalance.tagging import top_k_tags

NAME = "tagging"


def unit_rows(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--captions", type=int, default=2048)
    parser.add_argument("--tags", type=int, default=285_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--top-k", type=int, default=1000)
    parser.add_argument("--block", type=int, default=32768)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    import torch

    rng = np.random.default_rng(0)
    queries, tags = unit_rows(rng, args.captions, args.dim), unit_rows(rng, args.tags, args.dim)
    q, t = torch.from_numpy(queries), torch.from_numpy(tags)
    flops = 2.0 * args.captions * args.tags * args.dim
    top_k_tags(queries[:64], tags[:args.block], args.top_k, args.block)  # warm up the kernels

    def matmul_seconds() -> float:
        started = time.perf_counter()
        for start in range(0, args.tags, args.block):  # same blocks, so memory is the same
            q @ t[start:start + args.block].T
        return time.perf_counter() - started

    def tagging_seconds() -> float:
        started = time.perf_counter()
        top_k_tags(queries, tags, args.top_k, args.block)
        return time.perf_counter() - started

    matmul = statistics.median(matmul_seconds() for _ in range(args.repeats))
    tagging = statistics.median(tagging_seconds() for _ in range(args.repeats))
    write_result(NAME, {
        "fraction_of_matmul_roofline": round(matmul / tagging, 3),
        "matmul_gflops": round(flops / matmul / 1e9, 1),
        "captions_per_s": round(args.captions / tagging, 1),
    }, baseline="bare blockwise fp32 matmul of the same shapes (torch, all threads)",
        command=f"python -m benchmarks.tagging --captions {args.captions} --tags {args.tags}",
        notes={"top_k": args.top_k, "block": args.block, "dim": args.dim, "torch_threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
