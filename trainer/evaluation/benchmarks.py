"""The Thinking with Novel Views benchmark sets from local copies, the report's 575 + 120 selection, and its
scores by category.

Layouts read (as published):
- 3DSRBench, `3dsrbench_v1_vlmevalkit.tsv` (VLMEvalKit format; a Parquet file with the same columns also
  works): `index`, `question`, `A`, `B`, optional `C`, `D`, `answer` (a letter), `category` (one of the 12
  sub-categories below), `image` (base64 JPEG/PNG).
- RealWorldQA, `data/test-*.parquet`: `image` (struct with `bytes`), `question` (options inside the text),
  `answer` (a letter or a short word).

The report scores 3DSRBench by three categories; its 12 sub-categories map onto them by their prefix, and
`height_higher` (which object is higher: a vertical location relation) counts as Location. RealWorldQA rows are
their own category. The overall is count-weighted (all correct / all questions), and the relative gain is
(with novel views - baseline) / baseline.
"""

from __future__ import annotations

import base64
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

SUBCATEGORY_TO_CATEGORY = {
    "height_higher": "Location", "location_above": "Location", "location_closer_to_camera": "Location",
    "location_next_to": "Location",
    "orientation_in_front_of": "Orientation", "orientation_on_the_left": "Orientation",
    "orientation_viewpoint": "Orientation",
    "multi_object_closer_to": "Multi-Object", "multi_object_facing": "Multi-Object",
    "multi_object_viewpoint_towards_object": "Multi-Object", "multi_object_parallel": "Multi-Object",
    "multi_object_same_direction": "Multi-Object",
}
REALWORLDQA = "RealWorldQA"
THREEDSR_SELECTION = 575
REALWORLDQA_SELECTION = 120
_CHOICE_LETTER = re.compile(r"^\s*\(?([A-Z])\b")


class BenchmarkFormatError(ValueError):
    """A local benchmark copy that is not in its published layout."""


@dataclass(frozen=True)
class BenchmarkQuestion:
    id: str
    source: str  # "3DSRBench" | "RealWorldQA"
    category: str  # Orientation | Location | Multi-Object | RealWorldQA
    subcategory: str
    question: str  # with the lettered options appended, as the reasoner sees it
    answer: str
    image: bytes


def _read_table(path: Path) -> pa.Table:
    if path.suffix == ".parquet":
        return pq.read_table(path)
    if path.suffix == ".tsv":
        return pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter="\t"),
                              convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    raise BenchmarkFormatError(f"{path}: expected a .tsv or .parquet file")


def _require(table: pa.Table, path: Path, columns: Iterable[str]) -> None:
    missing = [column for column in columns if column not in table.column_names]
    if missing:
        raise BenchmarkFormatError(f"{path}: missing column(s) {', '.join(missing)}")


def load_3dsrbench(path: Path) -> list[BenchmarkQuestion]:
    table = _read_table(path)
    _require(table, path, ("index", "question", "A", "B", "answer", "category", "image"))
    questions = []
    for row in table.to_pylist():
        subcategory = row["category"]
        if subcategory not in SUBCATEGORY_TO_CATEGORY:
            raise BenchmarkFormatError(f"{path}: row {row['index']}: unknown category {subcategory!r}")
        options = [f"{letter}. {row[letter]}" for letter in "ABCD" if row.get(letter) not in (None, "")]
        questions.append(BenchmarkQuestion(
            id=f"3dsrbench-{row['index']}", source="3DSRBench", category=SUBCATEGORY_TO_CATEGORY[subcategory],
            subcategory=subcategory, question="\n".join([row["question"], *options]), answer=row["answer"].strip(),
            image=base64.b64decode(row["image"])))
    return questions


