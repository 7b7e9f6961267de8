"""Spatial QA scoring: which metric a row gets, exact match, mean relative accuracy, per-sub-task summary."""

from __future__ import annotations

import pytest

from trainer.core import ExampleError
from trainer.evaluation.spatial_qa import (EXACT_MATCH, MEAN_RELATIVE_ACCURACY, answer_metric, mean_relative_accuracy,
                                           score_answer, summarise)


@pytest.mark.parametrize(("answer_type", "metric"), [
    ("number", MEAN_RELATIVE_ACCURACY), ("choice", EXACT_MATCH), ("text", EXACT_MATCH)])
def test_the_declared_answer_type_picks_the_metric(answer_type: str, metric: str) -> None:
    assert answer_metric({"answer_type": answer_type, "answer_value": 3.0}, "row-1") == metric


@pytest.mark.parametrize("metadata", [{"answer_value": 2}, {"answer_type": "numeric"}, {"answer_type": None}])
def test_a_row_without_a_known_answer_type_is_an_error_not_a_guess(metadata: dict) -> None:
    with pytest.raises(ExampleError, match=r"^row row-7: metadata.answer_type is .*, expected one of number, "
                                           r"choice, text"):
        answer_metric(metadata, "row-7")


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
