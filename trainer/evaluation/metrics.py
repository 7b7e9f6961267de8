"""The metrics behind the report's evaluation tables, one function per definition.

Numeric spatial answers use MRA from `trainer.evaluation.spatial_qa` (its one owner). Here:
- SpatialEdit-Bench: the overall score is the plain mean of the sub-scores (report row: (0.652 + 0.646) / 2).
- GEdit-Bench: each sample's overall is the geometric mean of its semantic-consistency and perceptual-quality
  scores, and the benchmark's overall is the mean of those; the geometric mean of the two averages is a
  different (and wrong) number whenever the scores vary across samples.
- Text rendering (CVTG-2K, LongText-Bench): word accuracy (the share of target words the OCR output
  contains, counted with multiplicity) and the normalised edit distance (`data_engine.text_distance`:
  Levenshtein over characters divided by the longer length; the tables report 1 - it as "NED"). Chinese has
  no spaces, so a Chinese target's "words" are its characters.
- ImgEdit: the mean score per edit category, and the overall as the mean of the category means.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence




def spatial_edit_bench_overall(sub_scores: Sequence[float]) -> float:
    if not sub_scores:
        raise ValueError("SpatialEdit-Bench overall needs at least one sub-score")
    return sum(sub_scores) / len(sub_scores)


def gedit_sample_overall(semantic_consistency: float, perceptual_quality: float) -> float:
    if semantic_consistency < 0 or perceptual_quality < 0:
        raise ValueError(f"GEdit scores are non-negative, got SC={semantic_consistency}, PQ={perceptual_quality}")
    return math.sqrt(semantic_consistency * perceptual_quality)


def gedit_overall(samples: Sequence[tuple[float, float]]) -> float:
    """samples: (semantic consistency, perceptual quality) per edited image -> mean of per-sample overalls."""
    if not samples:
        raise ValueError("GEdit overall needs at least one sample")
    return sum(gedit_sample_overall(sc, pq) for sc, pq in samples) / len(samples)


def text_units(text: str) -> list[str]:
    """The units word accuracy counts: CJK characters one by one, other text split on whitespace and
    punctuation, compared case-insensitively after NFKC (full-width letters match their ASCII forms)."""
    text = unicodedata.normalize("NFKC", text).lower()
    units: list[str] = []
    for token in re.findall(r"[\w]+", text):
        units.extend(re.findall(r"[\u3400-\u9fff\uf900-\ufaff]|[^\u3400-\u9fff\uf900-\ufaff]+", token))
    return units


def word_accuracy(ocr_text: str, target_text: str) -> float:
    """Share of the target's words (CJK: characters) found in the OCR output, each occurrence matched once."""
    target = Counter(text_units(target_text))
    if not target:
        raise ValueError("word accuracy needs a target with at least one word")
    found = Counter(text_units(ocr_text))
    return sum(min(count, found[unit]) for unit, count in target.items()) / sum(target.values())


def category_averages(scored: Iterable[tuple[str, float]]) -> tuple[dict[str, float], float]:
    """(category, score) pairs -> ({category: mean score}, mean of the category means), as ImgEdit reports."""
    by_category: dict[str, list[float]] = defaultdict(list)
    for category, score in scored:
        by_category[category].append(score)
    if not by_category:
        raise ValueError("category averages need at least one scored sample")
    means = {category: sum(scores) / len(scores) for category, scores in sorted(by_category.items())}
    return means, sum(means.values()) / len(means)
