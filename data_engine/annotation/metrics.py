"""Quality-control measures over imported annotations: sentinel accuracy, score distribution against the
rubric's targets, and agreement on items scored by more than one annotator (Krippendorff's alpha).

- Sentinel accuracy: a judgement of a sentinel is correct when all three dimension scores equal its known
  scores; an annotator under `min_accuracy` (0.9) is flagged for retraining.
- Distribution: an annotator's scores on real items (sentinels excluded, all dimensions pooled) per band
  (4-5, 3, 0) against the target range of each band; a 4-5 share above its range is score inflation.
- Krippendorff's alpha from the coincidence matrix (Krippendorff 2011, "Computing Krippendorff's
  Alpha-Reliability"): alpha = 1 - (n - 1) * sum(o_ck * d_ck) / sum(n_c * n_k * d_ck), over units with two or
  more values, with the nominal, ordinal or interval difference d_ck.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from data_engine.annotation.rubric import BAND_OF_SCORE, DIMENSION_NAMES, TARGET_BANDS

Metric = Literal["nominal", "ordinal", "interval"]
MIN_SENTINEL_ACCURACY = 0.9


def krippendorff_alpha(units: Mapping[Hashable, Sequence[float]], metric: Metric = "ordinal") -> float | None:
    """Alpha over `units` (item -> the values its annotators gave); None when fewer than two pairable values
    or no expected disagreement (every value identical)."""
    pairable = [list(values) for values in units.values() if len(values) >= 2]
    coincidence: Counter[tuple[float, float]] = Counter()
    for values in pairable:
        weight = 1.0 / (len(values) - 1)
        for i, first in enumerate(values):
            for j, second in enumerate(values):
                if i != j:
                    coincidence[first, second] += weight
    totals: Counter[float] = Counter()
    for (first, _), count in coincidence.items():
        totals[first] += count
    n = sum(totals.values())
    if n < 2:
        return None
    levels = sorted(totals)
    difference = _difference(levels, totals, metric)
    observed = sum(count * difference[pair] for pair, count in coincidence.items())
    expected = sum(totals[c] * totals[k] * difference[c, k] for c in levels for k in levels)
    if expected == 0:
        return None
    return 1.0 - (n - 1) * observed / expected


def _difference(levels: list[float], totals: Mapping[float, float], metric: Metric) -> dict[tuple[float, float], float]:
    difference = {}
    for c in levels:
        for k in levels:
            if metric == "nominal":
                value = 0.0 if c == k else 1.0
            elif metric == "interval":
                value = (c - k) ** 2
            else:  # ordinal: the values' ranks, weighted by how often each level was used
                low, high = sorted((c, k))
                between = sum(totals[g] for g in levels if low <= g <= high)
                value = (between - (totals[c] + totals[k]) / 2) ** 2
            difference[c, k] = value
    return difference


@dataclass(frozen=True)
class SentinelResult:
    annotator: str
    judged: int
    correct: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.judged if self.judged else None

    @property
    def flagged(self) -> bool:
        return self.judged > 0 and self.correct / self.judged < MIN_SENTINEL_ACCURACY


def sentinel_results(judgements: Sequence[Mapping], known: Mapping[str, Mapping[str, int]]) -> list[SentinelResult]:
    """Per annotator, from judgements (annotator, task_key, one score per dimension) of sentinel tasks whose
    known scores are `known[task_key]`."""
    judged: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    for judgement in judgements:
        answer = known.get(judgement["task_key"])
        if answer is None:
            continue
        judged[judgement["annotator"]] += 1
        correct[judgement["annotator"]] += all(judgement[d] == answer[d] for d in DIMENSION_NAMES)
    return [SentinelResult(a, judged[a], correct[a]) for a in sorted(judged)]


@dataclass(frozen=True)
class Distribution:
    annotator: str
    scores: int
    shares: dict[str, float]  # band -> share of the annotator's scores
    out_of_target: tuple[str, ...]  # bands outside their target range
    inflated: bool  # the 4-5 share is above its target range


def score_distributions(judgements: Sequence[Mapping]) -> list[Distribution]:
    by_annotator: dict[str, Counter[str]] = defaultdict(Counter)
    for judgement in judgements:
        for dimension in DIMENSION_NAMES:
            by_annotator[judgement["annotator"]][BAND_OF_SCORE[judgement[dimension]]] += 1
    results = []
    for annotator, bands in sorted(by_annotator.items()):
        total = sum(bands.values())
        shares = {band: bands[band] / total for band in TARGET_BANDS}
        outside = tuple(band for band, (low, high) in TARGET_BANDS.items() if not low <= shares[band] <= high)
        results.append(Distribution(annotator, total, shares, outside, shares["4-5"] > TARGET_BANDS["4-5"][1]))
    return results


def agreement(judgements: Sequence[Mapping]) -> dict[str, float | None]:
    """Alpha per dimension (ordinal) and over the weighted score (interval), on items judged more than once."""
    units: dict[str, dict[Hashable, list[float]]] = {name: defaultdict(list) for name in (*DIMENSION_NAMES, "weighted")}
    for judgement in judgements:
        for dimension in DIMENSION_NAMES:
            units[dimension][judgement["task_key"]].append(judgement[dimension])
        units["weighted"][judgement["task_key"]].append(judgement["weighted_score"])
    return {name: krippendorff_alpha(values, "interval" if name == "weighted" else "ordinal")
            for name, values in units.items()}
