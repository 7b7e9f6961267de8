"""refine_instruction: a usable JSON answer replaces the instruction; malformed output, an empty one or a
quote not kept verbatim keep the original with the reason; spatial edits keep their template unsent."""

from __future__ import annotations

import pyarrow as pa
import pytest
from tests.editing.edit_fixtures import png, scene

from data_engine.camera_move import CameraMove, format_camera_move
from data_engine.editing.refine import parse_refined
from data_engine.editing.triplet import EDIT_TRIPLET, TripletLabels, triplet_columns
from data_engine.job import StageSpec
from data_engine.readers import row_id
from data_engine.stage_runner import apply_stage

TEXT_EDIT = 'Replace "OPEN" with "CLOSED"'


@pytest.mark.parametrize("raw, refined, reason", [
    ('{"instruction": "Replace the word \\"OPEN\\" on the sign with \\"CLOSED\\"; keep the rest."}',
     'Replace the word "OPEN" on the sign with "CLOSED"; keep the rest.', None),
    ('<think>ok</think>```json\n{"instruction": "Change \\"OPEN\\" to \\"CLOSED\\""}\n```',
     'Change "OPEN" to "CLOSED"', None),
    ('Replace OPEN with CLOSED', None, "unparseable"),
    ('{"instruction": "Change \\"OPEN\\" to \\"Closed\\""}', None, "quoted_text_changed"),
    ('{"instruction": "   "}', None, "empty"),
    ('{"instruction": "x", "note": "y"}', None, "unparseable"),
])
def test_parser_on_hand_labelled_answers(raw: str, refined: str | None, reason: str | None) -> None:
    text, detail = parse_refined(raw, TEXT_EDIT)
    assert text == refined
    assert (detail or "").startswith(reason or "")


def test_stage_refines_keeps_originals_with_reasons_and_leaves_templates_unsent(scripted_server) -> None:
    camera = format_camera_move(CameraMove(subject="chair", yaw_deg=45.0), "en")
    cases = [("text", "text_render", TEXT_EDIT), ("add", "external", "add a cat"),
             ("viewpoint", "spatial_render", camera), ("text", "text_render", TEXT_EDIT)]
    rows = []
    for n, (task, kind, instruction) in enumerate(cases):
        labels = TripletLabels(task_category=task, granularity="global", input_condition="text", language="en",
                               domain="photo", source_kind=kind)
        rows.append({"id": row_id("t", str(n)), "source_dataset": "t", "upstream_id": str(n), "license": "CC0",
                     **triplet_columns(source_image=png(scene(n)), target_image=png(scene(n + 1)),
                                       instruction=instruction, labels=labels)})
    scripted_server.replies = ['{"instruction": "On the sign, replace \\"OPEN\\" with \\"CLOSED\\"."}',
                               "Add a cat.", '{"instruction": "Replace \\"OPEN\\" with \\"SHUT\\""}']
    stage = StageSpec(op="refine_instruction", config={"backend": scripted_server.backend()}).build()
    stage.setup()
    out = apply_stage(stage, pa.Table.from_pylist(rows, schema=EDIT_TRIPLET.arrow()), 8)[0].to_pylist()
    assert len(scripted_server.received) == 3  # the spatial edit is not sent
    assert [r["refine_status"] for r in out] == ["refined", "kept_original", "template", "kept_original"]
    assert out[0]["instruction"] == 'On the sign, replace "OPEN" with "CLOSED".'
    assert out[1]["instruction"] == "add a cat" and out[1]["refine_detail"].startswith("unparseable")
    assert out[2]["instruction"] == camera and out[2]["refine_detail"] is None  # parses as the camera template
    assert out[3]["instruction"] == TEXT_EDIT and out[3]["refine_detail"].startswith("quoted_text_changed")
    assert [r["instruction_original"] for r in out] == [c[2] for c in cases]
    assert all(r["reject_reason"] is None for r in out)
    sent = scripted_server.received[0]["messages"][-1]["content"][-1]["text"]
    assert sent.endswith(f"Instruction: {TEXT_EDIT}")
