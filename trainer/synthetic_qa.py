"""Small `qa_conversation` shard directories drawn procedurally, for `make train-mllm`, tests and benchmarks.

Each row is one picture (coloured squares on a grey canvas, PNG) and a one-turn question about it. The
`spatial_qa` flavour asks OpenSpatial-style sub-tasks with checkable answers (`relative_direction`: a
choice, `count` and `distance`: numbers); `general_qa` asks the colour of a square (a general-domain sample,
the kind KL distillation applies to). Every tenth row is written as rejected, so readers must filter.
Rows depend only on (flavour, seed, row number): a rerun writes the same rows.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
from PIL import Image, ImageDraw

from data_engine.schemas import QA_CONVERSATION
from data_engine.output_dir import standalone_manifest, write_manifest
from data_engine.shards import write_shard
from trainer.core import register_synthetic_dataset

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (230, 210, 40)}
CANVAS = 64
SQUARE = 12
FLAVOURS = ("spatial_qa", "general_qa")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _draw(squares: list[tuple[str, int, int]]) -> Image.Image:
    image = Image.new("RGB", (CANVAS, CANVAS), (128, 128, 128))
    draw = ImageDraw.Draw(image)
    for colour, left, top in squares:
        draw.rectangle([left, top, left + SQUARE - 1, top + SQUARE - 1], fill=COLOURS[colour])
    return image


def _question(flavour: str, rng: random.Random) -> tuple[list[tuple[str, int, int]], str, str, str, str]:
    """(squares, sub-task, question, answer, answer type)."""
    colours = rng.sample(sorted(COLOURS), 2)
    if flavour == "general_qa":
        left, top = rng.randrange(0, CANVAS - SQUARE), rng.randrange(0, CANVAS - SQUARE)
        return [(colours[0], left, top)], "color", "What colour is the square?", colours[0], "choice"
    task = rng.choice(["relative_direction", "count", "distance"])
    if task == "count":
        count = rng.randint(1, 3)
        squares = [(colours[0], 4 + 20 * i, rng.randrange(0, CANVAS - SQUARE)) for i in range(count)]
        return squares, task, f"How many {colours[0]} squares are there?", str(count), "number"
    first_left, second_left = sorted(rng.sample(range(0, CANVAS - SQUARE, 4), 2))
    if rng.random() < 0.5:
        first_left, second_left = second_left, first_left
    squares = [(colours[0], first_left, 8), (colours[1], second_left, 40)]
    if task == "relative_direction":
        answer = "left" if first_left < second_left else "right"
        question = f"Is the {colours[0]} square to the left or to the right of the {colours[1]} square?"
        return squares, task, question, answer, "choice"
    distance = abs(first_left - second_left)
    question = f"How many pixels apart horizontally are the {colours[0]} and {colours[1]} squares?"
    return squares, task, question, str(distance), "number"


def synthetic_row(flavour: str, seed: int, number: int, held_out_every: int = 5) -> dict[str, Any]:
    rng = random.Random(f"{flavour}/{seed}/{number}")
    squares, task, question, answer, answer_type = _question(flavour, rng)
    image = _png(_draw(squares))
    rejected = number % 10 == 9
    # Each row is its own scene; with held_out_every=5, spatial rows 2, 7, 12, ... are held out for evaluation
    # (general rows never are; 0 holds none out).
    held_out = flavour == "spatial_qa" and held_out_every and number % held_out_every == 2 % held_out_every
    split = ("eval" if held_out else "train") if flavour == "spatial_qa" else None
    return {
        "id": f"{flavour}-{seed}-{number:06d}",
        "source_dataset": f"synthetic_{flavour}",
        "upstream_id": f"{number}",
        "license": "CC0-1.0",
        "images": [{"bytes": image, "uri": None, "width": CANVAS, "height": CANVAS,
                    "sha256": hashlib.sha256(image).hexdigest()}],
        "messages": [
            {"role": "user", "content": [{"type": "image", "text": None, "image_index": 0},
                                         {"type": "text", "text": question, "image_index": None}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer, "image_index": None}]},
        ],
        "task": task,
        "metadata": json.dumps({"answer_type": answer_type, "answer": answer,
                                "scene_id": f"{flavour}-{seed}-{number:06d}"}),
        "split": split,
        "reject_reason": "synthetic_holdout" if rejected else None,
        "reject_stage": "synthetic" if rejected else None,
        "reject_detail": "every tenth synthetic row is rejected so readers must filter" if rejected else None,
    }


def write_synthetic_qa(out_dir: Path, flavour: str, rows: int, *, seed: int = 0, shard_rows: int = 32,
                       held_out_every: int = 5) -> None:
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown synthetic flavour {flavour!r}; known: {', '.join(FLAVOURS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    schema = QA_CONVERSATION.arrow()
    shard_rows_written = []
    for shard_id, start in enumerate(range(0, rows, shard_rows)):
        records = [synthetic_row(flavour, seed, n, held_out_every)
                   for n in range(start, min(rows, start + shard_rows))]
        write_shard(out_dir, shard_id, pa.Table.from_pylist(records, schema=schema),
                    [{"name": "synthetic", "rows_in": len(records)}])
        shard_rows_written.append(len(records))
    rejected = sum(1 for n in range(rows) if n % 10 == 9)
    write_manifest(out_dir, standalone_manifest(QA_CONVERSATION, f"synthetic_{flavour}",
                                                {"flavour": flavour, "rows": rows, "seed": seed}, shard_rows_written,
                                                rejects={"synthetic:synthetic_holdout": rejected}))


@register_synthetic_dataset("spatial_qa")
def write_spatial_qa(out_dir: Path, rows: int) -> None:
    write_synthetic_qa(out_dir, "spatial_qa", rows)


@register_synthetic_dataset("general_qa")
def write_general_qa(out_dir: Path, rows: int) -> None:
    write_synthetic_qa(out_dir, "general_qa", rows)
