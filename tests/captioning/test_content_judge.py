"""The optional content judge of caption_content_filter: a model behind the captioning backends answers one
boolean per category. Tested for parsing and strictness only (the tiny model is random): the strict parser
on hand-written outputs, the tiny Qwen3-VL in-process, an OpenAI-compatible server with scripted answers,
and the rules-only default left as it was."""

from __future__ import annotations

import pyarrow as pa
import pytest
from conftest import ServedModel

from data_engine.captioning.backends import GenerationRequest, TransformersBackend
from data_engine.captioning.parsing import ParsedFlags, category_flags_schema, parse_category_flags
from data_engine.job import StageSpec
from data_engine.redecide import redecide_table
from data_engine.stage_runner import apply_stage
from tests.curation.images import stage_input

JUDGED = ("collage", "watermark", "screenshot", "meme")
NONE = '{"collage": false, "watermark": false, "screenshot": false, "meme": false}'
WATERMARK = '{"collage": false, "watermark": true, "screenshot": false, "meme": false}'
PARSED = [
    (NONE, ()), (WATERMARK, ("watermark",)),
    ('```JSON\n{"meme": true, "collage": true, "screenshot": false, "watermark": false}\n```', ("collage", "meme")),
    ('<think>a grid</think> {"collage": true, "watermark": false, "screenshot": false, "meme": false}', ("collage",)),
]
REFUSED = [
    "", "watermark", "yes", '{"collage": false, "watermark": true}',  # a category missing
    '{"collage": "no", "watermark": false, "screenshot": false, "meme": false}',
    '{"collage": 0, "watermark": false, "screenshot": false, "meme": false}',
    '{"collage": null, "watermark": false, "screenshot": false, "meme": false}',
    '{"collage": false, "watermark": false, "screenshot": false, "meme": false, "nsfw": true}',
    '{"collage": false, "collage": true, "watermark": false, "screenshot": false, "meme": false}',
    NONE + " The image is a plain photo.", "[false, false, false, false]",
]


@pytest.mark.parametrize("raw, categories", PARSED)
def test_parser_reads_one_boolean_per_category(raw: str, categories: tuple[str, ...]) -> None:
    assert parse_category_flags(raw, JUDGED) == ParsedFlags(categories, None)


@pytest.mark.parametrize("raw", REFUSED)
def test_parser_refuses_anything_else_with_a_detail(raw: str) -> None:
    parsed = parse_category_flags(raw, JUDGED)
    assert parsed.categories is None and parsed.detail


CAPTIONS = [
    [("short/en", "A red fox standing in fresh snow.")],  # no rule hit
    [("short/en", "A collage of four beach photos.")],  # a rule hit
    [("short/en", "A mountain lake at dawn.")],
    None,  # no caption: nothing to judge, no request
]


def captions_table(captions: list = CAPTIONS) -> pa.Table:
    return stage_input(captions=pa.array(captions, type=pa.map_(pa.string(), pa.string())))


def build(backend: dict, **judge):
    stage = StageSpec(op="caption_content_filter", config={"judge": {"backend": backend, **judge}}).build()
    stage.setup()
    return stage


def test_tiny_model_in_process_answers_are_what_the_parser_reads(tiny_vlm: TransformersBackend) -> None:
    stage = build({"kind": "transformers", "model": "tiny:qwen3vl", "temperature": 1.0}, max_new_tokens=8)
    assert stage.uses_model
    captions = [CAPTIONS[0], CAPTIONS[3]]
    table, _ = apply_stage(stage, captions_table(captions), batch_size=1)
    first, without_captions = table.to_pylist()
    assert (without_captions["content_judge_status"], without_captions["reject_reason"]) == ("not_judged", None)
    # The same request to the same model with the same seed, read independently by the parser.
    prompt = stage.judge.prompt([CAPTIONS[0][0][1]])
    assert CAPTIONS[0][0][1] in prompt and "{" not in prompt  # every placeholder filled
    raw = tiny_vlm.generate([GenerationRequest(prompt, 8, None, category_flags_schema(JUDGED))])[0]
    expected = parse_category_flags(raw.text or "", JUDGED)
    assert first["content_judge_status"] == ("judged" if expected.categories is not None else "unparseable")
    assert first["content_judge_detail"] == expected.detail
    assert first["content_judge_prompt"].startswith("caption_content_judge/v1@")
    if expected.categories is None:  # a random model's answer is refused, never read as "nothing found"
        assert first["reject_reason"] == "caption_content_judge_unparseable"


