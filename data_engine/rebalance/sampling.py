"""The rebalance decision over a tagged dataset (report 4.1.3), defined exactly:

- a tag's count c is the number of samples carrying it after diversity sampling (an empty tag is no
  category); each category c has the rate r(c) = min(1, b_s * 2 / log10(c)), b_s the base rate of the
  frequency segment containing c, and 1 for tail categories (c < T); a category on the weak-capability list
  has r multiplied by (1 + boost), capped at 1;
- N_sample(c) = round(c * r(c)) is a quota: categories are processed from rarest to most frequent (ties:
  the smaller tag id) with running dedup. The carriers of c already kept through a rarer category count
  toward its quota, and only the shortfall is drawn from the carriers not decided yet, which are decided
  here (c is their category). So tail categories are kept whole and each head category keeps its quota,
  unless its carriers kept through rarer categories already exceed it (nothing more is drawn; the summary
  shows it) or too few are left undecided (all of them are kept);
- the draw takes the undecided carriers with the smallest hash of (seed, sample id), so decisions are
  reproducible and do not depend on the order or sharding of the data.
Sample ids must be unique (a repeated id is an error, not "last decision wins").
MetaCLIP's balancing (keep probability 1 - prod over the sample's tags of (1 - min(1, t / c_e))) is the
selectable alternative.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Segment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    from_multiple: float = Field(gt=0)  # the segment starts at this multiple of T
    base_rate: float = Field(gt=0, le=1)


class RebalanceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["joyai", "metaclip"] = "joyai"
    tail_threshold: int = Field(default=100_000, gt=1)  # T; scale it with the dataset
    segments: tuple[Segment, ...] = (Segment(from_multiple=1, base_rate=1.0), Segment(from_multiple=10, base_rate=0.5),
                                     Segment(from_multiple=100, base_rate=0.2))
    weak_categories: tuple[str, ...] = ()  # tag ids whose rate is boosted
    boost: float = Field(default=0.3, ge=0.2, le=0.5)
    seed: int = 0

    @model_validator(mode="after")
    def _segments_ordered(self) -> RebalanceConfig:
        starts = [s.from_multiple for s in self.segments]
        if not starts or starts[0] != 1 or starts != sorted(starts) or len(set(starts)) != len(starts):
            raise ValueError(f"segments: must start at 1 (i.e. at T) and increase, got {starts}")
        return self


class RebalanceInputError(ValueError):
    """The samples cannot be rebalanced as given (a repeated sample id); the message names it."""


@dataclass(frozen=True)
class Decision:
    category: str | None  # None for a sample without tags (kept: nothing to balance it against)
    category_count: int
    keep_probability: float  # the share of its category's undecided carriers drawn (metaclip: its own probability)
    keep: bool


def uniform(seed: int, sample_id: str) -> float:
    digest = hashlib.sha256(f"{seed}\x00{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def keep_rate(count: int, category: str, config: RebalanceConfig) -> float:
    if count < config.tail_threshold:
        return 1.0
    base = [s.base_rate for s in config.segments if count >= s.from_multiple * config.tail_threshold][-1]
    rate = min(1.0, base * 2.0 / math.log10(count))
    if category in config.weak_categories:
        rate = min(1.0, rate * (1.0 + config.boost))
    return rate


def categories_of(tags: Sequence[str] | None) -> set[str]:
    """A sample's categories: its distinct non-empty tags."""
    return {tag for tag in tags or () if tag.strip()}


def tag_counts(sample_tags: Sequence[Sequence[str]]) -> Counter:
    return Counter(tag for tags in sample_tags for tag in categories_of(tags))


def quota(count: int, category: str, config: RebalanceConfig) -> int:
    """N_sample: how many of a category's `count` carriers the rebalanced set keeps."""
    return math.floor(count * keep_rate(count, category, config) + 0.5)


def check_unique_ids(sample_ids: Sequence[str]) -> None:
    if len(set(sample_ids)) != len(sample_ids):
        repeated = sorted(sample_id for sample_id, n in Counter(sample_ids).items() if n > 1)
        raise RebalanceInputError(f"sample ids must be unique; repeated: {repeated[:5]}"
                                  + (f" and {len(repeated) - 5} more" if len(repeated) > 5 else ""))


def rebalance(sample_ids: Sequence[str], sample_tags: Sequence[Sequence[str]], config: RebalanceConfig) -> list[Decision]:
    check_unique_ids(sample_ids)
    counts = tag_counts(sample_tags)
    if config.method == "metaclip":
        return [_metaclip(sample_id, tags, counts, config) for sample_id, tags in zip(sample_ids, sample_tags)]
    carriers: dict[str, list[int]] = {}
    for index, tags in enumerate(sample_tags):
        for tag in categories_of(tags):
            carriers.setdefault(tag, []).append(index)
    decisions: list[Decision | None] = [None] * len(sample_ids)
    for category in sorted(counts, key=lambda tag: (counts[tag], tag)):  # rarest first
        members = carriers[category]
        undecided = [index for index in members if decisions[index] is None]
        if not undecided:
            continue
        already_kept = sum(1 for index in members if decisions[index] is not None and decisions[index].keep)
        shortfall = min(len(undecided), max(0, quota(counts[category], category, config) - already_kept))
        drawn = set(sorted(undecided, key=lambda index: (uniform(config.seed, sample_ids[index]),
                                                         sample_ids[index]))[:shortfall])
        share = shortfall / len(undecided)
        for index in undecided:
            decisions[index] = Decision(category, counts[category], share, index in drawn)
    return [d if d is not None else Decision(None, 0, 1.0, True) for d in decisions]


def _metaclip(sample_id: str, tags: Sequence[str], counts: Counter, config: RebalanceConfig) -> Decision:
    categories = categories_of(tags)
    if not categories:
        return Decision(None, 0, 1.0, True)
    t = config.tail_threshold
    miss = math.prod(1.0 - min(1.0, t / counts[tag]) for tag in categories)
    probability = 1.0 - miss
    rarest = min(categories, key=lambda tag: (counts[tag], tag))
    return Decision(rarest, counts[rarest], probability, uniform(config.seed, sample_id) < probability)


def distribution_summary(counts: Counter, tail_threshold: int) -> dict[str, float]:
    """Head/tail shares (of tag occurrences: a sample counts once per tag it carries) and the entropy (bits)
    of a category frequency distribution."""
    total = sum(counts.values())
    if not total:
        return {"tag_occurrences": 0, "categories": 0, "head_share": 0.0, "tail_share": 0.0, "entropy_bits": 0.0}
    head = sum(c for c in counts.values() if c >= tail_threshold)
    entropy = -sum(c / total * math.log2(c / total) for c in counts.values() if c)
    return {"tag_occurrences": total, "categories": len(counts), "head_share": head / total,
            "tail_share": 1 - head / total, "entropy_bits": entropy}
