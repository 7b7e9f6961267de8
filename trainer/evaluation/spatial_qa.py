"""Scoring of spatial QA answers and the evaluation result file of `python -m trainer eval`.

Metrics: exact match (after lower-casing and dropping punctuation) for choices; mean relative accuracy (MRA)
for numbers, the mean over confidence thresholds 0.50, 0.55, ..., 0.95 of whether the relative error is
below 1 - threshold (the VSI-Bench definition). A row's metric comes from its metadata's `answer_type`, which
every QA writer declares (OpenSpatial per sub-task, the synthetic general QA per question): "number" -> MRA,
"choice" or "text" -> exact match. A row without a known `answer_type` is an error, not a guess.

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

from trainer.core import ExampleError

MRA_THRESHOLDS = tuple(0.5 + 0.05 * i for i in range(10))
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
EXACT_MATCH = "exact_match"
MEAN_RELATIVE_ACCURACY = "mean_relative_accuracy"
METRIC_BY_ANSWER_TYPE = {"number": MEAN_RELATIVE_ACCURACY, "choice": EXACT_MATCH, "text": EXACT_MATCH}


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


def answer_metric(metadata: dict[str, Any], row_id: str) -> str:
    """EXACT_MATCH or MEAN_RELATIVE_ACCURACY for one QA row, from its declared `answer_type`."""
    declared = metadata.get("answer_type")
    if declared not in METRIC_BY_ANSWER_TYPE:
        raise ExampleError(f"row {row_id}: metadata.answer_type is {declared!r}, expected one of "
                           f"{', '.join(METRIC_BY_ANSWER_TYPE)} (QA shards written before it was declared: rerun "
                           "the job that made them)")
    return METRIC_BY_ANSWER_TYPE[declared]


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
