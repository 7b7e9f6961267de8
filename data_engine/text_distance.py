"""Edit distance between texts, the one implementation behind text-rendering verification (character error
rate), the OCR reward and the evaluation metrics (CVTG-2K / LongText-Bench normalised edit distance)."""

from __future__ import annotations


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance over characters (insert, delete, substitute, each cost 1)."""
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def normalised_edit_distance(first: str, second: str) -> float:
    """edit distance / the longer length, in [0, 1]; two empty strings are identical (0)."""
    longer = max(len(first), len(second))
    return edit_distance(first, second) / longer if longer else 0.0
