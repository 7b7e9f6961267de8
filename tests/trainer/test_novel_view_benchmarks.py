"""3DSRBench / RealWorldQA from fixtures in their published layouts, the 575 + 120 selection, scores."""

from __future__ import annotations

import base64
import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trainer.evaluation.benchmarks import (SUBCATEGORY_TO_CATEGORY, BenchmarkFormatError, choice_correct,
                                           largest_remainder_quotas, load_3dsrbench, load_realworldqa,
                                           relative_gain, scores_by_category, select_questions)

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg==")


def _write_3dsrbench_tsv(path: Path, per_subcategory: dict[str, int]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["index", "question", "A", "B", "C", "D", "answer", "category", "image"])
        index = 0
        for subcategory, count in per_subcategory.items():
            for _ in range(count):
                writer.writerow([index, f"Question {index}?", "yes", "no", "", "", "A", subcategory,
                                 base64.b64encode(PNG).decode()])
                index += 1


def _write_realworldqa(path: Path, count: int) -> None:
    pq.write_table(pa.table({"image": [{"bytes": PNG, "path": f"{i}.png"} for i in range(count)],
                             "question": ["Which way? A. left B. right" for _ in range(count)],
                             "answer": ["B"] * count}), path)


def test_loaders_read_the_published_layouts(tmp_path: Path) -> None:
    _write_3dsrbench_tsv(tmp_path / "3dsrbench_v1_vlmevalkit.tsv", {"orientation_viewpoint": 2, "height_higher": 1})
    _write_realworldqa(tmp_path / "test-00000-of-00002.parquet", 3)
    threedsr = load_3dsrbench(tmp_path / "3dsrbench_v1_vlmevalkit.tsv")
    assert [(q.category, q.answer, q.image) for q in threedsr] == [("Orientation", "A", PNG)] * 2 + [
        ("Location", "A", PNG)]
    assert threedsr[0].question == "Question 0?\nA. yes\nB. no"  # empty C/D are no options
    realworld = load_realworldqa([tmp_path / "test-00000-of-00002.parquet"])
    assert len(realworld) == 3 and realworld[0].image == PNG and realworld[0].category == "RealWorldQA"


def test_a_copy_in_another_layout_is_a_one_line_error(tmp_path: Path) -> None:
    pq.write_table(pa.table({"question": ["q"], "answer": ["A"]}), tmp_path / "x.parquet")
    with pytest.raises(BenchmarkFormatError, match=r"x.parquet: missing column\(s\) index, A, B, category, image"):
        load_3dsrbench(tmp_path / "x.parquet")


def test_largest_remainder_hand_worked() -> None:
    # 10 over (5, 3, 2) of 10 -> exact; 4 over (5, 3, 2): 2.0, 1.2, 0.8 -> floors 2, 1, 0, remainder to "c"
    assert largest_remainder_quotas({"a": 5, "b": 3, "c": 2}, 4) == {"a": 2, "b": 1, "c": 1}
    assert largest_remainder_quotas({"a": 1, "b": 1, "c": 1}, 2) == {"a": 1, "b": 1, "c": 0}
    with pytest.raises(ValueError):
        largest_remainder_quotas({"a": 1}, 2)


def test_the_report_selection_is_exactly_575_plus_120_stratified(tmp_path: Path) -> None:
    counts = {name: 90 + 37 * i for i, name in enumerate(sorted(SUBCATEGORY_TO_CATEGORY))}  # 12 uneven groups
    _write_3dsrbench_tsv(tmp_path / "b.tsv", counts)
    _write_realworldqa(tmp_path / "r.parquet", 200)
    selected = select_questions(load_3dsrbench(tmp_path / "b.tsv"), load_realworldqa([tmp_path / "r.parquet"]))
    threedsr = [q for q in selected if q.source == "3DSRBench"]
    assert len(threedsr) == 575 and len(selected) == 695 and len({q.id for q in selected}) == 695
    total = sum(counts.values())
    for name, count in counts.items():
        share = 575 * count / total
        assert int(share) <= sum(q.subcategory == name for q in threedsr) <= int(share) + 1


def test_scores_by_category_are_count_weighted_and_the_gain_relative() -> None:
    baseline = scores_by_category([("Orientation", True), ("Orientation", False), ("Location", False),
                                   ("Location", False), ("Location", True), ("Location", True)])
    assert baseline["Orientation"]["accuracy"] == 0.5 and baseline["Overall"]["accuracy"] == pytest.approx(3 / 6)
    improved = scores_by_category([("Orientation", True)] * 2 + [("Location", True)] * 3 + [("Location", False)])
    assert improved["Overall"]["accuracy"] == pytest.approx(5 / 6)  # not the mean of 1.0 and 0.75
    gain = relative_gain(improved, baseline)
    assert gain["Orientation"] == pytest.approx(1.0) and gain["Overall"] == pytest.approx((5 / 6 - 0.5) / 0.5)


@pytest.mark.parametrize(("prediction", "answer", "correct"), [
    ("B", "B", True), ("(B) the left one", "B", True), ("B. right", "A", False), ("Bottle", "B", False),
    ("Yes.", "yes", True), ("no", "yes", False)])
def test_choice_correct(prediction: str, answer: str, correct: bool) -> None:
    assert choice_correct(prediction, answer) is correct
