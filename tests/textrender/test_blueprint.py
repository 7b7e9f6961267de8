"""Blueprints: validation, typography stripping and model-output parsing; the balanced Chinese characters;
procedural blueprints."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from data_engine.textrender.blueprint import REJECT_LAYOUT_INVALID, parse_layout_generation, strip_typography
from data_engine.textrender.charfreq import BalancedCharacterSampler, bucket_of, chinese_character_ranking, frequency_buckets
from data_engine.textrender.procedural import ProceduralLayoutConfig, contrast_ratio, sample_blueprint

BLOCK = {"text": "Grand Opening", "language": "en", "font_family": "Liberation Sans", "size_px": 48,
         "cell": {"row": 0, "col": 0}}


def layout(*blocks: dict, rows: int = 2, cols: int = 1) -> dict:
    return {"canvas": {"width": 640, "height": 480, "background": "#FFFFFF"}, "grid": {"rows": rows, "cols": cols},
            "blocks": list(blocks)}


@pytest.mark.parametrize("raw, expected", [
    ("**Grand Opening** (bold, 48px)", "Grand Opening"),
    ("<b>Sale</b> [font: serif]", "Sale"),
    ("Bold Coffee (since 1990)", "Bold Coffee (since 1990)"),  # the word is content, the bracket no style note
    ("# 咖啡节【粗体】", "咖啡节"),
    ("Hello font-size: 24px; world", "Hello world"),
    ("`50%` OFF {color: #ff0000}", "50% OFF"),
])
def test_typography_tokens_are_stripped_and_content_kept(raw, expected):
    assert strip_typography(raw) == expected


def test_model_output_becomes_a_blueprint_with_typography_stripped():
    raw = "<think>plan</think>```json\n" + json.dumps(layout(
        BLOCK | {"text": "**Grand Opening** (bold, 48px)"},
        {**BLOCK, "text": "开业大吉", "language": "zh", "font_family": "Noto Sans CJK SC", "cell": {"row": 1, "col": 0}},
        {**BLOCK, "text": "(italic, 20pt)", "cell": {"row": 1, "col": 0}},  # only typography: dropped
    )) + "\n```"
    blueprint, reason, detail = parse_layout_generation(raw)
    assert reason is None and detail is None
    assert [b.text for b in blueprint.blocks] == ["Grand Opening", "开业大吉"]
    assert blueprint.canvas.background == "#ffffff"


@pytest.mark.parametrize("raw, where", [
    ("Here is a poster about coffee.", "not JSON"),
    (json.dumps({"canvas": {"width": 640, "height": 480}}), "blocks list"),
    (json.dumps(layout(BLOCK, BLOCK | {"text": "B"})), "blocks.1.cell overlaps blocks.0.cell"),
    (json.dumps(layout(BLOCK | {"font_family": "Comic Sans MS"})), "blocks.0.font_family"),
    (json.dumps(layout(BLOCK | {"cell": {"row": 3, "col": 0}})), "outside the 2x1 grid"),
    (json.dumps(layout(BLOCK | {"color": "red"})), "blocks.0.color"),
    (json.dumps(layout(BLOCK | {"text": "**(bold)**"})), "blocks"),  # nothing left to render
])
def test_invalid_model_output_is_a_reason_naming_the_problem(raw, where):
    blueprint, reason, detail = parse_layout_generation(raw)
    assert blueprint is None and reason == REJECT_LAYOUT_INVALID
    assert where in detail


def test_character_ranking_follows_the_frequency_list():
    ranking = chinese_character_ranking()
    assert ranking[0] == "的" and len(ranking) > 6000
    buckets = bucket_of(frequency_buckets())
    assert buckets["的"] == buckets["是"] == buckets["我"] == 0
    assert buckets[ranking[5999]] == 3 and ranking[6000] not in buckets  # beyond the last edge: filtered out


def _bucket_ratio(characters: list[str]) -> float:
    buckets = bucket_of(frequency_buckets())
    counts = Counter(buckets[c] for c in characters)
    assert len(counts) == len(frequency_buckets())
    return max(counts.values()) / min(counts.values())


def test_procedural_chinese_text_is_balanced_over_frequency_buckets():
    """5,000 characters as the blueprints draw them: max/min bucket count <= 1.5."""
    characters: list[str] = []
    config = ProceduralLayoutConfig(languages={"zh": 1.0})
    index = 0
    while len(characters) < 5000:
        characters += [c for block in sample_blueprint(f"procedural/0/{index:06d}", config).blocks for c in block.text]
        index += 1
    assert _bucket_ratio(characters[:5000]) <= 1.5
    # The control: characters drawn by their natural frequency are nowhere near balanced.
    ranking = chinese_character_ranking()[:6000]
    natural = random.Random(0).choices(ranking, weights=[1 / (rank + 1) for rank in range(6000)], k=5000)
    assert _bucket_ratio(natural) > 3


def test_balanced_sampler_counts_stay_within_one():
    sampler = BalancedCharacterSampler(random.Random(1))
    sampler.text(1001)
    assert max(sampler.counts) - min(sampler.counts) <= 1


def test_procedural_blueprints_are_reproducible_and_legible():
    config = ProceduralLayoutConfig()
    first = [sample_blueprint(f"procedural/0/{i:06d}", config) for i in range(30)]
    assert first == [sample_blueprint(f"procedural/0/{i:06d}", config) for i in range(30)]
    assert first != [sample_blueprint(f"procedural/0/{i:06d}", config.model_copy(update={"seed": 1})) for i in range(30)]
    for blueprint in first:
        for block in blueprint.blocks:
            assert contrast_ratio(block.color, blueprint.canvas.background) >= config.min_contrast
            assert config.size_px[0] <= block.size_px <= config.size_px[1]
            assert block.writing_mode == "horizontal-tb" or block.language == "zh"
