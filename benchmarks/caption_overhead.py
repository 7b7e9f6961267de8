"""Captioning pipeline overhead: the caption_image stage (through the stage runner: prompt building, image
downscaling, output parsing and JSON validation, Arrow columns) versus calling the same backend directly
on the same batch of requests, in one process, with the tiny Qwen3-VL on the `transformers` backend.

overhead_fraction = stage seconds / direct backend seconds - 1.
"""

from __future__ import annotations

import argparse
import io
import pyarrow as pa
from PIL import Image

from benchmarks.common import MIN_REPEATS, start_benchmark
from benchmarks.overhead import write_stage_overhead
from data_engine.job import StageSpec
from data_engine.readers import row_id
from data_engine.schemas import CAPTION

NAME = "caption_overhead"


def gradient_png(index: int, side: int) -> bytes:
    image = Image.linear_gradient("L").resize((side, side)).convert("RGB").rotate(index * 17 % 360)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS)
    args = parser.parse_args(argv)
    start_benchmark()
    images = [gradient_png(i, args.side) for i in range(args.images)]
    table = pa.Table.from_pylist([{"id": row_id("bench", str(i)), "source_dataset": "bench", "upstream_id": str(i),
                                   "license": "none", "image_bytes": image} for i, image in enumerate(images)],
                                 schema=CAPTION.arrow())
    config = {"backend": {"kind": "transformers", "model": "tiny:qwen3vl", "temperature": 1.0},
              "image_max_side": args.side, "max_new_tokens": {"short": 8, "long": 16, "extended_long": 24,
                                                              "structured": 16}}
    stage = StageSpec(op="caption_image", config=config).build()
    stage.setup()
    batches = [[request for image in images[start:start + args.batch_size]
                for request in stage.requests_for_row(image, [])]
               for start in range(0, len(images), args.batch_size)]
    def direct() -> None:
        for requests in batches:
            stage.backend.generate(requests)

    write_stage_overhead(NAME, stage, table, direct, batch_size=args.batch_size, unit="images", repeats=args.repeats,
                         baseline="TransformersBackend.generate on the same prepared requests (tiny Qwen3-VL)",
                         command=f"python -m benchmarks.caption_overhead --images {args.images} --repeats {args.repeats}")


if __name__ == "__main__":
    main()
