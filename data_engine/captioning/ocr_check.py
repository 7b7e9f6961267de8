"""The OCR-aware caption post-filter (report 4.1.2): a caption is kept only if it covers all OCR text,
agrees with it, and keeps the text's original language.

Text is compared as tokens after one normalisation:
- Unicode NFKC (full-width letters, digits, `％` and `＄` become their ASCII forms; ideographic space is a
  space), then case folding (signs are often set in capitals that a caption writes in title case);
- tokens: a run of letters and digits is one word (Latin and other spaced scripts); every CJK character
  (Han, kana, Hangul) is a token of its own, so `营 业 中` and `营业中` are the same three tokens; currency
  signs and `% ‰ ° # & @ +` are tokens of their own and never dropped; `.`, `,`, `:` and `/` between two
  digits stay inside the number (`9.99`, `1,000`, `10:30`); every other character (spaces, punctuation,
  quotes, dashes) only separates tokens.
- OCR confusions (on by default): inside letter tokens `rn`~`m`, `vv`~`w` and `l`~`i`, and a few Han
  characters that differ by one small stroke (己已巳, 未末, 土士, 人入, 日曰, 戊戌戍, 千干). Digits,
  currency and percent signs are compared exactly, always.

Definitions:
- covered: every OCR line appears in the caption as a contiguous run of whole tokens ("MEN" is not in
  "women's", "SALE" is not in "wholesale");
- supported: a quoted span ("...", “...”, '...', ‘...’, 「...」, 『...』, 《...》, «...») is made only of OCR
  text: its tokens split into stretches, each a contiguous run of a different OCR line ("OPEN 24 HOURS" is not
  supported by the line "OPEN"). A structured caption's `visible_text` must be supported the same way and
  must itself cover every OCR line.
- the reason when a caption fails, first that applies:
  `ocr_translated` (an OCR line is missing and an unsupported quote that resembles no OCR line stands in
  for it: the text was rendered in another language, whatever the script), `ocr_altered` (an OCR line is
  missing but a close variant of it is in the caption or a quote: a changed digit, a changed character, a
  dropped word), `ocr_quote_unsupported` (every line is there, but a quote shows text the OCR does not
  have), `ocr_not_covered` (an OCR line is simply missing).
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

REASON_TRANSLATED = "ocr_translated"
REASON_ALTERED = "ocr_altered"
REASON_QUOTE_UNSUPPORTED = "ocr_quote_unsupported"
REASON_NOT_COVERED = "ocr_not_covered"
OCR_REASONS = (REASON_TRANSLATED, REASON_ALTERED, REASON_QUOTE_UNSUPPORTED, REASON_NOT_COVERED)  # precedence

_KEPT_SYMBOLS = frozenset("%‰‱°#&@+")
_NUMBER_INNER = frozenset(".,:/")
_CJK_RANGES = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7AF), (0xF900, 0xFAFF),
               (0x20000, 0x2FA1F))
_HAN_LOOKALIKES = ("己已巳", "未末", "土士", "人入", "日曰", "戊戌戍", "千干")
_HAN_FOLD = {char: group[0] for group in _HAN_LOOKALIKES for char in group}
_LATIN_NEIGHBOUR = r"[0-9A-Za-z\u00C0-\u024F]"
# Straight and curly single quotes double as apostrophes: a single-quoted span opens after a non-letter and
# closes before one, so "the shop's sign" or "dogs' bowls" hold no quote.
_QUOTED = re.compile(
    r'"([^"]+)"|“([^”]+)”|„([^“”]+)[“”]|«([^»]+)»|「([^」]+)」|『([^』]+)』|《([^》]+)》'
    rf"|‘(.+?)’(?!{_LATIN_NEIGHBOUR})"
    rf"|(?<!{_LATIN_NEIGHBOUR})'(?=\S)(.+?)(?<=\S)'(?!{_LATIN_NEIGHBOUR})")
_ALTERED_SIMILARITY = 0.7  # character similarity of a caption stretch to a missing line that makes it "altered"


@dataclass(frozen=True)
class OcrAgreement:
    reason: str | None  # None: the caption passes
    missing: tuple[str, ...]  # OCR lines the caption does not contain
    altered: tuple[str, ...]  # of those, the lines a close variant stands in for
    unsupported_quotes: tuple[str, ...]  # quoted caption text (or visible_text) that the OCR text does not show

    def to_json(self) -> dict[str, object]:
        return {"reason": self.reason, "missing": list(self.missing), "altered": list(self.altered),
                "unsupported_quotes": list(self.unsupported_quotes)}


def is_cjk(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _CJK_RANGES)


def tokens(text: str) -> tuple[str, ...]:
    """The normalised tokens of `text` (see the module docstring), before OCR-confusion folding."""
    text = unicodedata.normalize("NFKC", text).casefold()
    out: list[str] = []
    word: list[str] = []

    def flush() -> None:
        if word:
            out.append("".join(word))
            word.clear()

    for index, char in enumerate(text):
        category = unicodedata.category(char)
        if is_cjk(char):
            flush()
            out.append(char)
        elif category[0] in "LN" or (category[0] == "M" and word):
            word.append(char)
        elif char in _NUMBER_INNER and word and word[-1].isdigit() and text[index + 1:index + 2].isdigit():
            word.append(char)
        elif category == "Sc" or char in _KEPT_SYMBOLS:
            flush()
            out.append(char)
        else:
            flush()
    flush()
    return tuple(out)


def fold_confusions(token: str) -> str:
    """One representative for characters OCR engines confuse; digits and symbols are left as they are."""
    if len(token) == 1 and token in _HAN_FOLD:
        return _HAN_FOLD[token]
    if not any(char.isalpha() for char in token):
        return token
    return token.replace("rn", "m").replace("vv", "w").replace("l", "i")


def quoted_spans(caption: str) -> list[str]:
    return [next(group for group in match.groups() if group) for match in _QUOTED.finditer(caption)]


def _contains_run(haystack: tuple[str, ...], needle: tuple[str, ...]) -> bool:
    width = len(needle)
    return any(haystack[start:start + width] == needle for start in range(len(haystack) - width + 1))


def is_supported(quote: tuple[str, ...], lines: tuple[tuple[str, ...], ...]) -> bool:
    """`quote` splits into stretches, each a contiguous run of a different OCR line."""

    @lru_cache(maxsize=None)
    def from_position(start: int, used: int) -> bool:
        if start == len(quote):
            return True
        for number, line in enumerate(lines):
            if used >> number & 1:
                continue
            for end in range(len(quote), start, -1):
                if _contains_run(line, quote[start:end]) and from_position(end, used | 1 << number):
                    return True
        return False

    return bool(quote) and from_position(0, 0)


def _resembles(line: tuple[str, ...], text: tuple[str, ...]) -> bool:
    """A stretch of `text` of about the line's length is a close character-level variant of the line."""
    target = " ".join(line)
    width = len(line)
    for size in {max(1, width - 1), width, width + 1}:
        for start in range(max(1, len(text) - size + 1)):
            matcher = difflib.SequenceMatcher(None, target, " ".join(text[start:start + size]), autojunk=False)
            if (matcher.real_quick_ratio() >= _ALTERED_SIMILARITY and matcher.quick_ratio() >= _ALTERED_SIMILARITY
                    and matcher.ratio() >= _ALTERED_SIMILARITY):
                return True
    return False


