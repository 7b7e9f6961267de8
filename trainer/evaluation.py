"""Scoring of spatial QA answers and the evaluation result file of `python -m trainer eval`.

Metrics: exact match (after lower-casing and dropping punctuation) for choices; mean relative accuracy (MRA)
for numbers, the mean over confidence thresholds 0.50, 0.55, ..., 0.95 of whether the relative error is
below 1 - threshold (the VSI-Bench definition). A row's metric is its metadata's `answer_type` when given
("number" -> MRA; "choice" or "text" -> exact match), as OpenSpatial declares it per sub-task; rows from
elsewhere without one are "number" when the canonical `answer_value` is a number and the reference answer
starts with it ("1.9 m.", "2个。"), else exact match ("Image 2.", "B. left front").

Result file (JSON), by default `<run.out_dir>/eval/<checkpoint tag>.json` (`eval_result_path`):

    {"checkpoint": "step-00000030",          # the resolved tag ("base": the untrained model)
     "step": 30,                             # optimizer step of that checkpoint (0 for "base")
     "samples": 55,                          # rows scored
     "overall": 0.41,                        # mean score over all rows
     "per_subtask": {"distance": {"n": 4, "metric": "mean_relative_accuracy", "score": 0.35}, ...},
     "predictions": [{"id", "task", "prediction", "reference", "metric", "score"}, ...]}

A sub-task whose rows use both metrics reports `"metric": "mixed"`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

MRA_THRESHOLDS = tuple(0.5 + 0.05 * i for i in range(10))
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
EXACT_MATCH = "exact_match"
MEAN_RELATIVE_ACCURACY = "mean_relative_accuracy"


def eval_result_path(out_dir: Path, checkpoint_tag: str) -> Path:
    return out_dir / "eval" / f"{checkpoint_tag}.json"


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


def answer_metric(metadata: dict[str, Any], reference: str) -> str:
    """EXACT_MATCH or MEAN_RELATIVE_ACCURACY for one QA row (rule in the module docstring)."""
    declared = metadata.get("answer_type")
    if declared is not None:
        return MEAN_RELATIVE_ACCURACY if declared == "number" else EXACT_MATCH
    value = metadata.get("answer_value")
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return MEAN_RELATIVE_ACCURACY if numeric and _NUMBER.match(reference.strip()) else EXACT_MATCH


def score_answer(prediction: str, reference: str, metric: str) -> float:
    if metric == MEAN_RELATIVE_ACCURACY:
        return mean_relative_accuracy(prediction, reference)
    return exact_match(prediction, reference)


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """records ({"task", "metric", "score", ...} each) -> {"samples", "overall", "per_subtask", "predictions"}."""
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_task[record["task"]].append(record)
    per_subtask = {}
    for task, rows in sorted(by_task.items()):
        metrics = {row["metric"] for row in rows}
        per_subtask[task] = {"n": len(rows), "metric": metrics.pop() if len(metrics) == 1 else "mixed",
                             "score": sum(row["score"] for row in rows) / len(rows)}
    overall = sum(record["score"] for record in records) / len(records) if records else 0.0
    return {"samples": len(records), "overall": overall, "per_subtask": per_subtask, "predictions": records}
