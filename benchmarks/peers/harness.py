"""Interleaved repeats for the peer comparisons: every contender warmed up once, then `repeats` rounds in
which each contender runs once (the order rotating per round), so load from other processes on a shared
machine lands on all of them alike rather than on whichever ran last.

The spread of each contender (median, min, max of its timings) goes into the result beside the headline
ratio, which is the ratio of the medians.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any


def interleave(contenders: Mapping[str, Callable[[], Any]], *, repeats: int, warmup: int = 1
               ) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Seconds of each call per contender, and each contender's return value from its last timed call (what a
    comparison of decisions reads). A contender that measures its own work returns a `SelfTimed`; any other
    is timed around the call."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    last: dict[str, Any] = {}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            value = contenders[name]()
            elapsed = time.perf_counter() - started
            if isinstance(value, SelfTimed):
                elapsed, value = value.seconds, value.value
            seconds[name].append(elapsed)
            last[name] = value
    return seconds, last


class SelfTimed:
    """What a contender returns when it measured its own seconds (e.g. a subprocess reporting the time of its
    work without the interpreter start), with the value to compare."""

    def __init__(self, seconds: float, value: Any = None) -> None:
        self.seconds, self.value = seconds, value


def spread(values: list[float], digits: int = 4) -> dict[str, float]:
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits)}


def ratio_spread(numerators: list[float], denominators: list[float], digits: int = 3) -> dict[str, float]:
    """Per-round ratios (round i of one contender over round i of the other: both ran under the same load)."""
    return spread([a / b for a, b in zip(numerators, denominators)], digits)


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages when a comparison ends: on a shared machine, how busy it was."""
    return [round(value, 1) for value in os.getloadavg()]
