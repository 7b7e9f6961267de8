"""The VLM stages over rendered images (render/vlm_stages.py): the recognisability check and the dense caption
through the captioning backends, on the tiny random Qwen3-VL (its text is noise, the plumbing is real) and
with replies the test chooses, for the parse and reject paths."""

from __future__ import annotations

import io
import logging

import pyarrow as pa
import pytest
from PIL import Image

from data_engine.captioning.backends import Generation, GenerationBackend, GenerationRequest
from data_engine.captioning.prompts import load_prompt_set
from data_engine.readers import row_id
from data_engine.schemas import MULTIVIEW_SAMPLE
from data_engine.stage_runner import apply_stage
from render.images import image_ref
from render.pipeline_stages import ASSET_CATEGORY
from render.vlm_stages import (DenseCaptionConfig, DenseCaptionStage, RecognisabilityCheckConfig,
                               RecognisabilityCheckStage, parse_yes_no)

TINY = {"kind": "transformers", "model": "tiny:qwen3vl", "temperature": 1.0, "seed": 0}
ANSWERS = load_prompt_set("recognisability/v1").text("answers")
AFFIRMATIVE, NEGATIVE = ANSWERS["affirmative"], ANSWERS["negative"]


def _ref(colour: tuple[int, int, int], size: tuple[int, int] = (48, 48)) -> dict:
    return image_ref(Image.new("RGB", size, colour))


def multiview_rows(categories: list[str]) -> pa.Table:
    """Multiview samples as the render stage leaves them: views, main view index, collage, category."""
    rows = []
    for index, category in enumerate(categories):
        views = [_ref((40 * index, 200, 90)), _ref((200, 40 * index, 90))]
        rows.append({"id": row_id("test", category), "source_dataset": "test", "license": "generated",
                     "upstream_id": f"procedural:{category}:{index}", "views": views, "main_view_index": 1,
                     "collage": _ref((90, 90, 200 - 40 * index), (100, 52)), "asset_category": category})
    schema = MULTIVIEW_SAMPLE.arrow((ASSET_CATEGORY,))
    return pa.Table.from_pylist(rows, schema=schema)


def _stage(cls, config_cls, **config):
    stage = cls(config_cls(**config))
    stage.setup()
    return stage


@pytest.mark.parametrize(("reply", "verdict"), [
    ("Yes", True), ("no.", False), ("**No**, it looks like a box", False), ("  YES, a chair\n", True),
    ("<think>hmm</think>yes", True), ("是的，这是椅子", True), ("不是。", False), ("否", False),
    ("not sure", None), ("yesterday", None), ("maybe", None), ("", None), ("\n\n", None),
])
def test_yes_no_answers_are_read_from_the_start_of_the_reply(reply, verdict):
    assert parse_yes_no(reply, AFFIRMATIVE, NEGATIVE) is verdict


def test_recognisability_on_the_tiny_vlm_prompts_with_the_main_view_and_records_the_answer():
    stage = _stage(RecognisabilityCheckStage, RecognisabilityCheckConfig, backend=TINY, max_new_tokens=3)
    table = multiview_rows(["chair", "lamp"])
    requests = stage.requests(table, ["q0", "q1"], 3)
    main_views = [views[1]["bytes"] for views in table.column("views").to_pylist()]
    assert [r.image for r in requests] == main_views and [r.prompt for r in requests] == ["q0", "q1"]

    checked, stats = apply_stage(stage, table, batch_size=2)
    rows = checked.to_pylist()
    expected_reject = {"yes": None, "no": "not_recognisable", "unparseable": "recognisability_unparseable"}
    for row in rows:
        # The random model's reply is noise; whatever it is, the stored status follows the parser and the
        # row's decision follows the status.
        verdict = parse_yes_no(row["recognisability_answer"], AFFIRMATIVE, NEGATIVE)
        assert row["recognisability"] == {True: "yes", False: "no", None: "unparseable"}[verdict]
        assert row["reject_reason"] == expected_reject[row["recognisability"]]
        assert row["recognisability_prompts"].startswith("recognisability/v1@")
    assert stats.rows_in == 2


class ScriptedVlm(GenerationBackend):
    """Replies chosen by the test, by the category named in the prompt (None: the request fails); keeps the
    requests it was given."""

    def __init__(self, replies: dict[str, str | None]) -> None:
        self.replies = replies
        self.received: list[GenerationRequest] = []

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        self.received.extend(requests)
        replies = [next(reply for key, reply in self.replies.items() if key in r.prompt) for r in requests]
        return [Generation(reply) if reply is not None else Generation(None, "http 400: injected") for reply in replies]


