"""Caption type and language drawn with the probabilities stored in caption shards: frequencies, resume, tasks."""

from __future__ import annotations

import io
import json
import math
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from PIL import Image

from data_engine.captioning.prompts import load_prompt_set
from data_engine.schemas import CAPTION
from data_engine.shards import MANIFEST_NAME, atomic_write_json, write_shard
from data_engine.stages.caption import CaptionSampling
from trainer.captions import caption_probabilities, caption_sft_messages, draw_caption_key, parse_caption_sampling
from trainer.config import DatasetSpec
from trainer.core import ExampleError, RunContext, Sample
from trainer.data import MicroBatchStream
from trainer.models.qwen_vl import IGNORE
from trainer.objectives.mllm_sft import MllmSftConfig, MllmSftTask

# What the captioning stage writes by default (data_engine/stages/caption.py).
STORED = json.dumps(CaptionSampling().model_dump(mode="json"), sort_keys=True)
KEYS = [f"{kind}/{language}" for kind in ("short", "long", "extended_long", "structured") for language in ("en", "zh")]


def expected_probabilities(keys: list[str]) -> dict[str, float]:
    sampling = CaptionSampling()
    weights = {key: sampling.types[key.split("/")[0]] * sampling.languages[key.split("/")[1]] for key in keys}
    return {key: weight / sum(weights.values()) for key, weight in weights.items()}


@pytest.mark.parametrize("keys", [KEYS, [key for key in KEYS if key != "structured/zh"]],
                         ids=["all captions", "one caption refused by the parser"])
def test_empirical_frequencies_follow_the_stored_probabilities(keys: list[str]) -> None:
    draws = 8000
    counts = Counter(draw_caption_key(keys, STORED, seed, "row") for seed in range(draws))
    assert set(counts) == set(keys)
    for key, probability in expected_probabilities(keys).items():
        sigma = math.sqrt(probability * (1 - probability) / draws)
        assert abs(counts[key] / draws - probability) < 4 * sigma, (key, counts[key] / draws, probability)


def test_draws_are_a_function_of_the_seed_and_respect_zero_probabilities() -> None:
    assert [draw_caption_key(KEYS, STORED, seed, "r") for seed in range(50)] == \
        [draw_caption_key(KEYS, STORED, seed, "r") for seed in range(50)]
    english_short = json.dumps({"types": {"short": 1.0, "long": 0.0}, "languages": {"en": 1.0, "zh": 0.0}})
    assert {draw_caption_key(KEYS, english_short, seed, "r") for seed in range(100)} == {"short/en"}
    # No stored probabilities (multi-view collage rows): uniform over the captions the row has.
    assert caption_probabilities(["a/en", "b/en"], None) == [0.5, 0.5]
    with pytest.raises(ExampleError, match="^no_caption: row r: none of its captions"):
        draw_caption_key(["long/zh"], english_short, 0, "r")
    with pytest.raises(ExampleError, match="^bad_caption_sampling: row r: caption_sampling is not"):
        parse_caption_sampling("{not json", "r")
    with pytest.raises(ExampleError, match="^bad_caption_sampling"):
        parse_caption_sampling(json.dumps({"types": {"short": 1.0}}), "r")


def caption_row(number: int) -> dict:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (40 * (number % 6), 90, 160)).save(buffer, format="PNG")
    return {"id": f"cap-{number:04d}", "source_dataset": "test", "upstream_id": str(number), "license": "CC0-1.0",
            "image_bytes": buffer.getvalue(), "image_format": "PNG", "width": 64, "height": 48,
            "captions": [(key, f"caption {key} of image {number}") for key in KEYS],
            "caption_sampling": STORED}


@pytest.fixture(scope="module")
def caption_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("captions")
    rows = [caption_row(n) for n in range(24)]
    for shard, start in enumerate(range(0, len(rows), 12)):
        write_shard(out, shard, pa.Table.from_pylist(rows[start:start + 12], schema=CAPTION.arrow()), [])
    atomic_write_json(out / MANIFEST_NAME, {"schema": {"name": CAPTION.name, "version": CAPTION.version}})
    return out


@pytest.fixture(scope="module")
def task() -> MllmSftTask:
    context = RunContext(rank=0, world_size=1, device=torch.device("cpu"), dtype=torch.float32, out_dir=Path("."))
    return MllmSftTask(MllmSftConfig(model_path="tiny:qwen3vl", max_length=256, image_min_pixels=1024,
                                     image_max_pixels=4096), context)


def test_caption_row_becomes_an_sft_turn_on_the_drawn_caption(task: MllmSftTask) -> None:
    row = caption_row(3)
    sample = Sample(row=row, dataset="captions", general_domain=True, seed=11)
    key, messages = caption_sft_messages(row, sample.seed, load_prompt_set("caption/v1"))
    assert key == draw_caption_key(KEYS, STORED, 11, row["id"])
    example = task.prepare(sample)
    assert example.task == f"caption:{key}" and example.pixel_values is not None and example.general_domain
    tokenizer = task.processor.tokenizer
    trained = tokenizer.decode(example.targets[example.targets != IGNORE])
    assert trained == f"caption {key} of image 3<|im_end|>"
    prompt = load_prompt_set("caption/v1").text("types", *key.split("/"))
    assert prompt in tokenizer.decode(example.input_ids) and messages[0]["content"][1]["text"] == prompt


def streamed_caption_keys(task: MllmSftTask, caption_dir: Path, batches: int, state: dict | None = None):
    stream = MicroBatchStream(task, [DatasetSpec(name="captions", path=caption_dir)], seed=3, window=6, rank=0,
                              world_size=1)
    if state is not None:
        stream.load_state(state)
    tokenizer = task.processor.tokenizer
    texts = [tokenizer.decode(batch["targets"][batch["targets"] != IGNORE]) for batch in
             (next(stream) for _ in range(batches))]
    return texts, stream.state()


def test_stream_draws_are_reproduced_on_resume(task: MllmSftTask, caption_dir: Path) -> None:
    expected, _ = streamed_caption_keys(task, caption_dir, 10)
    drawn = Counter(key for text in expected for key in KEYS if f"caption {key} " in text)
    assert len(drawn) >= 3  # packs hold several captions of different types and languages
    head, state = streamed_caption_keys(task, caption_dir, 4)
    tail, _ = streamed_caption_keys(task, caption_dir, 6, json.loads(json.dumps(state)))
    assert head + tail == expected
