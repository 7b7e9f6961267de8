"""Caption keyword/pattern rules: English and Chinese, map and string columns, editable rule files."""

from __future__ import annotations

import pyarrow as pa
import pytest

from data_engine.curation.caption_rules import CaptionRulesError, load_caption_rules
from data_engine.stage_runner import apply_stage
from data_engine.stages.caption_content_filter import CaptionContentFilterConfig, CaptionContentFilterStage
from tests.curation.images import stage_input

CAPTIONS = [
    [("short/en", "A collage of four beach photos."), ("short/zh", "海滩照片")],
    [("short/en", "A red fox in snow."), ("short/zh", "雪地里的狐狸，右下角有水印")],
    [("long/en", "A screenshot of a chat app showing messages.")],
    [("short/en", "A mountain lake at dawn © PhotoCorp")],
    [("short/en", "A recollection of summer: a quiet garden.")],  # "collage" inside a word: no match
    None,
]


def _table(values, column_type=pa.map_(pa.string(), pa.string())) -> pa.Table:
    return stage_input(captions=pa.array(values, type=column_type))


@pytest.fixture(scope="module")
def stage() -> CaptionContentFilterStage:
    stage = CaptionContentFilterStage(CaptionContentFilterConfig())
    stage.setup()
    return stage


def test_flags_each_category_in_both_languages(stage):
    out, stats = apply_stage(stage, _table(CAPTIONS), batch_size=4)
    assert out.column("content_categories").to_pylist() == [
        ["collage"], ["watermark"], ["screenshot"], ["watermark"], [], None]
    assert out.column("content_matches").to_pylist()[1] == ["watermark: 水印"]
    assert out.column("content_matches").to_pylist()[3] == ["watermark: ©\\s*\\w+"]
    assert out.column("reject_reason").to_pylist() == ["caption_content"] * 4 + [None, None]
    assert stats.rejects == {"caption_content": 4}


def test_reject_categories_is_a_threshold(stage):
    out, _ = apply_stage(stage, _table(CAPTIONS), batch_size=8)
    only_collage = CaptionContentFilterStage(CaptionContentFilterConfig(reject_categories=("collage",)))
    assert only_collage.decide(out) == ["caption_content"] + [None] * 5


def test_string_column_and_edited_rules_without_code(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("categories:\n  poster:\n    keywords:\n      en: [movie poster]\n      zh: [海报]\n")
    stage = CaptionContentFilterStage(CaptionContentFilterConfig(rules_path=str(rules), caption_column="captions",
                                                                 reject_categories=("poster",)))
    stage.setup()
    out, _ = apply_stage(stage, _table(["A Movie Poster for a film", "电影海报", "a cat", ""], pa.string()), 4)
    assert out.column("reject_reason").to_pylist() == ["caption_content", "caption_content", None, None]


@pytest.mark.parametrize("text, message", [
    ("categories:\n  x:\n    patterns: ['(unclosed']\n", "categories.x.patterns: pattern '(unclosed' is not"),
    ("categories:\n  x:\n    keyword: [a]\n", "categories.x.keyword: Extra inputs"),
    ("categories: [a\n", "invalid YAML"),
])
def test_bad_rule_files_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CaptionRulesError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_caption_rules(path)


def test_missing_rule_file_and_missing_column(tmp_path):
    with pytest.raises(CaptionRulesError, match="nope.yaml: cannot read rule file"):
        load_caption_rules(tmp_path / "nope.yaml")
    stage = CaptionContentFilterStage(CaptionContentFilterConfig(caption_column="caption_en"))
    stage.setup()
    out, _ = apply_stage(stage, _table(CAPTIONS[:1]), batch_size=1)
    assert out.column("reject_reason").to_pylist() == ["error:KeyError"]
    assert "caption_en" in out.column("reject_detail")[0].as_py()
