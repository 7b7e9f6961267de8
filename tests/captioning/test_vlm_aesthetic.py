"""vlm_aesthetic: the 0-100 VLM aesthetic score through the captioning backends (the tiny Qwen3-VL in-process,
an OpenAI-compatible HTTP server), the strict parser on hand-labelled outputs, thresholds per preset and
redecide, and no invented score without a backend."""

from __future__ import annotations

import logging

import pyarrow as pa
import pytest
from conftest import ServedModel, png_bytes

from data_engine.captioning.backends import GenerationRequest, TransformersBackend
from data_engine.captioning.parsing import SCORE_SCHEMA, parse_score
from data_engine.job import StageSpec
from data_engine.readers import row_id
from data_engine.redecide import redecide_table
from data_engine.schemas import CAPTION
from data_engine.stage_runner import apply_stage
from data_engine.stages.generation_base import downscaled_image
from data_engine.stages.vlm_aesthetic import VlmAestheticConfig

PARSED = [
    ('{"score": 72}', 72), ('  {"score":0}\n', 0), ('```json\n{"score": 100}\n```', 100),
    ('<think>balanced light</think>{"score": 61}', 61),
]
REFUSED = [
    "", "Score: 72", "72", '{"score": 72} because it is nice', '{"score": 72.5}', '{"score": 72.0}', '{"score": 101}',
    '{"score": -1}', '{"score": true}', '{"score": "72"}', '{"score": 72, "reason": "sharp"}',
    '{"score": 70, "score": 90}', "[72]", '{"rating": 72}', '{"score": null}',
]


@pytest.mark.parametrize("raw, score", PARSED)
def test_parser_accepts_exactly_one_integer_score(raw: str, score: int) -> None:
    assert parse_score(raw).score == score


@pytest.mark.parametrize("raw", REFUSED)
def test_parser_refuses_anything_else_with_a_detail(raw: str) -> None:
    parsed = parse_score(raw)
    assert parsed.score is None and parsed.detail


def image_table(images: list[bytes]) -> pa.Table:
    rows = [{"id": row_id("test", str(i)), "source_dataset": "test", "upstream_id": str(i), "license": "CC0",
             "image_bytes": image, "width": 1, "height": 1} for i, image in enumerate(images)]
    return pa.Table.from_pylist(rows, schema=CAPTION.arrow())


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    return [png_bytes((96, 64), (220, 40, 40)), png_bytes((900, 300), (40, 40, 220), "WIDE"),
            png_bytes((50, 50), (40, 200, 40))]


def build(**config):
    stage = StageSpec(op="vlm_aesthetic", config=config).build()
    stage.setup()
    return stage


def test_tiny_model_in_process_scores_are_what_the_parser_reads_from_its_output(
        images: list[bytes], tiny_vlm: TransformersBackend) -> None:
    stage = build(backend={"kind": "transformers", "model": "tiny:qwen3vl", "temperature": 1.0}, max_new_tokens=8)
    table, _ = apply_stage(stage, image_table(images), batch_size=1)
    instruction = stage.prompts.text("instruction")
    for image, row in zip(images, table.to_pylist()):
        # The same request to the same model with the same seed, read independently by the parser.
        raw = tiny_vlm.generate([GenerationRequest(instruction, 8, downscaled_image(image, 768), SCORE_SCHEMA)])[0]
        expected = parse_score(raw.text or "")
        assert row["vlm_aesthetic_status"] == ("scored" if expected.score is not None else "unparseable")
        assert row["vlm_aesthetic_score"] == expected.score
        assert row["vlm_aesthetic_detail"] == expected.detail
        assert row["vlm_aesthetic_prompt"].startswith("vlm_aesthetic/v1@")
        reason = None if expected.score is not None and expected.score > 60 else (
            "vlm_aesthetic_unparseable" if expected.score is None else "vlm_aesthetic_below_threshold")
        assert row["reject_reason"] == reason


