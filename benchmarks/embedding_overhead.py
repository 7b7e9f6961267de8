"""Embedding stage overhead: the embed_captions stage (through the stage runner: Arrow columns in and out,
caption-key choice, per-row bookkeeping) versus calling sentence-transformers directly on the same captions
with the same model and batch size, in one process. Ray's own per-job costs are measured by
benchmarks/runtime_overhead.py.

overhead_fraction = stage seconds / direct seconds - 1 (target <= 0.10).
"""

from __future__ import annotations

import argparse
import random

import pyarrow as pa

from benchmarks.overhead import write_stage_overhead
from data_engine.job import StageSpec
from data_engine.readers import row_id
from data_engine.rebalance.tagging import default_embedding_model, embed, load_encoder
from data_engine.schemas import CAPTION

NAME = "embedding_overhead"
WORDS = ("a red car parked beside an old brick building under a cloudy sky with trees and people walking "
         "dog cat bicycle mountain river bridge street market lamp window table chair painting").split()


def synthetic_captions(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(15, 30))) for _ in range(count)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--captions", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    captions = synthetic_captions(args.captions)
    table = pa.Table.from_pylist([{"id": row_id("bench", str(i)), "source_dataset": "bench", "upstream_id": str(i),
                                   "license": "none", "captions": [("long/en", text)]}
                                  for i, text in enumerate(captions)], schema=CAPTION.arrow())
    stage = StageSpec(op="embed_captions", config={}).build()
    stage.setup()
    encoder = load_encoder(default_embedding_model())
    embed(encoder, captions[:args.batch_size])  # warm up

    def direct() -> None:
        for start in range(0, len(captions), args.batch_size):
            embed(encoder, captions[start:start + args.batch_size], batch_size=args.batch_size)

    write_stage_overhead(NAME, stage, table, direct, batch_size=args.batch_size, unit="captions", repeats=args.repeats,
                         baseline="SentenceTransformer.encode on the same captions, same model and batch size",
                         command=f"python -m benchmarks.embedding_overhead --captions {args.captions}")


if __name__ == "__main__":
    main()
