"""OCR engines behind one interface: the text lines of a batch of images, each with a confidence and a box.

- `rapidocr` (default): PP-OCR detection and recognition, ONNX models shipped inside the `rapidocr` wheel.
- `tesseract`: the Tesseract 5 command-line program (Debian `tesseract-ocr`, plus `tesseract-ocr-<lang>`
  per language, e.g. `tesseract-ocr-chi-sim` for `chi_sim`). One process reads a whole batch: loading the
  language models costs more than reading a small image.

A line is {"text": str, "score": 0..1, "box": [x1, y1, x2, y2, x3, y3, x4, y4]}: top-left, top-right,
bottom-right, bottom-left corners in the pixels of the image that was read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from data_engine.stage import StageUnavailable

OcrLine = dict[str, Any]
OcrEngineName = Literal["rapidocr", "tesseract"]


class TesseractConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    languages: tuple[str, ...] = Field(default=("eng", "chi_sim"), min_length=1)  # traineddata names
    # 11 (sparse text) finds words anywhere in a photo, poster or sign; 3 (automatic) suits document pages.
    page_segmentation_mode: int = Field(default=11, ge=0, le=13)
    binary: str = "tesseract"
    timeout_s: float = Field(default=300, gt=0)  # one batch of images


class OcrEngine(ABC):
    @abstractmethod
    def read_lines(self, images: Sequence[Image.Image]) -> list[list[OcrLine]]:
        """The text lines of each RGB image, in reading order as the engine found them."""


class RapidOcrEngine(OcrEngine):
    def __init__(self) -> None:
        from rapidocr import RapidOCR

        self.engine = RapidOCR()

    def read_lines(self, images: Sequence[Image.Image]) -> list[list[OcrLine]]:
        return [self._read_one(image) for image in images]

    def _read_one(self, image: Image.Image) -> list[OcrLine]:
        result = self.engine(np.asarray(image))
        if result.txts is None:
            return []
        return [{"text": text, "score": float(score), "box": np.asarray(box, dtype=np.float32).ravel().tolist()}
                for text, score, box in zip(result.txts, result.scores, result.boxes)]


def tesseract_languages(binary: str) -> list[str]:
    """Installed language data of the tesseract program; StageUnavailable if the program is missing."""
    path = shutil.which(binary)
    if path is None:
        raise StageUnavailable(f"tesseract: program {binary!r} not found (install the Debian package tesseract-ocr)")
    listing = subprocess.run([path, "--list-langs"], capture_output=True, text=True, timeout=60, check=False)
    # The first line says where the data lives; one language per following line.
    return listing.stdout.split("\n", 1)[1].split() if "\n" in listing.stdout else []


def check_tesseract(config: TesseractConfig) -> None:
    """A one-line StageUnavailable naming what to install when the program or a language's data is missing."""
    installed = tesseract_languages(config.binary)
    missing = [language for language in config.languages if language not in installed]
    if missing:
        packages = " ".join(f"tesseract-ocr-{language.lower().replace('_', '-')}" for language in missing)
        raise StageUnavailable(f"tesseract: no language data for {missing} (installed: {installed}); "
                               f"install the Debian packages {packages}")


class TesseractEngine(OcrEngine):
    def __init__(self, config: TesseractConfig) -> None:
        check_tesseract(config)
        self.config = config

    def read_lines(self, images: Sequence[Image.Image]) -> list[list[OcrLine]]:
        if not images:
            return []
        with tempfile.TemporaryDirectory(prefix="ocr-tesseract-") as scratch:
            paths = []
            for number, image in enumerate(images):
                path = Path(scratch, f"{number:05d}.png")
                image.save(path, format="PNG", compress_level=1)
                paths.append(str(path))
            listing = Path(scratch, "images.txt")
            listing.write_text("\n".join(paths) + "\n")  # a text file of image paths: one page per image
            completed = subprocess.run(
                [self.config.binary, str(listing), "stdout", "-l", "+".join(self.config.languages),
                 "--psm", str(self.config.page_segmentation_mode), "tsv"],
                capture_output=True, text=True, timeout=self.config.timeout_s, check=False,
                env=os.environ | {"OMP_THREAD_LIMIT": "1"})  # one core per worker, as the stage declares
        if completed.returncode != 0:
            raise RuntimeError(f"tesseract exited with {completed.returncode}: {completed.stderr.strip()[-500:]}")
        return lines_from_tsv(completed.stdout, len(images))


def lines_from_tsv(tsv: str, pages: int) -> list[list[OcrLine]]:
    """Tesseract's TSV words (level 5) grouped into its lines; page n of the output is image n - 1."""
    words: dict[tuple[int, ...], list[tuple[str, float, tuple[int, int, int, int]]]] = {}
    for record in tsv.splitlines()[1:]:
        fields = record.split("\t", 11)
        if len(fields) < 12 or fields[0] != "5" or not fields[11].strip():
            continue
        page, block, paragraph, line = (int(value) for value in fields[1:5])
        left, top, width, height = (int(value) for value in fields[6:10])
        words.setdefault((page, block, paragraph, line), []).append(
            (fields[11].strip(), float(fields[10]), (left, top, left + width, top + height)))
    result: list[list[OcrLine]] = [[] for _ in range(pages)]
    for (page, *_), line_words in words.items():
        left = min(box[0] for _, _, box in line_words)
        top = min(box[1] for _, _, box in line_words)
        right = max(box[2] for _, _, box in line_words)
        bottom = max(box[3] for _, _, box in line_words)
        result[page - 1].append({
            "text": join_words([text for text, _, _ in line_words]),
            "score": sum(max(0.0, confidence) for _, confidence, _ in line_words) / len(line_words) / 100,
            "box": [float(value) for value in (left, top, right, top, right, bottom, left, bottom)]})
    return result


def join_words(words: Sequence[str]) -> str:
    """Words of one line: a space between words, none between wide (CJK) characters, which Chinese does not
    separate and tesseract reports as separate words."""
    text = words[0]
    for word in words[1:]:
        text += word if _is_wide(text[-1]) and _is_wide(word[0]) else f" {word}"
    return text


def _is_wide(character: str) -> bool:
    return unicodedata.east_asian_width(character) in ("W", "F")


def make_ocr_engine(name: OcrEngineName, tesseract: TesseractConfig) -> OcrEngine:
    return TesseractEngine(tesseract) if name == "tesseract" else RapidOcrEngine()