def openai_backend(served: ServedModel, **extra) -> dict:
    return {"kind": "openai", "base_url": served.base_url, "model": served.model, "max_concurrency": 1,
            "max_retries": 0, **extra}


def test_http_server_gets_the_schema_and_the_image_and_answers_are_decided_per_preset(
        images: list[bytes], served_tiny_vlm: ServedModel) -> None:
    served_tiny_vlm.control.replies.extend(['{"score": 72}', "I would say 80 out of 100", '{"score": 63}'])
    stage = build(backend=openai_backend(served_tiny_vlm), preset="stage2_512p")
    table, stats = apply_stage(stage, image_table(images), batch_size=3)
    rows = table.to_pylist()
    assert [r["vlm_aesthetic_score"] for r in rows] == [72.0, None, 63.0]
    assert [r["vlm_aesthetic_status"] for r in rows] == ["scored", "unparseable", "scored"]
    assert "80 out of 100" in rows[1]["vlm_aesthetic_detail"]
    assert [r["reject_reason"] for r in rows] == [None, "vlm_aesthetic_unparseable", None]
    for payload in served_tiny_vlm.control.received:
        assert payload["response_format"]["json_schema"]["schema"] == SCORE_SCHEMA
        assert payload["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    # The annotation bar (> 65, the stage3_1024p preset) re-applied to the stored scores, nothing regenerated.
    annotation = StageSpec(op="vlm_aesthetic", config={"preset": "stage3_1024p"}).build()
    assert annotation.config.min_score == 65.0
    assert redecide_table(table, [annotation]).column("reject_reason").to_pylist() == [
        None, "vlm_aesthetic_unparseable", "vlm_aesthetic_below_threshold"]
    assert redecide_table(table, [stage]).column("reject_reason").to_pylist() == [
        None, "vlm_aesthetic_unparseable", None]


def test_a_failed_request_is_a_reject_with_the_error(images: list[bytes], served_tiny_vlm: ServedModel) -> None:
    served_tiny_vlm.control.fail_next.append(503)
    served_tiny_vlm.control.replies.append('{"score": 90}')
    stage = build(backend=openai_backend(served_tiny_vlm))
    table, _ = apply_stage(stage, image_table(images[:2]), batch_size=2)
    rows = table.to_pylist()
    assert [r["vlm_aesthetic_status"] for r in rows] == ["request_failed", "scored"]
    assert "http 503" in rows[0]["vlm_aesthetic_detail"]
    assert [r["reject_reason"] for r in rows] == ["vlm_aesthetic_request_failed", None]


def test_without_a_backend_nothing_is_invented(images: list[bytes], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        stage = build(preset="stage3_1024p")
    assert "no backend configured" in caplog.text
    stage.preflight()  # nothing to check: the job runs and says what it did not measure
    table, _ = apply_stage(stage, image_table(images[:1]), batch_size=1)
    row = table.to_pylist()[0]
    assert (row["vlm_aesthetic_score"], row["vlm_aesthetic_status"], row["reject_reason"]) == (None, "not_scored", None)


def test_threshold_is_strictly_above_and_presets_follow_the_report() -> None:
    assert [VlmAestheticConfig(preset=p).min_score for p in ("stage1_208p", "stage2_512p", "stage3_1024p")] == [
        60.0, 60.0, 65.0]
    stage = StageSpec(op="vlm_aesthetic", config={"min_score": 60}).build()
    table = pa.Table.from_pylist(
        [{"vlm_aesthetic_score": s, "vlm_aesthetic_status": "scored"} for s in (60.0, 61.0)],
        schema=pa.schema(stage.output_fields()))
    assert stage.decide(table) == ["vlm_aesthetic_below_threshold", None]  # "> 60": exactly 60 is not enough
    with pytest.raises(ValueError, match="vlm_aesthetic/v0"):
        StageSpec(op="vlm_aesthetic", config={"prompt_version": "vlm_aesthetic/v0"}).build()
