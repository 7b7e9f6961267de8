"""Prompt files and the output parser every backend shares: each reject code from real inputs."""

from __future__ import annotations

import json

import pytest

from data_engine.captioning.parsing import (REJECT_EMPTY, REJECT_JSON_INVALID, REJECT_JSON_SCHEMA,
                                            STRUCTURED_KEYS, parse_caption)
from data_engine.captioning.prompts import (CAPTION_TYPES, LANGUAGES, PromptFileError, caption_prompt,
                                            load_prompt_set)

VALID = {"subject": "a red bicycle", "background": "a brick wall", "style": "photo",
         "composition": "centred", "visible_text": "OPEN"}


def test_every_caption_type_and_language_has_a_prompt_and_the_set_is_hashed() -> None:
    prompts = load_prompt_set("caption/v1")
    for caption_type in CAPTION_TYPES:
        for language in LANGUAGES:
            assert caption_prompt(prompts, caption_type, language, []).strip()
    assert len(prompts.sha256) == 64
    with_ocr = caption_prompt(prompts, "short", "en", ["SALE 50%", "营业中"])
    assert '"SALE 50%"' in with_ocr and '"营业中"' in with_ocr


def test_unknown_prompt_version_names_the_file_and_the_alternatives() -> None:
    with pytest.raises(PromptFileError, match=r"caption/v9.*available: caption/v1"):
        load_prompt_set("caption/v9")


def test_plain_captions_are_cleaned_and_kept() -> None:
    parsed = parse_caption("long", "<think>the user wants...</think>\n  A cat on a mat.  ")
    assert (parsed.text, parsed.reject) == ("A cat on a mat.", None)


@pytest.mark.parametrize("raw", ["", "   \n\n", "<think>only thinking</think>"])
def test_empty_output_is_rejected(raw: str) -> None:
    assert parse_caption("short", raw).reject == REJECT_EMPTY


def test_structured_caption_is_validated_and_stored_canonically() -> None:
    fenced = "```json\n" + json.dumps(VALID, ensure_ascii=False, indent=2) + "\n```"
    parsed = parse_caption("structured", fenced)
    assert parsed.reject is None
    assert json.loads(parsed.text) == VALID and list(json.loads(parsed.text)) == sorted(STRUCTURED_KEYS)


@pytest.mark.parametrize("body, reason, detail", [
    ("subject: a bicycle", REJECT_JSON_INVALID, "Expecting value"),
    ('{"subject": "a bicycle",', REJECT_JSON_INVALID, "char"),
    (json.dumps({k: v for k, v in VALID.items() if k != "style"}), REJECT_JSON_SCHEMA, "'style' is a required"),
    (json.dumps(VALID | {"mood": "calm"}), REJECT_JSON_SCHEMA, "mood"),
    (json.dumps(VALID | {"visible_text": ["OPEN"]}), REJECT_JSON_SCHEMA, "visible_text"),
    (json.dumps([VALID]), REJECT_JSON_SCHEMA, "<root>"),
])
def test_structured_caption_rejects_carry_a_reason(body: str, reason: str, detail: str) -> None:
    parsed = parse_caption("structured", body)
    assert parsed.text is None and parsed.reject == reason
    assert detail in parsed.detail