def scripted_stage(cls, config_cls, replies: dict[str, str | None], **config):
    """A stage set up with an OpenAI backend (built without connecting), then given scripted replies."""
    stage = _stage(cls, config_cls, backend={"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"},
                   **config)
    stage.backend = ScriptedVlm(replies)
    return stage


def test_recognisability_rejects_no_unparseable_and_failed_answers_with_their_reasons():
    stage = scripted_stage(RecognisabilityCheckStage, RecognisabilityCheckConfig, {
        "chair": "No.", "lamp": "Yes, clearly a lamp.", "vase": "It could be anything", "table": None})
    table = multiview_rows(["chair", "lamp", "vase", "table"])
    checked, stats = apply_stage(stage, table, batch_size=4)
    rows = {row["asset_category"]: row for row in checked.to_pylist()}
    assert {c: (r["recognisability"], r["reject_reason"]) for c, r in rows.items()} == {
        "chair": ("no", "not_recognisable"), "lamp": ("yes", None),
        "vase": ("unparseable", "recognisability_unparseable"),
        "table": ("request_failed", "recognisability_request_failed")}
    assert rows["chair"]["recognisability_answer"] == "No." and rows["chair"]["reject_stage"] == "recognisability_check"
    assert rows["table"]["recognisability_answer"] == "http 400: injected"
    assert stats.rejects == {"not_recognisable": 1, "recognisability_unparseable": 1,
                             "recognisability_request_failed": 1}
    # Each prompt is the versioned question naming the row's category, sent with the row's main view.
    question = load_prompt_set("recognisability/v1").text("question", "en")
    main_views = [views[1]["bytes"] for views in table.column("views").to_pylist()]
    assert [(r.prompt, r.image) for r in stage.backend.received] == [
        (question.format(category=category), view) for category, view in zip(rows, main_views)]


def test_without_a_backend_rows_are_not_checked_and_the_stage_says_so(caplog):
    stage = RecognisabilityCheckStage(RecognisabilityCheckConfig())
    with caplog.at_level(logging.WARNING, logger="render.vlm_stages"):
        stage.preflight()
        stage.setup()
    assert sum("no backend configured" in message for message in caplog.messages) == 2
    checked, _ = apply_stage(stage, multiview_rows(["chair", "lamp"]), batch_size=2)
    assert checked.column("recognisability").to_pylist() == ["not_checked"] * 2
    assert checked.column("recognisability_answer").to_pylist() == [None, None]
    assert checked.column("reject_reason").to_pylist() == [None, None]

    captioner = DenseCaptionStage(DenseCaptionConfig())
    with caplog.at_level(logging.WARNING, logger="render.vlm_stages"):
        captioner.setup()
    captioned, _ = apply_stage(captioner, multiview_rows(["chair"]), batch_size=2)
    row = captioned.to_pylist()[0]
    assert row["dense_caption"] is None and row["dense_caption_error"].startswith("not_captioned: ")
    assert row["reject_reason"] is None


def test_dense_caption_from_the_collage_on_the_tiny_vlm():
    stage = _stage(DenseCaptionStage, DenseCaptionConfig, backend=TINY, max_new_tokens=6, image_max_side=64)
    table = multiview_rows(["chair", "lamp"])
    requests = stage.requests(table, ["p", "p"], 6)
    sent = Image.open(io.BytesIO(requests[0].image))
    assert sent.size == (64, 33)  # the 100 x 52 collage, downscaled to the configured long side
    captioned, stats = apply_stage(stage, table, batch_size=2)
    for row in captioned.to_pylist():
        # A sampled random model writes some tokens; the caption parser stores them as the caption.
        assert row["dense_caption"] and row["dense_caption_error"] is None and row["reject_reason"] is None
        assert row["dense_caption_prompts"].startswith("caption/v1@")
    assert stats.rows_out == 2


def test_dense_caption_failures_reject_only_when_required():
    for required, reason in ((True, "caption_empty"), (False, None)):
        # Every reply blank: the caption parser's caption_empty.
        stage = scripted_stage(DenseCaptionStage, DenseCaptionConfig, {"": "  \n"}, required=required)
        captioned, _ = apply_stage(stage, multiview_rows(["chair"]), batch_size=1)
        row = captioned.to_pylist()[0]
        assert row["dense_caption"] is None and row["dense_caption_error"].startswith("caption_empty: ")
        assert row["reject_reason"] == reason


def test_a_missing_image_column_is_named():
    stage = scripted_stage(RecognisabilityCheckStage, RecognisabilityCheckConfig, {"": "yes"}, image="source_image")
    checked, _ = apply_stage(stage, multiview_rows(["chair"]), batch_size=1)
    row = checked.to_pylist()[0]
    assert row["reject_reason"] == "error:ValueError"
    assert "recognisability_check.image: 'source_image' reads columns ['source_image']" in row["reject_detail"]