def load_realworldqa(paths: Iterable[Path]) -> list[BenchmarkQuestion]:
    questions = []
    for path in sorted(paths):
        table = _read_table(path)
        _require(table, path, ("image", "question", "answer"))
        for number, row in enumerate(table.to_pylist()):
            image = row["image"]["bytes"] if isinstance(row["image"], dict) else row["image"]
            if not image:
                raise BenchmarkFormatError(f"{path}: row {number}: no image bytes")
            questions.append(BenchmarkQuestion(
                id=f"realworldqa-{path.stem}-{number}", source=REALWORLDQA, category=REALWORLDQA,
                subcategory=REALWORLDQA, question=row["question"], answer=row["answer"].strip(), image=image))
    return questions


def largest_remainder_quotas(counts: Mapping[str, int], total: int) -> dict[str, int]:
    """Split `total` over groups in proportion to `counts`: floors first, then one more to the groups with the
    largest remainders (ties: larger group, then name). The quotas sum to exactly `total`."""
    available = sum(counts.values())
    if not 0 <= total <= available:
        raise ValueError(f"cannot select {total} of {available} questions")
    exact = {group: total * count / available for group, count in counts.items()}
    quotas = {group: int(share) for group, share in exact.items()}
    by_remainder = sorted(counts, key=lambda group: (-(exact[group] - quotas[group]), -counts[group], group))
    for group in by_remainder[:total - sum(quotas.values())]:
        quotas[group] += 1
    return quotas


def select_questions(threedsr: list[BenchmarkQuestion], realworldqa: list[BenchmarkQuestion], seed: int = 0,
                     threedsr_total: int = THREEDSR_SELECTION,
                     realworldqa_total: int = REALWORLDQA_SELECTION) -> list[BenchmarkQuestion]:
    """The report's evaluation set: 3DSRBench stratified over its 12 sub-categories, plus a RealWorldQA sample."""
    rng = random.Random(seed)
    by_subcategory: dict[str, list[BenchmarkQuestion]] = defaultdict(list)
    for question in threedsr:
        by_subcategory[question.subcategory].append(question)
    quotas = largest_remainder_quotas({name: len(rows) for name, rows in by_subcategory.items()}, threedsr_total)
    selected = [question for name in sorted(by_subcategory)
                for question in rng.sample(by_subcategory[name], quotas[name])]
    if realworldqa_total > len(realworldqa):
        raise ValueError(f"cannot select {realworldqa_total} of {len(realworldqa)} RealWorldQA questions")
    return selected + rng.sample(realworldqa, realworldqa_total)


def choice_correct(prediction: str, answer: str) -> bool:
    """A lettered answer is right when the prediction's leading letter is it; a worded one by exact match."""
    expected, predicted = _CHOICE_LETTER.match(answer), _CHOICE_LETTER.match(prediction)
    if expected and len(answer.strip().strip("().")) == 1:
        return bool(predicted) and predicted.group(1) == expected.group(1)
    return prediction.strip().lower().rstrip(".") == answer.strip().lower().rstrip(".")


def scores_by_category(results: Iterable[tuple[str, bool]]) -> dict[str, dict[str, float]]:
    """(category, correct) per question -> {category: {"n", "accuracy"}, "Overall": count-weighted}."""
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for category, correct in results:
        tally[category][0] += int(correct)
        tally[category][1] += 1
    table = {category: {"n": n, "accuracy": right / n} for category, (right, n) in sorted(tally.items())}
    right, n = sum(t[0] for t in tally.values()), sum(t[1] for t in tally.values())
    table["Overall"] = {"n": n, "accuracy": right / n if n else 0.0}
    return table


def relative_gain(with_views: Mapping[str, Mapping[str, float]],
                  baseline: Mapping[str, Mapping[str, float]]) -> dict[str, float | None]:
    """(with - baseline) / baseline per category; None where the baseline is 0 (no relative gain exists)."""
    return {category: ((with_views[category]["accuracy"] - base["accuracy"]) / base["accuracy"]
                       if base["accuracy"] else None)
            for category, base in baseline.items() if category in with_views}
