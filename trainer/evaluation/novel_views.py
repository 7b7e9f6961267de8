"""Thinking with Novel Views (report 6.1): a planner names a camera move, an editor synthesises that view, a
reasoner answers from the original image and the new one.

The three roles are callables, so any captioning backend can plan or reason and any editor can render: the
MMDiT editing sampler from a checkpoint, or, for procedural scenes, the Blender renderer as an exact editor
(`pipelines/novel_views.py` wires that one; the trainer does not import `render/`). The planner must answer
in the engine's camera-move template (`data_engine/camera_move.py`); an answer it cannot read is "no move", its
reason recorded, and the reasoner then answers from the original image alone.

Every question's steps go to one Parquet row (`NOVEL_VIEW_COLUMNS`): the planner's text, the parsed move or
its reject reason, the synthesised view, the baseline answer (original image only) and the answer with the
novel view, each scored; `summary.json` beside it holds the scores by category and the relative gain.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from data_engine.camera_move import CameraMove, parse_camera_move
from trainer.evaluation.benchmarks import BenchmarkQuestion, choice_correct, relative_gain, scores_by_category

Planner = Callable[[BenchmarkQuestion], str]  # the question (text + image) -> a camera-move sentence
Editor = Callable[[BenchmarkQuestion, CameraMove], bytes]  # the question's image moved by the camera -> PNG
Reasoner = Callable[[str, list[bytes]], str]  # question text, images (original first) -> answer

NOVEL_VIEW_COLUMNS = pa.schema([
    ("id", pa.string()), ("source", pa.string()), ("category", pa.string()), ("subcategory", pa.string()),
    ("question", pa.string()), ("answer", pa.string()),
    ("planner_output", pa.string()), ("camera_move", pa.string()),  # JSON of the parsed move, null: no move
    ("move_reject_reason", pa.string()), ("novel_view", pa.binary()),
    ("baseline_prediction", pa.string()), ("baseline_correct", pa.bool_()),
    ("prediction", pa.string()), ("correct", pa.bool_()),
])


def think_with_novel_views(question: BenchmarkQuestion, planner: Planner, editor: Editor,
                           reasoner: Reasoner) -> dict[str, Any]:
    """One question through planner -> editor -> reasoner, and the baseline answer without a new view."""
    baseline = reasoner(question.question, [question.image])
    planner_output = planner(question)
    parsed = parse_camera_move(planner_output)
    novel_view = editor(question, parsed.move) if parsed.move is not None else None
    prediction = reasoner(question.question, [question.image, novel_view]) if novel_view is not None else baseline
    return {"id": question.id, "source": question.source, "category": question.category,
            "subcategory": question.subcategory, "question": question.question, "answer": question.answer,
            "planner_output": planner_output,
            "camera_move": json.dumps(asdict(parsed.move)) if parsed.move is not None else None,
            "move_reject_reason": parsed.reject_reason, "novel_view": novel_view,
            "baseline_prediction": baseline, "baseline_correct": choice_correct(baseline, question.answer),
            "prediction": prediction, "correct": choice_correct(prediction, question.answer)}


def summarise_novel_views(records: list[dict[str, Any]]) -> dict[str, Any]:
    baseline = scores_by_category((record["category"], record["baseline_correct"]) for record in records)
    with_views = scores_by_category((record["category"], record["correct"]) for record in records)
    return {"questions": len(records), "no_move": sum(record["camera_move"] is None for record in records),
            "baseline": baseline, "novel_views": with_views, "relative_gain": relative_gain(with_views, baseline)}


def run_novel_views(questions: Iterable[BenchmarkQuestion], planner: Planner, editor: Editor, reasoner: Reasoner,
                    out_dir: Path) -> dict[str, Any]:
    """Every question through the loop; writes `<out_dir>/steps.parquet` and `<out_dir>/summary.json`."""
    records = [think_with_novel_views(question, planner, editor, reasoner) for question in questions]
    out_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records, schema=NOVEL_VIEW_COLUMNS), out_dir / "steps.parquet")
    summary = summarise_novel_views(records)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
