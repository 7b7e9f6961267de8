"""The planner -> editor -> reasoner loop: every step recorded per question; a planner answer that is no move
leaves the reasoner with the original image."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from data_engine.camera_move import CameraMove
from trainer.evaluation.benchmarks import BenchmarkQuestion
from trainer.evaluation.novel_views import NOVEL_VIEW_COLUMNS, run_novel_views


def _question(number: int) -> BenchmarkQuestion:
    return BenchmarkQuestion(id=f"q{number}", source="procedural", category="Orientation", subcategory="x",
                             question="Is the cup visible?\nA. yes\nB. no", answer="A", image=b"first")


def test_each_step_is_recorded_and_an_unreadable_plan_is_no_move(tmp_path: Path) -> None:
    plans = {"q0": "Orbit the camera 90 degrees to the left around the cup. Keep the scene static.",
             "q1": "Look behind the shelf, I think."}
    edits: list[tuple[str, CameraMove]] = []

    def editor(question: BenchmarkQuestion, move: CameraMove) -> bytes:
        edits.append((question.id, move))
        return b"novel:" + question.id.encode()

    def reasoner(question: str, images: list[bytes]) -> str:
        return "A" if any(image.startswith(b"novel:") for image in images) else "B"

    summary = run_novel_views([_question(0), _question(1)], lambda q: plans[q.id], editor, reasoner, tmp_path)
    assert edits == [("q0", CameraMove("cup", yaw_deg=-90.0))]  # no edit for the unreadable plan
    table = pq.read_table(tmp_path / "steps.parquet")
    assert table.schema == NOVEL_VIEW_COLUMNS
    rows = {row["id"]: row for row in table.to_pylist()}
    assert json.loads(rows["q0"]["camera_move"]) == {"subject": "cup", "yaw_deg": -90.0, "pitch_deg": 0.0,
                                                     "zoom": "unchanged"}
    assert rows["q0"]["novel_view"] == b"novel:q0" and rows["q0"]["correct"] and not rows["q0"]["baseline_correct"]
    assert rows["q1"]["camera_move"] is None and rows["q1"]["novel_view"] is None
    assert rows["q1"]["move_reject_reason"] == "does not end with '. Keep the scene static.'"
    assert rows["q1"]["prediction"] == rows["q1"]["baseline_prediction"] == "B"
    assert summary["no_move"] == 1 and summary["baseline"]["Overall"]["accuracy"] == 0.0
    assert summary["novel_views"]["Overall"]["accuracy"] == 0.5 and summary["relative_gain"]["Overall"] is None
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
