"""Edit distance, hand-worked (Latin and CJK), shared by the render check, the OCR reward and the metrics."""

from __future__ import annotations

import pytest

from data_engine.text_distance import edit_distance, normalised_edit_distance


@pytest.mark.parametrize(("a", "b", "distance"), [
    ("", "", 0), ("kitten", "sitting", 3), ("", "abc", 3), ("flaw", "lawn", 2), ("你好世界", "你们世界", 1),
    ("春眠不觉晓", "春眠觉晓", 1), ("abc", "abc", 0)])
def test_edit_distance_hand_worked(a: str, b: str, distance: int) -> None:
    assert edit_distance(a, b) == distance == edit_distance(b, a)


def test_normalised_edit_distance() -> None:
    assert normalised_edit_distance("kitten", "sitting") == pytest.approx(3 / 7)
    assert normalised_edit_distance("你好世界", "你们世界") == pytest.approx(0.25)
    assert normalised_edit_distance("", "") == 0.0 and normalised_edit_distance("", "ab") == 1.0
