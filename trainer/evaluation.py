"""Scoring of spatial QA answers: exact match for choices, mean relative accuracy (MRA) for numbers.

MRA averages, over confidence thresholds 0.50, 0.55, ..., 0.95, whether the relative error is below
1 - threshold (the VSI-Bench definition). Per-sub-task means come from `summarise`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

MRA_THRESHOLDS = tuple(0.5 + 0.05 * i for i in range(10))
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def normalise_choice(text: str) -> str:
    return re.sub(r"[^\w\s]", "", text).strip().lower()


def exact_match(prediction: str, reference: str) -> float:
    return float(normalise_choice(prediction) == normalise_choice(reference))


def first_number(text: str) -> float | None:
    match = _NUMBER.search(text)
    return float(match.group()) if match else None


def mean_relative_accuracy(prediction: str, reference: str) -> float:
    predicted, expected = first_number(prediction), first_number(reference)
    if predicted is None or expected is None:
        return 0.0
    if expected == 0:
        return float(predicted == 0)
    error = abs(predicted - expected) / abs(expected)
    return sum(error < 1 - threshold for threshold in MRA_THRESHOLDS) / len(MRA_THRESHOLDS)


def score_answer(prediction: str, reference: str, answer_type: str) -> float:
    if answer_type == "number":
        return mean_relative_accuracy(prediction, reference)
    return exact_match(prediction, reference)


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """records: {"task", "score"} each -> {"overall": mean, "samples": n, "tasks": {task: {"score", "samples"}}}."""
    by_task: dict[str, list[float]] = defaultdict(list)
    for record in records:
        by_task[record["task"]].append(record["score"])
    tasks = {task: {"score": sum(scores) / len(scores), "samples": len(scores)}
             for task, scores in sorted(by_task.items())}
    total = [record["score"] for record in records]
    return {"overall": sum(total) / len(total) if total else 0.0, "samples": len(total), "tasks": tasks}
