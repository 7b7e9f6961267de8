"""The OCR agreement check on hand-labelled captions: each case says, from reading it, whether the caption
reproduces the OCR text faithfully and, if not, what went wrong (issue #28, items 1-4 and 6)."""

from __future__ import annotations

import pytest

from data_engine.captioning.ocr_check import check_caption_against_ocr, quoted_spans, tokens

FAITHFUL = [
    # (caption, OCR lines): every OCR line is reproduced, every quote is image text
    ('A sign reads "GRAND OPENING" above "SALE 50%".', ["GRAND OPENING", "SALE 50%"]),
    ("A shop sign saying Grand Opening, sale 50% off everything.", ["GRAND OPENING", "SALE 50%"]),
    ("招牌上写着“ＳＡＬＥ　５０％”。", ["SALE 50%"]),  # full-width forms and ideographic space (NFKC)
    ("门口挂着“营业中”的牌子。", ["营 业 中"]),  # spaced CJK OCR output
    ("A menu board: 'Latte $4.50' in chalk.", ["Latte $4.50"]),  # single quotes
    ("The plaque says ‘Joe’s Diner, Est. 1887’.", ["JOE'S DINER", "Est. 1887"]),  # curly single, apostrophe inside
    ("书脊上印着《人民日报》。", ["人民日报"]),
    ('Opening hours "10:30-22:00" on the door.', ["10:30-22:00"]),
    ("A poster for a modern art show.", ["MODERN"]),
    ("A poster for a modem art show.", ["MODERN"]),  # rn/m: a confusion OCR engines make
    ("招牌写着“已经营业”。", ["己经营业"]),  # 己/已 differ by one stroke
    ("The shop's dogs' bowls sit under a sign that says OPEN.", ["OPEN"]),  # apostrophes are not quotes
    ("A plain white wall.", []),
]

UNFAITHFUL = [
    # (caption, OCR lines, the reason a reader gives)
    ('A sign reads "SALE 60%".', ["SALE 50%"], "ocr_altered"),
    ("The door of ROOM 110.", ["ROOM 101"], "ocr_altered"),
    ('A plaque: "Est. 1878".', ["Est. 1887"], "ocr_altered"),
    ("店招上写着“北京烤鸡”。", ["北京烤鸭"], "ocr_altered"),
    ("日历上写着30日。", ["31日"], "ocr_altered"),
    ('A banner reading "OPEN EVERY".', ["OPEN EVERY DAY"], "ocr_altered"),  # dropped last word
    ('A price tag of "€9.99".', ["$9.99"], "ocr_altered"),  # currency kept
    ("A poster announcing 50 OFF.", ["50% OFF"], "ocr_altered"),  # percent kept
    ('The sign reads "R00M 101".', ["ROOM 101"], "ocr_altered"),  # no tolerance between letters and digits
    ("A shelf in a women's clothing store.", ["MEN"], None),  # token boundaries: any failure reason
    ("A snowy mountain road.", ["NO"], "ocr_not_covered"),
    ("A wholesale market hall.", ["SALE"], "ocr_not_covered"),
    ("A photo of a quiet street.", ["HOT"], None),
    ('A shop window with "OPEN 24 HOURS" in neon.', ["OPEN"], "ocr_quote_unsupported"),
    ("A shop window with 'OPEN 24 HOURS' in neon.", ["OPEN"], "ocr_quote_unsupported"),
    ("A shop window with ‘OPEN 24 HOURS’ in neon.", ["OPEN"], "ocr_quote_unsupported"),
    ("报亭里挂着《北京晚报》，写着人民日报。", ["人民日报"], "ocr_quote_unsupported"),
    ('A sign "FREE COFFEE" over a door.', [], "ocr_quote_unsupported"),  # no OCR text at all
    ("招牌上写着“盛大开业”。", ["GRAND OPENING"], "ocr_translated"),
    ('An exit sign reading "EXIT" above the door.', ["SORTIE"], "ocr_translated"),  # same-script translation
    ("A street sign in a quiet town.", ["RUE DE LA PAIX"], "ocr_not_covered"),
]


@pytest.mark.parametrize("caption, lines", FAITHFUL)
def test_faithful_captions_pass(caption: str, lines: list[str]) -> None:
    result = check_caption_against_ocr(caption, lines)
    assert result.reason is None, result


@pytest.mark.parametrize("caption, lines, reason", UNFAITHFUL)
def test_unfaithful_captions_fail_with_what_happened(caption: str, lines: list[str], reason: str | None) -> None:
    result = check_caption_against_ocr(caption, lines)
    assert result.reason is not None, result
    if reason is not None:
        assert result.reason == reason, result


def test_confusion_tolerance_can_be_switched_off() -> None:
    assert check_caption_against_ocr("A poster for a modem art show.", ["MODERN"], confusions=False).reason \
        == "ocr_altered"


def test_structured_visible_text_must_cover_and_be_supported() -> None:
    fields = "a shop front\nstreet\nphoto\ncentred"
    assert check_caption_against_ocr(fields, ["GRAND OPENING", "营业中"],
                                     visible_text="GRAND OPENING / 营业中").reason is None
    assert check_caption_against_ocr(fields, ["GRAND OPENING"], visible_text="盛大开业").reason == "ocr_translated"
    assert check_caption_against_ocr(fields, ["GRAND OPENING"], visible_text="").reason == "ocr_not_covered"
    assert check_caption_against_ocr(fields, [], visible_text="OPEN").reason == "ocr_quote_unsupported"
    # The OCR text appears in another field, not in visible_text: not covered where the prompt asks for it.
    assert check_caption_against_ocr('a sign "OPEN"', ["OPEN"], visible_text="").reason == "ocr_not_covered"


def test_tokens_follow_the_documented_normalisation() -> None:
    assert tokens("ＳＡＬＥ　５０％ €9.99, 1,000 10:30 Wi-Fi 营 业 中") == (
        "sale", "50", "%", "€", "9.99", "1,000", "10:30", "wi", "fi", "营", "业", "中")
    assert quoted_spans("it's 'A' and ‘B’s C’, \"D\" “E” 「F」 『G』 《H》 «I» 招牌'营业'字样") == [
        "A", "B’s C", "D", "E", "F", "G", "H", "I", "营业"]
