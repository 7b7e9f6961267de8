"""The report's table metrics against hand-worked vectors."""

from __future__ import annotations

import pytest

from trainer.evaluation.metrics import (category_averages, gedit_overall,
                                        spatial_edit_bench_overall, text_units, word_accuracy)


def test_spatial_edit_bench_overall_is_the_mean_of_sub_scores_as_in_the_report_row() -> None:
    assert spatial_edit_bench_overall([0.652, 0.646]) == pytest.approx(0.649)
    with pytest.raises(ValueError):
        spatial_edit_bench_overall([])


def test_gedit_overall_is_per_sample_then_averaged_not_the_product_of_averages() -> None:
    samples = [(9.0, 1.0), (1.0, 9.0)]
    assert gedit_overall(samples) == pytest.approx(3.0)  # sqrt(9) per sample
    # the product of averages would give sqrt(5 * 5) = 5
    assert gedit_overall([(4.0, 9.0)]) == pytest.approx(6.0)
    assert gedit_overall([(8.0, 0.0), (0.0, 8.0)]) == 0.0


def test_word_accuracy_counts_target_words_with_multiplicity() -> None:
    assert word_accuracy("OPEN 24 hours", "Open 24 Hours") == 1.0
    assert word_accuracy("the cat", "the the cat sat") == pytest.approx(2 / 4)  # one "the" matched once
    assert word_accuracy("SALE, today!", "Big sale today") == pytest.approx(2 / 3)


def test_word_accuracy_on_chinese_counts_characters() -> None:
    assert text_units("欢迎光临 Shop") == ["欢", "迎", "光", "临", "shop"]
    assert word_accuracy("欢迎光临", "欢迎光临本店") == pytest.approx(4 / 6)
    assert word_accuracy("ＯＰＥＮ", "open") == 1.0  # full-width OCR output matches
    with pytest.raises(ValueError):
        word_accuracy("x", "  !! ")


def test_imgedit_category_averages_weigh_categories_equally() -> None:
    means, overall = category_averages([("add", 4.0), ("add", 2.0), ("remove", 5.0)])
    assert means == {"add": 3.0, "remove": 5.0}
    assert overall == pytest.approx(4.0)  # not the sample mean 11 / 3
