"""Font families a blueprint may name, their local files, and glyph coverage.

Fonts come only from files installed by the system-package step (scripts/system_deps.sh): Debian's Noto CJK
for Chinese and the Liberation and DejaVu sets for Latin text. Chromium finds them by family name through
fontconfig; `FontCatalog` resolves the same name with `fc-match` and reads the file's cmap (fontTools), so
a block whose characters the font lacks is re-fonted or rejected before it renders, never drawn as tofu.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from functools import cache

from data_engine.stage import StageUnavailable

# Family -> the Debian package that installs it.
FONT_PACKAGES: dict[str, str] = {
    "Noto Sans CJK SC": "fonts-noto-cjk",
    "Noto Serif CJK SC": "fonts-noto-cjk",
    "Liberation Sans": "fonts-liberation2",
    "Liberation Serif": "fonts-liberation2",
    "Liberation Mono": "fonts-liberation2",
    "DejaVu Sans": "fonts-dejavu-core",
    "DejaVu Serif": "fonts-dejavu-core",
}
FONT_FAMILIES: tuple[str, ...] = tuple(FONT_PACKAGES)
# Families tried, in order, when a block's own family lacks a glyph of its text.
FALLBACK_FAMILIES: dict[str, tuple[str, ...]] = {
    "zh": ("Noto Sans CJK SC", "Noto Serif CJK SC"),
    "en": ("Liberation Sans", "DejaVu Sans", "Noto Sans CJK SC"),
}


@dataclass(frozen=True)
class FontFile:
    family: str
    path: str
    index: int  # face number inside a font collection (.ttc)


def resolve_family(family: str) -> FontFile:
    """The local file fontconfig (and so Chromium) uses for `family`; StageUnavailable naming the Debian
    package when the family is not installed (fontconfig would silently substitute another one)."""
    if shutil.which("fc-match") is None:
        raise StageUnavailable("fonts: fc-match not found (install the Debian package fontconfig)")
    completed = subprocess.run(["fc-match", "-f", "%{file}\n%{index}\n%{family}", f"{family}:weight=regular"],
                               capture_output=True, text=True, timeout=30, check=False)
    lines = completed.stdout.split("\n")
    if completed.returncode != 0 or len(lines) < 3 or family not in lines[2].split(","):
        package = FONT_PACKAGES.get(family, "?")
        raise StageUnavailable(f"fonts: family {family!r} is not installed (fontconfig offers {lines[-1]!r}); "
                               f"install the Debian package {package} (make system-deps)")
    return FontFile(family, lines[0], int(lines[1] or 0))


@cache
def _codepoints(path: str, index: int) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    with TTFont(path, fontNumber=index, lazy=True) as font:
        return frozenset(font.getBestCmap())


class FontCatalog:
    """Glyph coverage of the installed families, resolved once per worker."""

    def __init__(self, families: tuple[str, ...] = FONT_FAMILIES) -> None:
        self.files = {family: resolve_family(family) for family in families}

    def missing_glyphs(self, text: str, family: str) -> list[str]:
        """Characters of `text` (whitespace aside) that the family's font has no glyph for."""
        font = self.files[family]
        covered = _codepoints(font.path, font.index)
        return sorted({c for c in text if not c.isspace() and ord(c) not in covered})

    def covering_family(self, text: str, preferred: str, language: str) -> str | None:
        """`preferred` when it covers `text`, else the first fallback family of the language that does."""
        for family in (preferred, *FALLBACK_FAMILIES[language]):
            if family in self.files and not self.missing_glyphs(text, family):
                return family
        return None
