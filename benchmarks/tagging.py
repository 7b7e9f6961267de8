"""Tagging throughput of the tag_captions stage over the real vocabulary, as a fraction of this machine's
matmul roofline measured in the same run.

Vocabulary: every leaf of WordNet's noun hierarchy (the stage's default `taxonomy: wordnet`, 65K leaves),
embedded with the all-MiniLM-L6-v2 model the project ships (the stage's own cached leaf embeddings). Queries:
captions embedded with the same model (outside the timing, as embed_captions does it upstream).

Contenders, warmed up and interleaved by the harness, both over the same caption batches of the stage's
batch size:
- `tagging`: the stage through the stage runner: blockwise top-k retrieval, then adaptive diversity sampling
  and the tag names per caption (the whole `process_batch`);
- `matmul`: the bare fp32 score matrix product of the same shapes (caption batch x block of tags, every
  block), which the retrieval cannot beat.

fraction_of_matmul_roofline = matmul seconds / tagging seconds, round by round (goal >= 0.5). Before issue 17
the vocabulary was random unit vectors (the best case for the top-k pruning) without diversity sampling:
that figure is not comparable and is not measured any more.
"""

from __future__ import annotations

import argparse

import pyarrow as pa

from benchmarks.common import MIN_REPEATS, interleaved, rate_spread, ratio_spread, spread, start_benchmark, write_result
from benchmarks.embedding_overhead import synthetic_captions
from data_engine.readers import row_id
from data_engine.rebalance.tagging import default_embedding_model, embed, load_encoder
from data_engine.schemas import CAPTION
from data_engine.stage_runner import apply_stage
from data_engine.stages.rebalance_tags import TagCaptionsConfig, TagCaptionsStage

NAME = "tagging"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--captions", type=int, default=1024)
    parser.add_argument("--taxonomy", default="wordnet", help="the stage's taxonomy setting")
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS)
    args = parser.parse_args(argv)
    import torch

    machine = start_benchmark()
    stage = TagCaptionsStage(TagCaptionsConfig(taxonomy=args.taxonomy))
    stage.setup_on_node()
    stage.setup()  # builds (or loads the cached) leaf embeddings: not timed, a node does it once
    batch_size = TagCaptionsStage.default_resources.batch_size
    captions = synthetic_captions(args.captions, seed=1)
    queries = embed(load_encoder(default_embedding_model()), captions)
    table = pa.Table.from_pylist([{"id": row_id("bench", str(i)), "source_dataset": "bench", "upstream_id": str(i),
                                   "license": "none"} for i in range(len(captions))], schema=CAPTION.arrow())
    table = table.append_column("caption_embedding", pa.array(queries.tolist(), type=pa.list_(pa.float32())))
    tags = torch.from_numpy(stage.tag_vectors)
    query_batches = [torch.from_numpy(queries[start:start + batch_size]) for start in range(0, len(queries), batch_size)]
    block = stage.config.block_tags

    def matmul() -> None:
        for query in query_batches:
            for start in range(0, tags.shape[0], block):
                query @ tags[start:start + block].T

    def tagging() -> None:
        out, _ = apply_stage(stage, table, batch_size)
        assert out.column("tags").null_count == 0

    seconds = interleaved({"tagging": tagging, "matmul": matmul}, repeats=args.repeats)
    flops = 2.0 * len(captions) * tags.shape[0] * tags.shape[1]
    write_result(NAME, {
        "fraction_of_matmul_roofline": ratio_spread(seconds["matmul"], seconds["tagging"]),
        "matmul_gflops": spread([flops / s / 1e9 for s in seconds["matmul"]], 1),
        "captions_per_s": rate_spread(len(captions), seconds["tagging"], 1),
    }, machine=machine,
        baseline="bare blockwise fp32 matmul of the same shapes (torch, all cores), same run, interleaved",
        command=f"python -m benchmarks.tagging --captions {args.captions} --taxonomy {args.taxonomy} "
                f"--repeats {args.repeats}",
        goals={"fraction_of_matmul_roofline": (">=", 0.5)},
        notes={"tags": int(tags.shape[0]), "dim": int(tags.shape[1]), "top_k": stage.config.top_k,
               "target_tags": stage.config.target_tags, "block": block, "batch_size": batch_size,
               "vocabulary": f"{args.taxonomy} leaves embedded with all-MiniLM-L6-v2",
               "queries": "synthetic captions embedded with the same model", "seconds": seconds})


if __name__ == "__main__":
    main()
