"""What OCR and the caption filters cost on top of captioning: the stages of `pipelines/jobs/caption.yaml` (OCR
text -> OCR-aware captions -> OCR post-filter -> caption content filter) against caption generation alone
(caption_image without OCR), on the same images, the same backend and the same caption settings, each through
the stage runner in one process.

The harness warms both sides up and interleaves them (chain, alone, alone, chain, ...) so that load on a
shared machine falls on both alike; median, min and max are written. Caption budgets are the production defaults of caption_image
(64 / 256 / 768 / 384 new tokens), not the demo job's few tokens, so generation weighs what it weighs in
production relative to OCR; the model is still the tiny random Qwen3-VL (`make tiny-models`), far cheaper per
token than Qwen3-VL-8B, so this fraction is an upper bound of the production one. A random model stops at a
random end-of-sequence token, and OCR text changes the prompts, so the two sides would otherwise generate different
numbers of tokens (the first run gave a negative overhead): both sides now generate every caption to its full
budget (`min_new_tokens`), figure `overhead_fraction_full_budget`; the free-length figure `overhead_fraction` of
the first run stays in the result's notes.

overhead_fraction_full_budget = chain seconds / captioning-alone seconds - 1, round by round (goal: <= 0.15, issue #14).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pyarrow as pa

from benchmarks.common import MIN_REPEATS, interleaved, spread, start_benchmark, write_result
from data_engine.demo_corpus import generate_demo_corpus
from data_engine.readers import row_id
from data_engine.schemas import CAPTION
from data_engine.stage import Stage
from data_engine.stage_runner import apply_stage
from pipelines.jobfile import JOBS_DIR, load_job

NAME = "caption_chain"
NATURAL_KINDS = ("landscape", "photo_crop")  # what the 512p curation keeps of the demo corpus
# The first run, before both sides generated to the full budget (1 image, load 15-25 in 3 of 5 rounds).
FREE_LENGTH_RUN = {"median": -0.1145, "min": -0.6203, "max": 0.0878, "images": 1, "date": "2026-12-02T07:34:15Z"}
PRODUCTION_BUDGETS = "{short: 64, long: 256, extended_long: 768, structured: 384}"  # caption_image's defaults


def natural_images(count: int) -> list[bytes]:
    """`count` natural-looking demo-corpus images (half of the landscapes carry a signboard OCR reads)."""
    with tempfile.TemporaryDirectory() as directory:
        corpus = generate_demo_corpus(Path(directory), n_procedural=count * 2)
        paths = sorted(p for p in (corpus.out_dir / "procedural").iterdir() if p.stem.endswith(NATURAL_KINDS))
        return [path.read_bytes() for path in paths[:count]]


def chain_stages(torch_threads: int) -> tuple[list[tuple[Stage, int]], list[tuple[Stage, int]]]:
    """(the caption job's stages, caption_image alone), both from caption.yaml with production budgets."""
    job = load_job(JOBS_DIR / "caption.yaml", [f"stages.caption_image.config.max_new_tokens={PRODUCTION_BUDGETS}",
                                               "stages.caption_image.config.image_max_side=768",
                                               f"stages.caption_image.config.backend.torch_threads={torch_threads}"])
    chain = [(spec.build(), spec.stage_resources().batch_size) for spec in job.stages]
    alone_spec = next(spec for spec in job.stages if spec.op == "caption_image")
    alone_spec = alone_spec.model_copy(update={"config": alone_spec.config | {"ocr_aware": False}})
    alone = [(alone_spec.build(), alone_spec.stage_resources().batch_size)]
    longest = max(alone[0][0].config.max_new_tokens.values())
    for stage, _ in chain + alone:
        stage.setup()
        model = getattr(getattr(stage, "backend", None), "model", None)
        if model is not None:  # every caption to its budget (max_new_tokens caps it): the same tokens on both sides
            model.generation_config.min_new_tokens = longest
    return chain, alone


def run_stages(stages: list[tuple[Stage, int]], table: pa.Table) -> pa.Table:
    for stage, batch_size in stages:
        table, _ = apply_stage(stage, table, batch_size)
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS)
    parser.add_argument("--torch-threads", type=int, default=2)
    args = parser.parse_args(argv)
    machine = start_benchmark(threads=args.torch_threads)
    images = natural_images(args.images)
    table = pa.Table.from_pylist([{"id": row_id("bench", str(i)), "source_dataset": "bench", "upstream_id": str(i),
                                   "license": "generated", "image_bytes": image} for i, image in enumerate(images)],
                                 schema=CAPTION.arrow())
    chain, alone = chain_stages(args.torch_threads)
    results: dict[str, pa.Table] = {}

    def run(side: str, stages: list[tuple[Stage, int]]) -> None:
        results[side] = run_stages(stages, table)

    timings = interleaved({"chain": lambda: run("chain", chain), "alone": lambda: run("alone", alone)},
                          repeats=args.repeats)
    result = results["chain"]
    with_text = sum(bool(lines) for lines in result.column("ocr_lines").to_pylist()) if "ocr_lines" in \
        result.column_names else None
    metrics = {"overhead_fraction_full_budget": spread([c / a - 1 for c, a in zip(timings["chain"], timings["alone"])]),
               "chain_s": spread(timings["chain"], 3), "captioning_alone_s": spread(timings["alone"], 3)}
    write_result(NAME, metrics, machine=machine,
                 baseline="caption_image alone (no OCR, no filters) on the same images, backend and budgets",
                 command=f"python -m benchmarks.caption_chain --images {args.images} --repeats {args.repeats}",
                 goals={"overhead_fraction_full_budget": ("<=", 0.15)},
                 notes={"images": f"{len(images)} natural-looking demo-corpus images, {with_text} with text OCR read",
                        "repeats": f"{args.repeats} per side, interleaved by the harness after one warm-up pass each",
                        "model": "tiny random Qwen3-VL (transformers backend), production max_new_tokens",
                        "seconds": timings,
                        "overhead_fraction (free lengths)": FREE_LENGTH_RUN})


if __name__ == "__main__":
    main()
