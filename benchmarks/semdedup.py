"""SemDeDup against the exact all-pairs search it approximates, on clustered 512-d embeddings (20,000 by
default, a few minutes; the issue's goal was set at `--rows 100000`, where all-pairs took about 8 minutes a
round on one thread at load average 15-25, so about 45 minutes for the five rounds).

Both sides run the same greedy pass (`data_engine.curation.dedup.greedy_duplicates`: in keep order, a row is a
duplicate of its most similar earlier kept row when their cosine is at least 1 - eps), the all-pairs side over
every row at once (blocked matrix products), SemDeDup inside each k-means cluster (`near_duplicates`, k-means
included in its time). The data: topic centres, rows scattered around them (cosine about 0.6 between rows of
one topic), and a share of rows that are near copies of another row (cosine about 0.99).

speedup_vs_all_pairs: all-pairs seconds / SemDeDup seconds, round by round of the harness's interleaved
repeats (median, min, max); both sides are warmed up on a tenth of the rows first.
recall_vs_all_pairs: of the rows all-pairs marks as duplicates, the share SemDeDup marks too.

Both sides run on the same pinned BLAS thread count, `--threads` (default 1, recorded in `machine.threads`): on
the 2-core machine shared with other jobs, two BLAS threads wait on each other whenever one is descheduled (a
1000 x 512 cluster's similarity matrix took 97 ms on two threads against 8 ms on one, at load average 7).
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.common import MIN_REPEATS, interleaved, ratio_spread, spread, start_benchmark, write_result
from data_engine.curation.dedup import greedy_duplicates, near_duplicates

NAME = "semdedup"


def clustered_embeddings(rows: int, dim: int, topics: int, copy_share: float, seed: int) -> np.ndarray:
    """Unit rows: topic centre + spread 0.8, and `copy_share` of them an earlier row + noise 0.15."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = rng.standard_normal((rows, dim)).astype(np.float32) / np.float32(np.sqrt(dim))
    vectors = centres[rng.integers(0, topics, rows)] + np.float32(0.8) * noise
    copies = np.flatnonzero(rng.random(rows) < copy_share)
    copies = copies[copies > 0]
    originals = (rng.random(len(copies)) * copies).astype(np.int64)  # an earlier row (itself possibly a copy)
    for copy, original in zip(copies, originals):
        vectors[copy] = vectors[original] + np.float32(0.15) * noise[copy]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors[rng.permutation(rows)]  # keep order unrelated to how the rows were made


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--topics", type=int, default=500)
    parser.add_argument("--copy-share", type=float, default=0.2)
    parser.add_argument("--eps", type=float, default=0.05)
    parser.add_argument("--cluster-size", type=int, default=1000)  # the dedup stage's semantic_cluster_size
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS)
    parser.add_argument("--threads", type=int, default=1)  # BLAS threads, both sides
    args = parser.parse_args(argv)
    machine = start_benchmark(threads=args.threads)

    vectors = clustered_embeddings(args.rows, args.dim, args.topics, args.copy_share, seed=0)
    order = list(range(args.rows))
    ids = [f"r{i}" for i in order]
    threshold = 1.0 - args.eps

    def semdedup() -> set[int]:
        return set(near_duplicates(ids, vectors, order, threshold=threshold, cluster_size=args.cluster_size,
                                   kind="semantic"))

    def all_pairs() -> set[int]:
        duplicate_of, _ = greedy_duplicates(vectors, threshold)
        return set(np.flatnonzero(duplicate_of >= 0).tolist())

    warm = args.rows // 10  # warm-up: sklearn imported, BLAS threads started, on a tenth of the rows
    near_duplicates(ids[:warm], vectors[:warm], order[:warm], threshold=threshold,
                    cluster_size=args.cluster_size)
    greedy_duplicates(vectors[:warm], threshold)

    found: dict[str, set[int]] = {}

    def side(name: str, run) -> None:
        found[name] = run()

    seconds = interleaved({"semdedup": lambda: side("semdedup", semdedup),
                           "all_pairs": lambda: side("all_pairs", all_pairs)}, repeats=args.repeats, warmup=0)
    exact = found["all_pairs"]
    recall = len(exact & found["semdedup"]) / len(exact) if exact else 1.0
    write_result(NAME, {
        "speedup_vs_all_pairs": ratio_spread(seconds["all_pairs"], seconds["semdedup"], 2),
        "recall_vs_all_pairs": round(recall, 5),
        "semdedup_seconds": spread(seconds["semdedup"], 3),
        "all_pairs_seconds": spread(seconds["all_pairs"], 3),
    }, machine=machine, goals={"speedup_vs_all_pairs": (">=", 20), "recall_vs_all_pairs": (">=", 0.99)},
        baseline="exact blocked all-pairs greedy search over the same rows, same threshold, same run "
                 "(interleaved repeats after a warm-up; goals set at 100,000 rows)",
        command=f"python -m benchmarks.semdedup --rows {args.rows} --dim {args.dim} --repeats {args.repeats} "
                f"--threads {args.threads}",
        notes={"eps": args.eps, "cluster_size": args.cluster_size, "topics": args.topics,
               "copy_share": args.copy_share, "repeats": args.repeats,
               "duplicates_all_pairs": len(exact), "duplicates_semdedup": len(found["semdedup"]),
               "semdedup_only": len(found["semdedup"] - exact),
               "seconds": seconds})


if __name__ == "__main__":
    main()
