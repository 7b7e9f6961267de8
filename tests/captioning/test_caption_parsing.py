"""Prompt files and the output parser every backend shares: each reject code from real inputs."""

from __future__ import annotations

import json

import pytest

from data_engine.captioning.parsing import (REJECT_EMPTY, REJECT_JSON_DUPLICATE_KEY, REJECT_JSON_EMPTY_FIELD,
                                            REJECT_JSON_INVALID, REJECT_JSON_SCHEMA, REJECT_UNEXPECTED_JSON,
                                            STRUCTURED_KEYS, parse_caption)
from data_engine.captioning.prompts import (CAPTION_TYPES, LANGUAGES, PromptFileError, caption_prompt,
                                            load_prompt_set)
from data_engine.stages.caption import CaptionImageConfig

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


def test_malformed_prompt_file_is_a_one_line_error(tmp_path) -> None:
    (tmp_path / "caption").mkdir()
    (tmp_path / "caption" / "v1.yaml").write_text("short:\n  en: 'unclosed\n  zh: x\n")
    with pytest.raises(PromptFileError) as error:
        load_prompt_set("caption/v1", root=tmp_path)
    assert "\n" not in str(error.value) and str(error.value).startswith(f"{tmp_path / 'caption' / 'v1.yaml'}: line ")
    (tmp_path / "caption" / "v1.yaml").write_text("- a list\n")
    with pytest.raises(PromptFileError, match="expected a mapping at the top level"):
        load_prompt_set("caption/v1", root=tmp_path)


def test_unknown_prompt_version_names_the_file_and_the_alternatives() -> None:
    with pytest.raises(PromptFileError, match=r"caption/v9.*available: caption/v1"):
        load_prompt_set("caption/v9")


def test_plain_captions_are_cleaned_and_kept() -> None:
    parsed = parse_caption("long", "<think>the user wants...</think>\n  A cat on a mat.  ")
    assert (parsed.text, parsed.reject) == ("A cat on a mat.", None)


@pytest.mark.parametrize("raw", ["", "   \n\n", "<think>only thinking</think>"])
def test_empty_output_is_rejected(raw: str) -> None:
    assert parse_caption("short", raw).reject == REJECT_EMPTY


@pytest.mark.parametrize("fence", ["```json", "```JSON", "```Json", "```"])
def test_structured_caption_is_validated_and_stored_canonically(fence: str) -> None:
    fenced = f"{fence}\n" + json.dumps(VALID, ensure_ascii=False, indent=2) + "\n```"
    parsed = parse_caption("structured", fenced)
    assert parsed.reject is None
    assert json.loads(parsed.text) == VALID and list(json.loads(parsed.text)) == sorted(STRUCTURED_KEYS)


def test_structured_caption_without_visible_text_keeps_an_empty_string() -> None:
    assert parse_caption("structured", json.dumps(VALID | {"visible_text": ""})).reject is None


@pytest.mark.parametrize("body, reason, detail", [
    ("subject: a bicycle", REJECT_JSON_INVALID, "Expecting value"),
    ('{"subject": "a bicycle",', REJECT_JSON_INVALID, "char"),
    (json.dumps({k: v for k, v in VALID.items() if k != "style"}), REJECT_JSON_SCHEMA, "'style' is a required"),
    (json.dumps(VALID | {"mood": "calm"}), REJECT_JSON_SCHEMA, "mood"),
    (json.dumps(VALID | {"visible_text": ["OPEN"]}), REJECT_JSON_SCHEMA, "visible_text"),
    (json.dumps([VALID]), REJECT_JSON_SCHEMA, "<root>"),
    (json.dumps(VALID | {"style": ""}), REJECT_JSON_EMPTY_FIELD, "['style']"),
    (json.dumps(VALID | {"subject": "  \n ", "composition": "\t"}), REJECT_JSON_EMPTY_FIELD,
     "['subject', 'composition']"),
    (json.dumps(VALID | {"visible_text": "   "}), REJECT_JSON_EMPTY_FIELD, "['visible_text']"),
    ('{"subject": "a bicycle", "subject": "a car", "background": "b", "style": "s", "composition": "c", '
     '"visible_text": ""}', REJECT_JSON_DUPLICATE_KEY, "subject"),
])
def test_structured_caption_rejects_carry_a_reason(body: str, reason: str, detail: str) -> None:
    parsed = parse_caption("structured", body)
    assert parsed.text is None and parsed.reject == reason
    assert detail in parsed.detail


@pytest.mark.parametrize("caption_type", ["short", "long", "extended_long"])
@pytest.mark.parametrize("raw", [json.dumps(VALID), "```json\n" + json.dumps(VALID) + "\n```", "[]",
                                 '{"subject": "a red bicycle", "background":'])
def test_json_where_prose_was_asked_is_rejected(caption_type: str, raw: str) -> None:
    parsed = parse_caption(caption_type, raw)
    assert parsed.text is None and parsed.reject == REJECT_UNEXPECTED_JSON


@pytest.mark.parametrize("prose", ["{Sunset} over a lake.", "[Image] a cat on a mat.", "A sign reads \"{OPEN}\"."])
def test_prose_with_brackets_is_kept(prose: str) -> None:
    assert parse_caption("short", prose).text == prose


def test_structured_prompts_exempt_visible_text_from_the_output_language() -> None:
    prompts = load_prompt_set("caption/v2")
    english, chinese = prompts.text("types", "structured", "en"), prompts.text("types", "structured", "zh")
    assert "never translated" in english and "original language" in english
    assert "绝不翻译" in chinese and "原始语言" in chinese
    # The language instruction names the four described fields, not visible_text.
    assert 'Write "subject", "background", "style" and "composition" in English.' in english
    assert '"subject"、"background"、"style"、"composition"的值用中文书写' in chinese
    assert CaptionImageConfig().prompt_version == "caption/v2"