def test_http_server_gets_the_schema_and_the_judge_adds_to_the_rules(served_tiny_vlm: ServedModel) -> None:
    served_tiny_vlm.control.replies.extend([WATERMARK, NONE, "Yes, it has a watermark."])
    stage = build({"kind": "openai", "base_url": served_tiny_vlm.base_url, "model": served_tiny_vlm.model,
                   "max_concurrency": 1, "max_retries": 0})
    table, stats = apply_stage(stage, captions_table(), batch_size=4)
    rows = table.to_pylist()
    assert [r["content_categories"] for r in rows] == [[], ["collage"], [], []]
    assert [r["content_judge_categories"] for r in rows] == [["watermark"], [], None, None]
    assert [r["content_judge_status"] for r in rows] == ["judged", "judged", "unparseable", "not_judged"]
    assert "Yes, it has a watermark" in rows[2]["content_judge_detail"]
    assert [r["reject_reason"] for r in rows] == [
        "caption_content", "caption_content", "caption_content_judge_unparseable", None]
    assert len(served_tiny_vlm.control.received) == 3  # the row without captions asked nothing
    for payload, captions in zip(served_tiny_vlm.control.received, CAPTIONS):
        assert payload["response_format"]["json_schema"]["schema"] == category_flags_schema(JUDGED)
        parts = payload["messages"][-1]["content"]
        assert [part["type"] for part in parts] == ["text"] and captions[0][1] in parts[0]["text"]
    # The stored answers are re-decided without asking again: only collages reject now.
    only_collage = StageSpec(op="caption_content_filter", config={"reject_categories": ["collage"]}).build()
    assert redecide_table(table, [only_collage]).column("reject_reason").to_pylist() == [
        None, "caption_content", "caption_content_judge_unparseable", None]


def test_a_failed_request_is_a_reject_with_the_error(served_tiny_vlm: ServedModel) -> None:
    served_tiny_vlm.control.fail_next.append(503)
    served_tiny_vlm.control.replies.append(NONE)
    stage = build({"kind": "openai", "base_url": served_tiny_vlm.base_url, "model": served_tiny_vlm.model,
                   "max_concurrency": 1, "max_retries": 0})
    table, _ = apply_stage(stage, captions_table([CAPTIONS[0], CAPTIONS[2]]), batch_size=2)
    rows = table.to_pylist()
    assert [r["content_judge_status"] for r in rows] == ["request_failed", "judged"]
    assert "http 503" in rows[0]["content_judge_detail"]
    assert [r["reject_reason"] for r in rows] == ["caption_content_judge_request_failed", None]


def test_rules_alone_by_default_and_judge_config_errors() -> None:
    stage = StageSpec(op="caption_content_filter", config={}).build()
    assert not stage.uses_model
    assert [field.name for field in stage.output_fields()] == ["content_categories", "content_matches"]
    backend = {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"}
    with pytest.raises(ValueError, match=r"judge.categories \['nsfw'\]"):
        StageSpec(op="caption_content_filter", config={"judge": {"backend": backend, "categories": ["nsfw"]}}).build()
    with pytest.raises(ValueError, match="caption_content_judge/v0"):
        StageSpec(op="caption_content_filter",
                  config={"judge": {"backend": backend, "prompt_version": "caption_content_judge/v0"}}).build()
