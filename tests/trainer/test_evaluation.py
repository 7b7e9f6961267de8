"""Spatial QA scoring: which metric a row gets, exact match, mean relative accuracy, per-sub-task summary."""

from __future__ import annotations

import pytest

from trainer.evaluation import (EXACT_MATCH, MEAN_RELATIVE_ACCURACY, answer_metric, mean_relative_accuracy,
                                score_answer, summarise)


@pytest.mark.parametrize(("metadata", "reference", "metric"), [
    ({"answer_value": 0.2314}, "0.2米。", MEAN_RELATIVE_ACCURACY),  # OpenSpatial distance, zh
    ({"answer_value": 2}, "2.", MEAN_RELATIVE_ACCURACY),  # instance_counting
    ({"answer_value": 2}, "Image 2.", EXACT_MATCH),  # object_camera_distance: an image index, a choice
    ({"answer_value": "front_left"}, "B. 左前方", EXACT_MATCH),
    ({"answer_value": {"holds": True}}, "Yes.", EXACT_MATCH),
    ({"answer_value": True}, "1", EXACT_MATCH),  # a bool is not a number
    ({"answer_type": "number", "answer": "12"}, "12", MEAN_RELATIVE_ACCURACY),  # declared types win
    ({"answer_type": "choice", "answer_value": 3.0}, "3.0", EXACT_MATCH),
])
def test_answer_metric(metadata: dict, reference: str, metric: str) -> None:
    assert answer_metric(metadata, reference) == metric


def test_scores() -> None:
    assert score_answer("The vase!", "the vase", EXACT_MATCH) == 1.0
    assert score_answer("B", "B. 左前方", EXACT_MATCH) == 0.0
    assert mean_relative_accuracy("1.0 m", "1.0 m.") == 1.0
    assert mean_relative_accuracy("1.2", "1.0") == pytest.approx(0.6)  # error 0.2 < 1 - t for t = 0.50 ... 0.75
    assert mean_relative_accuracy("no idea", "1.0") == 0.0 and mean_relative_accuracy("0", "0米") == 1.0


def test_summarise_per_subtask() -> None:
    records = [{"task": "distance", "metric": MEAN_RELATIVE_ACCURACY, "score": 0.5},
               {"task": "distance", "metric": MEAN_RELATIVE_ACCURACY, "score": 1.0},
               {"task": "proximity", "metric": EXACT_MATCH, "score": 0.0},
               {"task": "mixed_task", "metric": EXACT_MATCH, "score": 1.0},
               {"task": "mixed_task", "metric": MEAN_RELATIVE_ACCURACY, "score": 0.0}]
    summary = summarise(records)
    assert summary["samples"] == 5 and summary["overall"] == pytest.approx(2.5 / 5)
    assert summary["per_subtask"] == {
        "distance": {"n": 2, "metric": MEAN_RELATIVE_ACCURACY, "score": 0.75},
        "mixed_task": {"n": 2, "metric": "mixed", "score": 0.5},
        "proximity": {"n": 1, "metric": EXACT_MATCH, "score": 0.0}}
    assert summary["predictions"] == records
