"""balance_edits: on a pool skewed 90% to one task category, the selection meets every axis target within 5
points and no cell exceeds its cap; the same seed gives the same selection, another seed another one.
Shares are counted here from the selected rows' labels, independently of the stage's fitting."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from data_engine.editing.balance import BalanceConfig, balance_selection
from data_engine.editing.triplet import BALANCE_AXES

TARGETS = {"task_category": {"object_move": 0.25, "text": 0.25, "add": 0.25, "remove": 0.25},
           "granularity": {"object": 0.5, "global": 0.5},
           "input_condition": {"text": 0.8, "text_visual_cue": 0.2},
           "language": {"en": 0.5, "zh": 0.5},
           "domain": {"photo": 0.5, "render_3d": 0.3, "graphic_design": 0.2}}
CAP = 12


def skewed_pool(rows: int = 2000, seed: int = 7) -> tuple[list[str], list[dict[str, str]]]:
    rng = random.Random(seed)
    labels = []
    for _ in range(rows):
        task = "object_move" if rng.random() < 0.9 else rng.choice(["text", "add", "remove"])
        labels.append({"task_category": task, "granularity": rng.choice(["object", "object", "global"]),
                       "input_condition": rng.choice(["text", "text", "text", "text_visual_cue"]),
                       "language": rng.choice(["en", "en", "en", "zh"]),
                       "domain": rng.choice(["photo", "render_3d", "graphic_design", "other"])})
    return [f"row-{n:05d}" for n in range(rows)], labels


def test_skewed_pool_lands_every_axis_near_its_target_under_the_cell_cap() -> None:
    ids, labels = skewed_pool()
    assert Counter(row["task_category"] for row in labels)["object_move"] / len(labels) > 0.88
    decision = balance_selection(ids, labels, BalanceConfig(targets=TARGETS, max_per_cell=CAP, seed=0))
    selected = [row for row, keep in zip(labels, decision.kept) if keep]
    assert len(selected) >= 100  # not a trivially small selection
    for axis, shares in TARGETS.items():
        counts = Counter(row[axis] for row in selected)
        for value in set(counts) | set(shares):
            assert abs(counts[value] / len(selected) - shares.get(value, 0.0)) <= 0.05, (axis, value, counts)
    cells = Counter(tuple(row[axis] for axis in BALANCE_AXES) for row in selected)
    assert max(cells.values()) <= CAP
    # the quota stored per row is what its cell kept
    kept_per_cell = Counter(cell for cell, keep in zip(decision.cells, decision.kept) if keep)
    assert all(kept_per_cell[cell] == quota for cell, quota in zip(decision.cells, decision.quotas))


def test_same_seed_same_selection_other_seed_other_selection_order_free() -> None:
    ids, labels = skewed_pool(rows=1200)
    config = BalanceConfig(targets=TARGETS, max_per_cell=CAP, seed=3)
    first = balance_selection(ids, labels, config).kept
    shuffled = list(range(len(ids)))
    random.Random(1).shuffle(shuffled)
    again = balance_selection([ids[n] for n in shuffled], [labels[n] for n in shuffled], config).kept
    assert {ids[n] for n, keep in zip(shuffled, again) if keep} == {i for i, keep in zip(ids, first) if keep}
    other = balance_selection(ids, labels, config.model_copy(update={"seed": 4})).kept
    assert other != first and sum(other) == sum(first)


def test_unreachable_target_is_left_out_and_reported() -> None:
    ids, labels = skewed_pool(rows=400)
    targets = dict(TARGETS, task_category={"object_move": 0.4, "text": 0.2, "add": 0.2, "style": 0.2})
    decision = balance_selection(ids, labels, BalanceConfig(targets=targets, seed=0))
    assert decision.unreachable["task_category"] == ["style"]
    assert decision.targets["task_category"]["object_move"] == pytest.approx(0.5)
    selected = [row["task_category"] for row, keep in zip(labels, decision.kept) if keep]
    assert "remove" not in selected  # a value without a share is not selected


def test_bad_targets_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        BalanceConfig(targets={"language": {"en": 0.7, "zh": 0.7}})
    with pytest.raises(ValueError, match="unknown values"):
        BalanceConfig(targets={"language": {"fr": 1.0}})