def check_caption_against_ocr(caption: str, ocr_lines: list[str], *, visible_text: str | None = None,
                              confusions: bool = True) -> OcrAgreement:
    """Check one caption. For a structured caption pass its fields' text as `caption` and its `visible_text`
    separately: coverage is then measured on `visible_text`, which must also be supported as a whole."""
    fold = fold_confusions if confusions else (lambda token: token)

    def prepared(text: str) -> tuple[str, ...]:
        return tuple(fold(token) for token in tokens(text))

    raw_lines = [line for line in ocr_lines if tokens(line)]
    lines = tuple(prepared(line) for line in raw_lines)
    covering = prepared(caption if visible_text is None else visible_text)
    missing = [(raw, line) for raw, line in zip(raw_lines, lines) if not _contains_run(covering, line)]
    spans = quoted_spans(caption) + ([visible_text] if visible_text else [])
    unsupported = [(span, prepared(span)) for span in spans
                   if prepared(span) and not is_supported(prepared(span), lines)]
    altered = tuple(raw for raw, line in missing
                    if _resembles(line, covering) or any(_resembles(line, quote) for _, quote in unsupported))
    stand_ins = [span for span, quote in unsupported if not any(_resembles(line, quote) for line in lines)]
    if missing and stand_ins:
        reason: str | None = REASON_TRANSLATED
    elif altered:
        reason = REASON_ALTERED
    elif unsupported:
        reason = REASON_QUOTE_UNSUPPORTED
    elif missing:
        reason = REASON_NOT_COVERED
    else:
        reason = None
    return OcrAgreement(reason, tuple(raw for raw, _ in missing), altered, tuple(span for span, _ in unsupported))
