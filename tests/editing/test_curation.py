"""Edit curation stages: each rejects a hand-made bad triplet with its reason and keeps a good one, stores
its scores, and redecide re-applies a new threshold from the stored scores alone."""

from __future__ import annotations

import cv2
import numpy as np
import pyarrow as pa
import pytest
from tests.editing.edit_fixtures import box_mask, png, scene

from data_engine.editing.triplet import EDIT_TRIPLET, TripletLabels, triplet_columns
from data_engine.job import StageSpec
from data_engine.readers import row_id
from data_engine.redecide import redecide_table
from data_engine.stage_runner import apply_stage

LABELS = TripletLabels(task_category="object_move", granularity="object", input_condition="text", language="en",
                       domain="photo", source_kind="external")


def triplets(pairs: list[tuple[np.ndarray, np.ndarray]], **extra) -> pa.Table:
    rows = [{"id": row_id("t", str(n)), "source_dataset": "t", "upstream_id": str(n), "license": "CC0",
             **triplet_columns(source_image=png(a), target_image=png(b), instruction="Move the red box",
                               labels=LABELS, **extra)} for n, (a, b) in enumerate(pairs)]
    return pa.Table.from_pylist(rows, schema=EDIT_TRIPLET.arrow())


def run(op: str, table: pa.Table, **config) -> tuple[list[dict], pa.Table]:
    stage = StageSpec(op=op, config=config).build()
    stage.setup()
    out, _ = apply_stage(stage, table, 4)
    return out.to_pylist(), out


def test_negligible_change_rejected_a_moved_box_kept() -> None:
    still = scene(1)
    rows, table = run("edit_change", triplets([(still, still.copy()), (scene(1), scene(1, box=(50, 16, 74, 40)))]))
    assert rows[0]["reject_reason"] == "edit_negligible_change" and rows[0]["edit_changed_fraction"] == 0.0
    assert rows[1]["reject_reason"] is None and rows[1]["edit_changed_fraction"] > 0.1
    # redecide from the stored fraction: a threshold above the moved box's change rejects it too
    looser = StageSpec(op="edit_change", config={"min_changed_fraction": 0.9}).build()
    again = redecide_table(table, [looser]).to_pylist()
    assert [r["reject_reason"] for r in again] == ["edit_negligible_change", "edit_negligible_change"]


def test_change_outside_the_region_rejected_inside_kept_unknown_area_kept() -> None:
    source = scene(2, box=None)
    inside, outside = source.copy(), source.copy()
    inside[20:40, 10:30] = (0, 200, 0)  # within the region (10, 20, 30, 40)
    outside[20:40, 60:80] = (0, 200, 0)  # well away from it
    region = {"edit_region": [10, 20, 30, 40]}
    rows, _ = run("edit_region", triplets([(source, outside), (source, inside)], **region))
    assert rows[0]["reject_reason"] == "edit_outside_region" and rows[0]["edit_outside_changed_fraction"] > 0.05
    assert rows[1]["reject_reason"] is None and rows[1]["edit_outside_changed_fraction"] == 0.0
    assert rows[1]["edit_area"] == "region"
    masked, _ = run("edit_region", triplets([(source, inside)], edit_mask=png(box_mask((10, 20, 30, 40)))))
    assert masked[0]["reject_reason"] is None and masked[0]["edit_area"] == "mask"
    unknown, _ = run("edit_region", triplets([(source, outside)]))
    assert unknown[0]["reject_reason"] is None and unknown[0]["edit_area"] == "none"
    assert unknown[0]["edit_outside_changed_fraction"] is None


def big_scene(seed: int) -> np.ndarray:
    """Natural-ish texture large enough for NIQE (two 96 px blocks): smoothed noise with edges."""
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.normal(128, 60, (192, 288, 3)), (0, 0), 2.0)
    image[40:120, 60:160] += 50
    return np.clip(image, 0, 255).astype(np.uint8)


def test_blurred_and_artifacted_targets_rejected_a_clean_edit_kept() -> None:
    source = big_scene(3)
    clean = source.copy()
    clean[140:180, 200:260] = (30, 30, 200)
    blurred = cv2.GaussianBlur(clean, (0, 0), 4.0)
    rng = np.random.default_rng(0)
    noisy = np.clip(clean.astype(np.int16) + rng.choice([-120, 0, 120], clean.shape, p=[0.15, 0.7, 0.15]),
                    0, 255).astype(np.uint8)  # impulse noise: sharper, but unnatural
    rows, _ = run("edit_quality", triplets([(source, clean), (source, blurred), (source, noisy)]),
                  min_sharpness_ratio=0.5, max_niqe_increase=2.0)
    assert [r["reject_reason"] for r in rows] == [None, "edit_target_blurred", "edit_target_artifacts"]
    assert rows[1]["sharpness_ratio"] < 0.5 and rows[2]["niqe_increase"] > 2.0
    assert rows[0]["niqe_increase"] == pytest.approx(rows[0]["target_niqe"] - rows[0]["source_niqe"], abs=1e-3)
    small, _ = run("edit_quality", triplets([(scene(4), scene(4, box=(50, 16, 74, 40)))]))
    assert small[0]["source_niqe"] is None and small[0]["reject_reason"] is None  # NIQE undefined: not decided


def test_intent_judge_rejects_an_ambiguous_edit_and_an_unparseable_answer(scripted_server) -> None:
    scripted_server.replies = ['{"clarity": 20, "reason": "two red boxes could be meant"}',
                               '```json\n{"clarity": 90, "reason": "only the box moved"}\n```', "clarity: high"]
    pairs = [(scene(5), scene(5, box=(50, 16, 74, 40)))] * 3
    rows, _ = run("edit_intent_judge", triplets(pairs), backend=scripted_server.backend(), min_clarity=50)
    assert [r["reject_reason"] for r in rows] == ["edit_intent_ambiguous", None, "edit_judge_unparseable"]
    assert [r["intent_status"] for r in rows] == ["judged", "judged", "unparseable"]
    assert rows[0]["intent_detail"] == "two red boxes could be meant" and rows[1]["intent_clarity"] == 90
    sent = scripted_server.received[0]["messages"][-1]["content"]
    assert any(part["type"] == "image_url" for part in sent)
    assert '"Move the red box"' in next(part["text"] for part in sent if part["type"] == "text")
    unjudged, _ = run("edit_intent_judge", triplets(pairs[:1]))
    assert unjudged[0]["intent_status"] == "not_checked" and unjudged[0]["reject_reason"] is None
