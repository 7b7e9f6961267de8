"""Chinese character frequency buckets and the balanced character sampler (rare-character coverage).

Frequencies come from the `wordfreq` package's Chinese word list: a character's frequency is the summed
frequency of the words that contain it (counted once per occurrence). Characters are ranked by it and the
ranks cut into buckets (by default the 500 most common, then ranks 500-1500, 1500-3000, 3000-6000; rarer
ones are left out, as the report filters by frequency). The sampler draws each character from the bucket
drawn least so far (ties broken by the seeded generator), then uniformly inside it, so rare characters
appear as often as common ones and every bucket's count stays within one of the others'.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from functools import cache

DEFAULT_BUCKET_EDGES: tuple[int, ...] = (0, 500, 1500, 3000, 6000)


def _is_han(character: str) -> bool:
    return "\u4e00" <= character <= "\u9fff"


@cache
def chinese_character_ranking() -> tuple[str, ...]:
    """CJK Unified Ideographs from most to least frequent (ties by code point, so the order is stable)."""
    from wordfreq import get_frequency_dict

    frequency: Counter[str] = Counter()
    for word, word_frequency in get_frequency_dict("zh", wordlist="best").items():
        for character in word:
            if _is_han(character):
                frequency[character] += word_frequency
    return tuple(sorted(frequency, key=lambda c: (-frequency[c], c)))


@cache
def frequency_buckets(edges: tuple[int, ...] = DEFAULT_BUCKET_EDGES) -> tuple[tuple[str, ...], ...]:
    """The ranking cut at `edges` (rank boundaries, increasing): one tuple of characters per bucket."""
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])) or edges[0] < 0:
        raise ValueError(f"bucket edges must increase from >= 0, got {edges}")
    ranking = chinese_character_ranking()
    if edges[-1] > len(ranking):
        raise ValueError(f"bucket edges reach rank {edges[-1]} but the frequency list has {len(ranking)} characters")
    return tuple(ranking[low:high] for low, high in zip(edges, edges[1:]))


def bucket_of(buckets: Sequence[Sequence[str]]) -> dict[str, int]:
    return {character: number for number, bucket in enumerate(buckets) for character in bucket}


class BalancedCharacterSampler:
    """Draws characters so that every frequency bucket is drawn equally often."""

    def __init__(self, rng: random.Random, edges: tuple[int, ...] = DEFAULT_BUCKET_EDGES) -> None:
        self.rng = rng
        self.buckets = frequency_buckets(edges)
        self.counts = [0] * len(self.buckets)

    def draw(self) -> str:
        least = min(self.counts)
        bucket = self.rng.choice([n for n, count in enumerate(self.counts) if count == least])
        self.counts[bucket] += 1
        return self.rng.choice(self.buckets[bucket])

    def text(self, length: int) -> str:
        return "".join(self.draw() for _ in range(length))
