"""The image corpus of the curation peer comparisons: crops of the two real photos that ship with
scikit-learn (the demo corpus's sources, `data_engine.demo_corpus.sample_photo_paths`), made locally, in the
sizes, shapes, formats and duplicate kinds that the compared operators decide on:

- `unique`: a random crop, resized to a long side of 64-800 px in one of several aspect ratios (some beyond
  the ratio limit, some under the minimum side), JPEG / PNG / WebP in turn (large PNGs exceed the file-size
  limit);
- `exact_copy`: another file with the bytes of an earlier unique image (MD5 duplicate);
- `reencoded_copy`: the pixels of an earlier JPEG saved again at another quality (a near duplicate whose
  perceptual hash usually stays equal, but not always).

`labels.json` records each file's kind and, for copies, the file it copies: the ground truth the decisions of
both systems are compared against.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from data_engine.demo_corpus import sample_photo_paths

ASPECT_RATIOS = (1.0, 4 / 3, 3 / 4, 16 / 9, 9 / 16, 2.0, 1 / 2, 3.0, 1 / 3, 5.0, 1 / 5)  # width / height
FORMATS = (("JPEG", "jpg", {"quality": 90}), ("PNG", "png", {"compress_level": 1}), ("WEBP", "webp", {"quality": 85}))
LABELS_FILE = "labels.json"


def _crop(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    long_side = int(rng.integers(64, 801))
    ratio = float(rng.choice(ASPECT_RATIOS))
    size = (long_side, max(8, round(long_side / ratio))) if ratio >= 1 else (max(8, round(long_side * ratio)), long_side)
    # The crop box has the target's shape and at least a third of the photo's short side.
    scale = float(rng.uniform(1 / 3, 1.0)) * min(photo.width / size[0], photo.height / size[1])
    box_w, box_h = max(1, int(size[0] * scale)), max(1, int(size[1] * scale))
    left, top = int(rng.integers(0, photo.width - box_w + 1)), int(rng.integers(0, photo.height - box_h + 1))
    return photo.crop((left, top, left + box_w, top + box_h)).resize(size, Image.Resampling.BILINEAR)


def _encode(image: Image.Image, fmt: str, options: dict) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def write_peer_corpus(out_dir: Path, count: int = 2000, *, copy_fraction: float = 0.15, seed: int = 0) -> list[dict]:
    """Write `count` images under `out_dir/images` (a `copy_fraction` of them copies, half exact, half
    re-encoded) and `out_dir/labels.json`; returns the labels. An existing corpus with the same labels file
    arguments is reused."""
    labels_path = out_dir / LABELS_FILE
    request = {"count": count, "copy_fraction": copy_fraction, "seed": seed}
    if labels_path.is_file():
        stored = json.loads(labels_path.read_text())
        if stored.get("request") == request:
            return stored["files"]
    rng = np.random.default_rng(seed)
    photos = []
    for path in sample_photo_paths():
        with Image.open(path) as photo:
            photos.append(photo.convert("RGB"))
    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    copies = int(count * copy_fraction)
    files: list[dict] = []
    jpegs: list[int] = []
    for index in range(count - copies):
        fmt, extension, options = FORMATS[index % len(FORMATS)]
        name = f"{index:05d}.{extension}"
        (images_dir / name).write_bytes(_encode(_crop(photos[index % len(photos)], rng), fmt, options))
        files.append({"file": name, "kind": "unique", "copy_of": None})
        if fmt == "JPEG":
            jpegs.append(index)
    for offset in range(copies):
        index = count - copies + offset
        source = files[int(rng.choice(jpegs))]["file"]
        data = (images_dir / source).read_bytes()
        kind = "exact_copy" if offset % 2 == 0 else "reencoded_copy"
        if kind == "reencoded_copy":
            with Image.open(io.BytesIO(data)) as image:
                data = _encode(image.convert("RGB"), "JPEG", {"quality": int(rng.integers(60, 80))})
        name = f"{index:05d}.jpg"
        (images_dir / name).write_bytes(data)
        files.append({"file": name, "kind": kind, "copy_of": source})
    labels_path.write_text(json.dumps({"request": request, "files": files}, indent=1) + "\n")
    return files
