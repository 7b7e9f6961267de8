"""generate_demo_corpus: contents, labels, determinism, CLI."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from data_engine.demo_corpus import LABELS_FILE, PROCEDURAL_KINDS, CorpusSummary, generate_demo_corpus
from data_engine.ops.image_decode import REJECT_REASONS

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIRED_DEGRADATIONS = {
    "blurred", "very_dark", "washed_out", "heavy_jpeg", "tiny", "letterbox", "grayscale", "cmyk_jpeg",
    "png_16bit_gray", "png_48bit_rgb", "palette_transparency", "rgba_cutout", "exif_rotated", "animated_gif",
    "zero_bytes", "cut_at_55_percent", "html_saved_as_jpg", "png_with_jpg_extension", "bomb_header",
}  # fmt: skip


def files_on_disk(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_labels_list_exactly_the_files_written(demo_corpus: CorpusSummary, corpus_labels: dict[str, Any]) -> None:
    listed = [entry["path"] for entry in corpus_labels["files"]]
    assert len(listed) == len(set(listed)) == demo_corpus.n_files
    assert set(files_on_disk(Path(demo_corpus.out_dir))) == {*listed, LABELS_FILE}


def test_labels_describe_every_file(corpus_labels: dict[str, Any]) -> None:
    for entry in corpus_labels["files"]:
        assert entry["expected"] in {"ok", *REJECT_REASONS}, entry
        size_fields = (entry["expected_format"], entry["expected_width"], entry["expected_height"])
        if entry["expected"] == "ok":
            assert None not in size_fields and entry["expected_extension_mismatch"] is not None, entry
        else:
            assert size_fields == (None, None, None), entry


def test_corpus_covers_sources_degradations_and_reject_reasons(
    demo_corpus: CorpusSummary, corpus_labels: dict[str, Any]
) -> None:
    entries = corpus_labels["files"]
    procedural = [entry for entry in entries if entry["kind"] == "procedural"]
    assert len(procedural) == 48
    assert {entry["source"] for entry in procedural} == set(PROCEDURAL_KINDS)
    assert {entry["expected_format"] for entry in procedural} == {"JPEG", "PNG", "WEBP"}
    assert {entry["source"] for entry in entries if entry["kind"] == "photo"} == {
        "sklearn:china.jpg",
        "sklearn:flower.jpg",
    }
    assert REQUIRED_DEGRADATIONS <= {entry["degradation"] for entry in entries}
    # too_large_file needs a file above the default 64 MiB limit; the decode tests craft it instead.
    assert set(demo_corpus.expected_counts) == {"ok", *REJECT_REASONS} - {"too_large_file"}


def test_procedural_sizes_and_aspect_ratios_vary(corpus_labels: dict[str, Any]) -> None:
    sizes = [
        (entry["expected_width"], entry["expected_height"])
        for entry in corpus_labels["files"]
        if entry["kind"] == "procedural"
    ]
    assert all(96 <= side <= 1024 for size in sizes for side in size)
    assert max(max(size) for size in sizes) > 768 and min(min(size) for size in sizes) < 128
    assert len({round(width / height, 2) for width, height in sizes}) >= 5


def test_tiny_image_is_below_the_first_stage_minimum(corpus_labels: dict[str, Any]) -> None:
    (tiny,) = (entry for entry in corpus_labels["files"] if entry["degradation"] == "tiny")
    assert min(tiny["expected_width"], tiny["expected_height"]) < 128


def test_bomb_is_a_small_file_declaring_a_huge_image(demo_corpus: CorpusSummary) -> None:
    bomb = Path(demo_corpus.out_dir) / "corrupt/bomb_30000x30000.png"
    assert bomb.stat().st_size < 200
    with pytest.raises(Image.DecompressionBombError, match="900000000 pixels"):
        Image.open(bomb)  # Pillow reads the declared size from the header alone


def test_same_seed_gives_the_same_bytes(demo_corpus: CorpusSummary, tmp_path: Path) -> None:
    again = generate_demo_corpus(tmp_path / "again")
    assert files_on_disk(Path(again.out_dir)) == files_on_disk(Path(demo_corpus.out_dir))


def test_seed_changes_only_the_procedural_images(demo_corpus: CorpusSummary, tmp_path: Path) -> None:
    other = files_on_disk(Path(generate_demo_corpus(tmp_path / "other", n_procedural=8, seed=1).out_dir))
    reference = files_on_disk(Path(demo_corpus.out_dir))
    for path, data in other.items():
        if path.startswith("procedural/"):
            assert data != reference[path], path
        elif path != LABELS_FILE:
            assert data == reference[path], path


def test_missing_scikit_learn_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *args: None if name == "sklearn" else real_find_spec(name, *args)
    )
    with pytest.raises(FileNotFoundError, match="scikit-learn"):
        generate_demo_corpus(tmp_path)


def test_cli_writes_a_corpus(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "data_engine.demo_corpus", "--out", str(tmp_path), "--n", "2", "--seed", "3"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    printed = json.loads(completed.stdout)
    labels = json.loads((tmp_path / LABELS_FILE).read_text())
    assert (labels["seed"], labels["n_procedural"]) == (3, 2)
    assert printed["n_files"] == len(labels["files"])
