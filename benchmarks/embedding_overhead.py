"""Embedding stage overhead: the embed_captions stage (through the stage runner: Arrow columns in and out,
caption-key choice, per-row bookkeeping) versus calling sentence-transformers directly on the same captions
with the same model, in one process. Ray's own per-job costs are measured by benchmarks/runtime_overhead.py.

Both sides do the same encoder calls: the runner hands the stage `--batch-size` rows at a time (the stage's
default batch, 256) and the stage encodes them with `embed`'s batch size; the direct side takes the same
chunks of captions and calls `embed` on each with the same batch size (both recorded in the notes). Before
issue 17 the direct side encoded in batches of 256 against the stage's 128, which measured padding.

overhead_fraction = stage seconds / direct seconds - 1 (target <= 0.10).
"""

from __future__ import annotations

import argparse
import inspect
import random

import pyarrow as pa

from benchmarks.common import MIN_REPEATS, start_benchmark
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
    parser.add_argument("--captions", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=256, help="rows per stage call (the stage's default)")
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS)
    args = parser.parse_args(argv)
    start_benchmark()
    captions = synthetic_captions(args.captions)
    table = pa.Table.from_pylist([{"id": row_id("bench", str(i)), "source_dataset": "bench", "upstream_id": str(i),
                                   "license": "none", "captions": [("long/en", text)]}
                                  for i, text in enumerate(captions)], schema=CAPTION.arrow())
    stage = StageSpec(op="embed_captions", config={}).build()
    stage.setup()
    encoder = load_encoder(default_embedding_model())
    encode_batch = inspect.signature(embed).parameters["batch_size"].default  # what the stage encodes with

    def direct() -> None:
        for start in range(0, len(captions), args.batch_size):
            embed(encoder, captions[start:start + args.batch_size], batch_size=encode_batch)

    write_stage_overhead(NAME, stage, table, direct, batch_size=args.batch_size, unit="captions", repeats=args.repeats,
                         baseline=f"SentenceTransformer.encode on the same {args.batch_size}-caption chunks, same model, "
                                  f"same encode batch ({encode_batch}) as the stage",
                         command=f"python -m benchmarks.embedding_overhead --captions {args.captions} "
                                 f"--batch-size {args.batch_size} --repeats {args.repeats}",
                         goal=0.10, notes={"encode_batch_size": encode_batch})


if __name__ == "__main__":
    main()
