"""Rotational symmetry of an asset about its up axis (z): which turns leave its render unchanged.

A spatial edit that turns an object must change the picture, so every asset carries its symmetry: `none`,
`2-fold` (a half turn maps it onto itself: a table), `4-fold` (a quarter turn: a square crate),
`continuous` (every turn the eight named views use, 45 degrees and its multiples: a ball, a bottle, a lamp).
It is measured on labelled points in the asset's posed frame (the frame the edits turn it in): a turn is a
symmetry when every point lands on a point with the same label. Procedural assets give their outline points
labelled by material and text (the description: a label on the front face breaks the symmetry its box would
have); file assets give their mesh vertices. A texture that breaks a mesh's symmetry is not seen, which
errs on the safe side: such a turn is not drawn, though it would have shown.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.spatial import cKDTree

from data_engine.conventions import rotation_z

SymmetryKind = Literal["none", "2-fold", "4-fold", "continuous"]
# The smallest turn (degrees) each kind is invariant under; "continuous" is checked at the smallest turn a
# named view makes, so a mesh that is a body of revolution to that resolution counts as one.
_SMALLEST_TURN_DEG: dict[SymmetryKind, float] = {"continuous": 45.0, "4-fold": 90.0, "2-fold": 180.0}


def turn_leaves_unchanged(symmetry: SymmetryKind, turn_deg: float) -> bool:
    """Whether turning an asset of this symmetry by `turn_deg` about z gives the same render (45-degree
    multiples only for `continuous`, which is all the edits make)."""
    if symmetry == "none":
        return abs(((turn_deg + 180.0) % 360.0) - 180.0) < 1e-6
    period = _SMALLEST_TURN_DEG[symmetry]
    remainder = turn_deg % period
    return min(remainder, period - remainder) < 1e-6


def _maps_onto_itself(points: np.ndarray, labels: np.ndarray, turn_deg: float, tolerance: float) -> bool:
    turned = points @ rotation_z(np.radians(turn_deg)).T
    for label in np.unique(labels):
        gaps, _ = cKDTree(points[labels == label]).query(turned[labels == label])
        if gaps.max() > tolerance:
            return False
    return True


def measure_symmetry(points: np.ndarray, labels: np.ndarray, tolerance: float) -> SymmetryKind:
    """The largest symmetry whose smallest turn maps every point onto a point with the same label (within
    `tolerance`, metres); points are in the frame the edits turn the asset in (its up axis is z)."""
    points = np.asarray(points, dtype=float)
    labels = np.asarray(labels)
    for kind, turn in _SMALLEST_TURN_DEG.items():
        if _maps_onto_itself(points, labels, turn, tolerance):
            return kind
    return "none"
