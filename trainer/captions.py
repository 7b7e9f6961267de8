"""Caption type and language drawn per training sample with the probabilities the caption shards store.

The captioning stage (data_engine/stages/caption.py) writes every caption type in every language per image
(`captions`: "<type>/<lang>" -> text) and, in `caption_sampling`, a JSON object
`{"types": {type: p}, "languages": {lang: p}}` with the training-time probabilities (report 4.1.2). A sample
takes caption "<type>/<lang>" with probability p(type) * p(lang), renormalised over the captions the row
really has (a caption the parser refused is absent). A row without `caption_sampling` (multi-view collages)
draws uniformly among its captions.

The draw is a pure function of the row and the per-sample seed the data stream derives from (data seed,
dataset, epoch, shard, row), so a resumed run draws exactly what the uninterrupted run drew, and the same
image gets fresh draws in every epoch.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from data_engine.captioning.prompts import PromptFileError, PromptSet, caption_prompt
from trainer.core import ExampleError

# Salted so that the caption draw does not correlate with other per-sample randomness seeded by sample.seed.
_SALT = "caption"


class StoredCaptionSampling(BaseModel):
    """The `caption_sampling` column as the captioning stage writes it."""

    model_config = ConfigDict(extra="forbid")

    types: dict[str, float]
    languages: dict[str, float]


def parse_caption_sampling(text: str | None, row_id: str) -> StoredCaptionSampling | None:
    if not text:
        return None
    try:
        return StoredCaptionSampling.model_validate(json.loads(text))
    except (json.JSONDecodeError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise ExampleError(f"bad_caption_sampling: row {row_id}: caption_sampling is not "
                           f"{{types, languages}} JSON ({first})") from None


def caption_probabilities(keys: Sequence[str], sampling: StoredCaptionSampling | None) -> list[float]:
    """Probability of each available caption key "<type>/<lang>" (sums to 1 unless every weight is 0)."""
    if sampling is None:
        return [1.0 / len(keys)] * len(keys)
    weights = []
    for key in keys:
        caption_type, _, language = key.partition("/")
        weights.append(sampling.types.get(caption_type, 0.0) * sampling.languages.get(language, 0.0))
    total = sum(weights)
    return [weight / total for weight in weights] if total > 0 else weights


def draw_caption_key(keys: Sequence[str], sampling_json: str | None, seed: int, row_id: str) -> str:
    """The caption key this sample trains on; ExampleError when the row has none with a non-zero probability."""
    if not keys:
        raise ExampleError(f"no_caption: row {row_id} has no captions")
    probabilities = caption_probabilities(keys, parse_caption_sampling(sampling_json, row_id))
    if sum(probabilities) == 0:
        raise ExampleError(f"no_caption: row {row_id}: none of its captions {list(keys)} has a non-zero "
                           "sampling probability")
    return random.Random(f"{_SALT}/{seed}").choices(list(keys), weights=probabilities)[0]


def caption_sft_messages(row: dict[str, Any], seed: int, prompts: PromptSet) -> tuple[str, list[dict[str, Any]]]:
    """A caption row as one SFT turn: (drawn key, messages in the `qa_conversation` layout, image index 0).

    The instruction is the captioning prompt of the drawn type and language (the wording that produced such
    captions), so the MLLM learns to answer the prompts the data engine asks."""
    captions = dict(row["captions"] or [])
    key = draw_caption_key(list(captions), row.get("caption_sampling"), seed, row["id"])
    caption_type, _, language = key.partition("/")
    try:
        instruction = caption_prompt(prompts, caption_type, language, [])
    except PromptFileError as exc:
        raise ExampleError(f"unknown_caption_key: row {row['id']}: {exc}") from None
    return key, [
        {"role": "user", "content": [{"type": "image", "text": None, "image_index": 0},
                                     {"type": "text", "text": instruction, "image_index": None}]},
        {"role": "assistant", "content": [{"type": "text", "text": captions[key], "image_index": None}]},
    ]
