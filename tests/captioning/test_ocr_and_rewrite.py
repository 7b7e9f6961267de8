"""OCR-aware captioning (ocr_text -> caption_image with OCR in the prompt -> ocr_caption_filter) and the
rewrite_prompt stage, with every reject reason."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pytest
from conftest import ServedModel
from PIL import Image, ImageDraw, ImageFont

from data_engine.captioning.ocr_engines import lines_from_tsv
from data_engine.job import StageSpec
from data_engine.readers import row_id
from data_engine.redecide import redecide_table
from data_engine.schemas import CAPTION
from data_engine.stage import StageUnavailable
from data_engine.stage_runner import apply_stage
from data_engine.stages.ocr import OCR_LINE, OcrTextStage

SIGN = {"GRAND OPENING": (10, 10), "SALE 50%": (10, 70)}


def sign_image() -> bytes:
    image = Image.new("RGB", (360, 130), "white")
    draw = ImageDraw.Draw(image)
    for text, position in SIGN.items():
        draw.text(position, text, fill="black", font=ImageFont.load_default(size=36))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def rows_table(rows: list[dict], with_ocr: bool = True) -> pa.Table:
    schema = CAPTION.arrow((pa.field("ocr_lines", pa.list_(OCR_LINE)),) if with_ocr else ())
    full = [{"id": row_id("t", str(i)), "source_dataset": "t", "upstream_id": str(i), "license": "CC0", **row}
            for i, row in enumerate(rows)]
    return pa.Table.from_pylist(full, schema=schema)


def ocr_lines(*texts: str) -> list[dict]:
    return [{"text": text, "score": 0.99, "box": [0.0] * 8} for text in texts]


def build(op: str, **config):
    stage = StageSpec(op=op, config=config).build()
    stage.setup()
    return stage


@pytest.fixture(scope="module", params=["rapidocr", "tesseract"])
def ocr_stage(request: pytest.FixtureRequest) -> OcrTextStage:
    return build("ocr_text", engine=request.param)


def test_ocr_text_reads_rendered_text_with_boxes(ocr_stage: OcrTextStage) -> None:
    rows = [{"image_bytes": sign_image()}, {"image_bytes": _blank_png()}]
    table, stats = apply_stage(ocr_stage, rows_table(rows, with_ocr=False), batch_size=8)
    lines, blank = table.column("ocr_lines").to_pylist()
    assert [line["text"] for line in lines] == list(SIGN)
    assert all(line["score"] >= 0.5 for line in lines) and blank == []
    for line, (left, top) in zip(lines, SIGN.values()):  # boxes around the drawn text, in image pixels
        xs, ys = line["box"][0::2], line["box"][1::2]
        assert len(line["box"]) == 8 and abs(min(xs) - left) <= 10 and abs(min(ys) - top) <= 15
        assert max(ys) - min(ys) < 50
    assert stats.rejects == {}


def test_tesseract_lines_join_words_and_keep_pages_apart() -> None:
    columns = "level page_num block_num par_num line_num word_num left top width height conf text".split()
    page_records = [(1, page, 0, 0, 0, 0, 0, 0, 100, 100, -1, "") for page in (1, 2)]
    words = [(5, 2, 1, 1, 1, 1, 10, 5, 20, 30, 90.0, "营"), (5, 2, 1, 1, 1, 2, 32, 5, 20, 30, 80.0, "业"),
             (5, 2, 1, 1, 1, 3, 54, 6, 20, 30, 70.0, "中"), (5, 2, 1, 1, 2, 1, 10, 50, 40, 20, 95.0, "OPEN"),
             (5, 2, 1, 1, 2, 2, 60, 50, 30, 20, 85.0, "24h")]
    tsv = "\n".join("\t".join(str(value) for value in record) for record in [columns, *page_records, *words])
    first, second, third = lines_from_tsv(tsv, pages=3)
    assert first == third == [] and [line["text"] for line in second] == ["营业中", "OPEN 24h"]
    assert second[0]["box"] == [10.0, 5.0, 74.0, 5.0, 74.0, 36.0, 10.0, 36.0]
    assert second[0]["score"] == pytest.approx(0.8) and second[1]["score"] == pytest.approx(0.9)


@pytest.mark.parametrize("tesseract, message", [
    ({"binary": "no-such-tesseract"}, r"program 'no-such-tesseract' not found \(install the Debian package "
                                      r"tesseract-ocr\)$"),
    ({"languages": ["eng", "klingon"]}, r"no language data for \['klingon'\].*install the Debian packages "
                                        r"tesseract-ocr-klingon$")])
def test_tesseract_missing_program_or_language_is_a_one_line_error(tesseract: dict, message: str) -> None:
    stage = StageSpec(op="ocr_text", config={"engine": "tesseract", "tesseract": tesseract}).build()
    with pytest.raises(StageUnavailable, match=message) as failure:
        stage.preflight()
    assert "\n" not in str(failure.value)


def _blank_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(buffer, format="PNG")
    return buffer.getvalue()


def _structured(visible_text) -> str:
    return json.dumps({"subject": "sign", "background": "wall", "style": "photo", "composition": "centre",
                       "visible_text": visible_text}, ensure_ascii=False)


def test_post_filter_decides_per_caption_and_names_each_failure() -> None:
    sign = ocr_lines("GRAND OPENING", "SALE 50%")
    rows = [
        # every caption faithful: all kept
        {"captions": [("long/en", 'A sign reads "GRAND OPENING" over "SALE 50%".'),
                      ("long/zh", "招牌上写着“GRAND OPENING”和“SALE 50%”。"),
                      ("structured/en", _structured("GRAND OPENING / SALE 50%"))], "ocr_lines": sign},
        # one caption drops a line, one alters it, one translates it: only the faithful one stays
        {"captions": [("short/en", 'A sign reads "GRAND OPENING".'),
                      ("long/en", 'A sign reads "GRAND OPENING" over "SALE 60%".'),
                      ("long/zh", "招牌上写着“盛大开业”和“SALE 50%”。"),
                      ("extended_long/en", 'A storefront: "GRAND OPENING", "SALE 50%".')], "ocr_lines": sign},
        # no caption survives: the row goes, with the reason of its first failed caption by precedence
        {"captions": [("short/en", 'A sign reads "GRAND OPENING".'),
                      ("structured/zh", _structured("盛大开业"))], "ocr_lines": sign},
        # malformed structured captions are a reason, not an error; the good caption keeps the row
        {"captions": [("structured/en", "not json"), ("structured/zh", _structured(["OPEN"])),
                      ("short/en", 'A door sign "OPEN".')], "ocr_lines": ocr_lines("OPEN")},
        {"captions": [("long/en", "A plain white wall.")], "ocr_lines": []},
        {"captions": [("long/en", 'A sign "OPEN".')], "ocr_lines": None},  # OCR did not run: left alone
    ]
    stage = build("ocr_caption_filter")
    table, stats = apply_stage(stage, rows_table(rows), batch_size=4)
    out = table.to_pylist()
    assert [dict(row["captions"] or []).keys() for row in out] == [
        {"long/en", "long/zh", "structured/en"}, {"extended_long/en"}, set(), {"short/en"}, {"long/en"},
        {"long/en"}]
    assert [dict(row["ocr_caption_rejects"] or []) for row in out] == [
        {}, {"short/en": "ocr_not_covered", "long/en": "ocr_altered", "long/zh": "ocr_translated"},
        {"short/en": "ocr_not_covered", "structured/zh": "ocr_translated"},
        {"structured/en": "caption_json_invalid", "structured/zh": "caption_json_schema"}, {}, {}]
    assert [row["reject_reason"] for row in out] == [None, None, "ocr_translated", None, None, None]
    assert stats.rejects == {"ocr_translated": 1}
    detail = json.loads(out[1]["ocr_check"])
    assert detail["short/en"]["missing"] == ["SALE 50%"] and detail["long/en"]["altered"] == ["SALE 50%"]
    assert detail["long/en"]["text"] == 'A sign reads "GRAND OPENING" over "SALE 60%".'  # kept for review
    assert detail["long/zh"]["unsupported_quotes"] == ["盛大开业"]
    assert out[5]["ocr_check"] is None
    assert redecide_table(table, [stage]).column("reject_reason").to_pylist() == \
        [None, None, "ocr_translated", None, None, None]  # decisions come from the stored columns alone


def test_post_filter_checks_only_the_configured_captions() -> None:
    rows = [{"captions": [("short/en", "A shop."), ("long/en", 'A sign "OPEN".')], "ocr_lines": ocr_lines("OPEN")}]
    table, _ = apply_stage(build("ocr_caption_filter", captions=["long/en"]), rows_table(rows), batch_size=1)
    assert dict(table.column("captions")[0].as_py()).keys() == {"short/en", "long/en"}
    assert json.loads(table.column("ocr_check")[0].as_py()).keys() == {"long/en"}


def test_ocr_aware_prompts_carry_the_ocr_text(served_tiny_vlm: ServedModel) -> None:
    backend = {"kind": "openai", "base_url": served_tiny_vlm.base_url, "model": served_tiny_vlm.model,
               "temperature": 1.0}
    stage = build("caption_image", backend=backend, ocr_aware=True, types=["short"], languages=["en", "zh"],
                  sampling={"types": {"short": 1.0}}, max_new_tokens={"short": 4})
    rows = [{"image_bytes": sign_image(), "ocr_lines": ocr_lines("GRAND OPENING", "营业中")},
            {"image_bytes": _blank_png(), "ocr_lines": []}]
    table, _ = apply_stage(stage, rows_table(rows), batch_size=2)
    prompts = [p["messages"][0]["content"][1]["text"] for p in served_tiny_vlm.control.received]
    with_ocr = [p for p in prompts if '"GRAND OPENING"; "营业中"' in p]
    assert len(prompts) == 4 and len(with_ocr) == 2  # both languages of the sign; none for the blank image
    assert all(dict(c).keys() == {"short/en", "short/zh"} for c in table.column("captions").to_pylist())


def test_rewrite_adds_a_styled_instruction_and_rejects_with_reasons(served_tiny_vlm: ServedModel) -> None:
    backend = {"kind": "openai", "base_url": served_tiny_vlm.base_url, "model": served_tiny_vlm.model,
               "temperature": 1.0, "max_retries": 0}
    stage = build("rewrite_prompt", backend=backend, source="short/zh", target="rewritten/zh", max_new_tokens=6)
    rows = [{"captions": [("short/zh", "桌上有一只红色的杯子。")]}, {"captions": [("short/zh", "一只猫。")]},
            {"captions": [("short/en", "A cat.")]}]
    table, stats = apply_stage(stage, rows_table(rows, with_ocr=False), batch_size=8)
    out = table.to_pylist()
    assert [r["reject_reason"] for r in out] == [None, None, "rewrite_source_missing"]
    assert all(dict(r["captions"])["rewritten/zh"] for r in out[:2])
    assert dict(out[0]["captions"])["short/zh"] == "桌上有一只红色的杯子。"  # the original stays
    sent = [p["messages"][0]["content"][0]["text"] for p in served_tiny_vlm.control.received]
    assert any("桌上有一只红色的杯子。" in p and out[0]["rewrite_style"] in p for p in sent)
    assert [r["rewrite_style"] for r in apply_stage(stage, rows_table(rows, with_ocr=False), 8)[0].to_pylist()] \
        == [r["rewrite_style"] for r in out]  # seeded by row id

    served_tiny_vlm.control.fail_next.extend([400])
    failed, _ = apply_stage(stage, rows_table(rows[:1], with_ocr=False), batch_size=8)
    assert failed.column("reject_reason").to_pylist() == ["rewrite_request_failed"]
    assert stats.rejects == {"rewrite_source_missing": 1}


@pytest.mark.parametrize("config, message", [({"source": "short"}, "must end in /<language>"),
                                             ({"target": "short/en"}, "must differ")])
def test_rewrite_config_errors(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StageSpec(op="rewrite_prompt", config=config)
