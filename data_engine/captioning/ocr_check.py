"""The OCR-aware caption post-filter (report 4.1.2): a caption is kept only if it covers all OCR text,
agrees with it, and keeps the text's original language.

Definitions (all over normalised text: case-folded, whitespace collapsed, punctuation dropped):
- coverage: the fraction of OCR lines found in the caption, exactly or with a similarity ratio of at
  least `match_ratio` against an equally long stretch of the caption;
- agreement: the fraction of quoted spans in the caption ("...", “...”, 「...」, 『...』) that match an OCR
  line the same way; a quoted text the image does not show is a disagreement;
- translated: an OCR line is missing while the caption quotes an unmatched text in another script (Han
  versus Latin) in its place, i.e. the text was rendered in another language.
Digits and punctuation belong to no script, so "50%" matches in any caption language.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass

_QUOTED = re.compile(r'"([^"]+)"|“([^”]+)”|「([^」]+)」|『([^』]+)』')


@dataclass(frozen=True)
class OcrAgreement:
    coverage: float
    agreement: float
    translated: bool
    missing: tuple[str, ...]  # OCR lines the caption does not contain
    unmatched_quotes: tuple[str, ...]  # quoted caption text that no OCR line supports


def normalise(text: str) -> str:
    kept = [c.casefold() if not unicodedata.category(c).startswith(("P", "S")) else " "
            for c in unicodedata.normalize("NFKC", text)]
    return " ".join("".join(kept).split())


def script_of(text: str) -> str | None:
    """'han', 'latin', or None for script-neutral text (digits, symbols)."""
    if any("\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf" or "\uf900" <= c <= "\ufaff" for c in text):
        return "han"
    if any(c.isalpha() for c in text):
        return "latin"
    return None


def contains(haystack: str, needle: str, match_ratio: float) -> bool:
    """Needle appears in haystack exactly or approximately (best window of the needle's length)."""
    if not needle or needle in haystack:
        return bool(needle)
    if match_ratio >= 1.0 or len(haystack) < len(needle) * match_ratio:
        return False
    width = len(needle)
    best = max(difflib.SequenceMatcher(None, haystack[start:start + width], needle, autojunk=False).ratio()
               for start in range(0, max(1, len(haystack) - width + 1)))
    return best >= match_ratio


def quoted_spans(caption: str) -> list[str]:
    return [next(group for group in match.groups() if group) for match in _QUOTED.finditer(caption)]


def check_caption_against_ocr(caption: str, ocr_lines: list[str], match_ratio: float) -> OcrAgreement:
    text = normalise(caption)
    pairs = [(raw, normalise(raw)) for raw in ocr_lines]
    lines = [line for _, line in pairs if line]
    missing = tuple(raw for raw, line in pairs if line and not contains(text, line, match_ratio))
    quotes = quoted_spans(caption)
    unmatched = tuple(q for q in quotes
                      if not any(contains(normalise(q), line, match_ratio) or contains(line, normalise(q), match_ratio)
                                 for line in lines))
    missing_scripts = {script_of(line) for line in missing} - {None}
    quote_scripts = {script_of(q) for q in unmatched} - {None}
    translated = bool(missing_scripts and quote_scripts and quote_scripts - missing_scripts)
    coverage = 1.0 - len(missing) / len(lines) if lines else 1.0
    agreement = 1.0 - len(unmatched) / len(quotes) if quotes else 1.0
    return OcrAgreement(coverage, agreement, translated, missing, unmatched)
