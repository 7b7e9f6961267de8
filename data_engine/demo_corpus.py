"""A small deterministic image corpus with ground truth, for the demo job and the image-stage tests.

Layout under the output folder:

- ``procedural/``: two thirds natural-looking images that curation should keep (landscapes built from 1/f
  noise: sky gradient, clouds, mountain ridges with 1/f texture, camera grain, some with a signboard whose
  words OCR can read; crops of the two real photos), one third synthetic images it should refuse (flat
  gradients, shapes, text, value-noise textures: NIQE far from natural statistics); sizes 96..1024 px on each
  side in several aspect ratios; JPEG, PNG and WebP in turn.
- ``photos/``: the two real photos that ship inside scikit-learn (china.jpg, flower.jpg), byte for byte.
- ``degraded/``: copies of those photos with one known degradation each (blur, darkness, washed out, heavy
  JPEG, tiny, letterbox, grayscale, CMYK, 16/48-bit PNG, transparency, EXIF rotation, animation).
- ``corrupt/``: files the decode stage must refuse (or, for a wrong extension, accept).
- ``labels.json``: one entry per file with its relative path, what was done to it, and the EXPECTED outcome
  of `data_engine.ops.image_decode.decode_image` under the default `DecodePolicy`: ``"ok"`` with format,
  displayed size and extension mismatch, or the reject reason. The labels are stated by construction,
  never computed by the decoder they test.

The same seed gives the same bytes (with the same Pillow/libjpeg/zlib/libwebp builds); the seed only drives
the procedural images. Existing files of the same names are overwritten; nothing else is deleted.

CLI: ``python -m data_engine.demo_corpus --out DIR [--n N] [--seed S]``
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import struct
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

LABELS_FILE = "labels.json"
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
PROCEDURAL_KINDS = ("landscape", "photo_crop", "gradient", "shapes", "text", "noise")
# The order kinds come in: natural-looking images (kept by Table 4 curation unless too small or near-duplicate)
# alternate with one synthetic kind in turn, so about a third of a demo corpus survives the 512p preset, as
# in the report, and the caption, rebalance and latent jobs downstream get rows to work on.
_PROCEDURAL_CYCLE = ("landscape", "photo_crop", "gradient", "landscape", "photo_crop", "shapes",
                     "landscape", "photo_crop", "text", "landscape", "photo_crop", "noise")

# Pillow format name and file extension of each procedural output format, used in turn.
_PROCEDURAL_FORMATS = (("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"))
_ASPECT_RATIOS = (1.0, 4 / 3, 3 / 4, 16 / 9, 9 / 16, 3 / 2, 2 / 3, 2.0, 1 / 2)
_MIN_SIDE, _MAX_SIDE = 96, 1024
_WORDS = (
    "open data engine image curation caption layout shard filter quality aesthetic render scene camera "
    "object texture light shadow colour north river mountain market window street garden"
).split()


@dataclass(frozen=True)
class CorpusFile:
    """One labels.json entry. `expected` is "ok" or a decode reject reason; the `expected_*` size, format
    and mismatch fields are set for "ok" files only."""

    path: str
    kind: str  # procedural | photo | degraded | corrupt
    source: str
    degradation: str
    expected: str
    expected_format: str | None = None
    expected_width: int | None = None
    expected_height: int | None = None
    expected_extension_mismatch: bool | None = None


@dataclass(frozen=True)
class CorpusSummary:
    out_dir: Path
    labels_path: Path
    n_files: int
    expected_counts: Mapping[str, int]  # outcome ("ok" or reject reason) -> number of files


@dataclass(frozen=True)
class _Encoded:
    """Bytes to write plus the decode outcome they are built to produce."""

    data: bytes
    expected: str = "ok"
    format: str | None = None
    size: tuple[int, int] | None = None  # displayed (width, height)
    extension_mismatch: bool = False


def generate_demo_corpus(out_dir: Path, *, n_procedural: int = 48, seed: int = 0) -> CorpusSummary:
    """Write the corpus under `out_dir` and return what was written. Raises FileNotFoundError when
    scikit-learn's sample photos are not installed."""
    if n_procedural < 0:
        raise ValueError(f"n_procedural must be >= 0, got {n_procedural}")
    photo_bytes = _sklearn_photo_bytes()
    photos = {name: _open_rgb(data) for name, data in photo_bytes.items()}
    out_dir = Path(out_dir)
    entries = [
        *_write_procedural(out_dir, n_procedural, np.random.default_rng(seed), photos),
        *_write_photos(out_dir, photo_bytes, photos),
        *_write_degraded(out_dir, photos),
        *_write_corrupt(out_dir, photo_bytes["china.jpg"], photos["china.jpg"]),
    ]
    labels_path = out_dir / LABELS_FILE
    labels = {"seed": seed, "n_procedural": n_procedural, "files": [asdict(entry) for entry in entries]}
    labels_path.write_text(json.dumps(labels, indent=1) + "\n")
    return CorpusSummary(
        out_dir=out_dir,
        labels_path=labels_path,
        n_files=len(entries),
        expected_counts=dict(Counter(entry.expected for entry in entries)),
    )


def _write(
    out_dir: Path, relative: str, kind: str, source: str, degradation: str, encoded: _Encoded
) -> CorpusFile:
    path = out_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encoded.data)
    is_ok = encoded.expected == "ok"
    return CorpusFile(
        path=relative,
        kind=kind,
        source=source,
        degradation=degradation,
        expected=encoded.expected,
        expected_format=encoded.format if is_ok else None,
        expected_width=encoded.size[0] if is_ok and encoded.size else None,
        expected_height=encoded.size[1] if is_ok and encoded.size else None,
        expected_extension_mismatch=encoded.extension_mismatch if is_ok else None,
    )


# --- sources --------------------------------------------------------------------------------------------


def sample_photo_paths() -> list[Path]:
    """The real photos that ship inside scikit-learn (china.jpg, flower.jpg)."""
    # find_spec locates the package without importing it (importing scikit-learn costs about a second).
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-learn is not installed; its sample photos are part of the demo corpus")
    images_dir = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "images"
    missing = [name for name in SKLEARN_PHOTOS if not (images_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"scikit-learn sample photos {missing} not found in {images_dir}")
    return [images_dir / name for name in SKLEARN_PHOTOS]


def _sklearn_photo_bytes() -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sample_photo_paths()}


def _open_rgb(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def _encode(image: Image.Image, fmt: str, **save_options: object) -> _Encoded:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_options)
    return _Encoded(buffer.getvalue(), format=fmt, size=image.size)


# --- procedural -----------------------------------------------------------------------------------------


def _write_procedural(out_dir: Path, count: int, rng: np.random.Generator,
                      photos: Mapping[str, Image.Image]) -> Iterator[CorpusFile]:
    painters: dict[str, Callable[[np.random.Generator, tuple[int, int]], Image.Image]] = {
        "landscape": lambda rng, _size: _landscape(rng, _random_size(rng, min_long_side=384)),
        "photo_crop": lambda rng, _size: _photo_crop(rng, photos),
        "gradient": _gradient,
        "shapes": _shapes,
        "text": _text,
        "noise": _noise_texture,
    }
    for index in range(count):
        kind = _PROCEDURAL_CYCLE[index % len(_PROCEDURAL_CYCLE)]
        fmt, extension = _PROCEDURAL_FORMATS[index % len(_PROCEDURAL_FORMATS)]
        image = painters[kind](rng, _random_size(rng))
        options = {"PNG": {"compress_level": 1}, "JPEG": {"quality": 90}, "WEBP": {"quality": 85}}[fmt]
        encoded = _encode(image, fmt, **options)
        yield _write(out_dir, f"procedural/{index:03d}_{kind}.{extension}", "procedural", kind, "none", encoded)


def _random_size(rng: np.random.Generator, min_long_side: int = _MIN_SIDE) -> tuple[int, int]:
    long_side = int(rng.integers(min_long_side, _MAX_SIDE + 1))
    ratio = float(rng.choice(_ASPECT_RATIOS))  # width / height
    short_side = max(_MIN_SIDE, round(long_side / max(ratio, 1 / ratio)))
    return (long_side, short_side) if ratio >= 1 else (short_side, long_side)


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    red, green, blue = (int(value) for value in rng.integers(0, 256, 3))
    return red, green, blue


def _gradient(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        t = xs * np.cos(angle) + ys * np.sin(angle)
    else:
        centre_x, centre_y = rng.uniform(0, width), rng.uniform(0, height)
        t = np.hypot(xs - centre_x, ys - centre_y)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    start, end = np.array(_random_colour(rng), np.float32), np.array(_random_colour(rng), np.float32)
    pixels = start + t[..., None] * (end - start)
    return Image.fromarray(pixels.round().astype(np.uint8))


def _shapes(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    width, height = size
    image = Image.new("RGB", size, _random_colour(rng))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 13))):
        x0, x1 = sorted(int(v) for v in rng.integers(0, width, 2))
        y0, y1 = sorted(int(v) for v in rng.integers(0, height, 2))
        shape = rng.integers(0, 4)
        colour = _random_colour(rng)
        if shape == 0:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        elif shape == 1:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif shape == 2:
            corners = [(int(x), int(y)) for x, y in zip(rng.integers(0, width, 5), rng.integers(0, height, 5))]
            draw.polygon(corners, fill=colour)
        else:
            draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, 12)))
    return image


def _text(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    width, height = size
    background = _random_colour(rng)
    # Text in the opposite luma half from the background, so it stays legible.
    ink = (20, 20, 20) if sum(background) > 384 else (235, 235, 235)
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    font_size = int(rng.integers(10, max(11, min(64, height // 4))))
    font = ImageFont.load_default(size=font_size)
    line_height = int(font_size * 1.3)
    for top in range(font_size // 2, height - line_height, line_height):
        words = rng.choice(_WORDS, size=int(rng.integers(2, 9)))
        draw.text((int(rng.integers(0, max(1, width // 8))), top), " ".join(words), fill=ink, font=font)
    return image


def _noise_texture(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """Multi-octave value noise mapped between two colours."""
    width, height = size
    field = np.zeros((height, width), np.float32)
    for cells, weight in ((4, 1.0), (16, 0.5), (64, 0.25)):
        coarse = rng.random((cells, cells), dtype=np.float32)
        field += weight * cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    field = (field - field.min()) / max(float(np.ptp(field)), 1e-6)
    low, high = np.array(_random_colour(rng), np.float32), np.array(_random_colour(rng), np.float32)
    return Image.fromarray((low + field[..., None] * (high - low)).round().astype(np.uint8))


def _pink_noise(rng: np.random.Generator, shape: tuple[int, ...], exponent: float) -> np.ndarray:
    """Zero-mean, unit-variance noise with power spectrum 1/f**exponent (1-D or 2-D): natural images have
    exponent about 2, which is what makes their local statistics (and NIQE) look natural."""
    frequencies = np.meshgrid(*[np.fft.fftfreq(n) for n in shape[:-1]], np.fft.rfftfreq(shape[-1]), indexing="ij")
    radius = np.sqrt(sum(f**2 for f in frequencies))
    radius.flat[0] = 1.0
    spectrum = (rng.standard_normal(radius.shape) + 1j * rng.standard_normal(radius.shape)) / radius ** (exponent / 2)
    spectrum.flat[0] = 0.0
    field = np.fft.irfftn(spectrum, s=shape, axes=tuple(range(len(shape))))
    return (field - field.mean()) / max(float(field.std()), 1e-6)


def _landscape(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """Sky gradient with 1/f clouds, 2-4 mountain ridges (1/f profiles, nearer ones darker and more
    textured), camera grain; every other one has a signboard with two words, text for OCR to read."""
    width, height = size
    depth_of_row = np.linspace(0, 1, height)[:, None, None]
    zenith = np.array([rng.uniform(40, 110), rng.uniform(90, 150), rng.uniform(170, 235)])
    horizon = np.array([rng.uniform(170, 230), rng.uniform(180, 225), rng.uniform(200, 240)])
    pixels = zenith + (horizon - zenith) * depth_of_row * np.ones((height, width, 1))
    pixels += 40 * np.clip(_pink_noise(rng, (height, width), 2.6), 0, None)[..., None] * (1 - depth_of_row)
    rows = np.arange(height)[:, None]
    ground = np.array([rng.uniform(40, 110), rng.uniform(70, 130), rng.uniform(30, 90)])
    n_ridges = int(rng.integers(2, 5))
    for ridge_index in range(n_ridges):
        nearness = (ridge_index + 1) / n_ridges
        ridge = height * (0.35 + 0.45 * nearness + rng.uniform(-0.05, 0.05))
        ridge = ridge + height * 0.12 * (1.1 - nearness) * _pink_noise(rng, (width,), 2.2)
        colour = ground * (0.6 + 0.5 * nearness) + (1 - nearness) * 0.7 * (horizon - ground)  # aerial haze
        texture = _pink_noise(rng, (height, width), 1.6)[..., None] * (10 + 25 * nearness)
        pixels = np.where((rows >= ridge[None, :])[..., None], colour + texture, pixels)
    pixels += rng.normal(0, 2.0, pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if rng.random() < 0.5:
        _draw_signboard(rng, image)
    return image


def _draw_signboard(rng: np.random.Generator, image: Image.Image) -> None:
    font = ImageFont.load_default(size=max(12, image.height // 14))
    text = " ".join(rng.choice(_WORDS, size=2)).upper()
    left, top, right, bottom = ImageDraw.Draw(image).textbbox((0, 0), text, font=font)
    pad = font.size // 2
    x = int(rng.integers(0, max(1, image.width - (right - left) - 2 * pad)))
    y = int(rng.integers(image.height // 2, max(image.height // 2 + 1, image.height - (bottom - top) - 2 * pad)))
    draw = ImageDraw.Draw(image)
    draw.rectangle((x, y, x + right - left + 2 * pad, y + bottom - top + 2 * pad), fill=(238, 232, 210),
                   outline=(60, 50, 40), width=2)
    draw.text((x + pad - left, y + pad - top), text, fill=(30, 30, 30), font=font)


def _photo_crop(rng: np.random.Generator, photos: Mapping[str, Image.Image]) -> Image.Image:
    """A crop of 60-90% of a real photo (not resized: resampling changes sharpness), mirrored half the time,
    with a small colour cast."""
    photo = photos[SKLEARN_PHOTOS[int(rng.integers(0, len(SKLEARN_PHOTOS)))]]
    scale = rng.uniform(0.6, 0.9)
    crop_width, crop_height = round(photo.width * scale), round(photo.height * scale)
    left = int(rng.integers(0, photo.width - crop_width + 1))
    top = int(rng.integers(0, photo.height - crop_height + 1))
    crop = photo.crop((left, top, left + crop_width, top + crop_height))
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    tinted = np.asarray(crop, np.float32) * rng.uniform(0.88, 1.12, 3)
    return Image.fromarray(np.clip(tinted, 0, 255).astype(np.uint8))


# --- photos and degradations ----------------------------------------------------------------------------


def _write_photos(
    out_dir: Path, photo_bytes: Mapping[str, bytes], photos: Mapping[str, Image.Image]
) -> Iterator[CorpusFile]:
    for name, data in photo_bytes.items():
        encoded = _Encoded(data, format="JPEG", size=photos[name].size)
        yield _write(out_dir, f"photos/{name}", "photo", f"sklearn:{name}", "none", encoded)


def _write_degraded(out_dir: Path, photos: Mapping[str, Image.Image]) -> Iterator[CorpusFile]:
    # (degradation, source photo, how to make it, file extension); the photos alternate.
    degradations: tuple[tuple[str, str, Callable[[Image.Image], _Encoded], str], ...] = (
        ("blurred", "china.jpg", _blurred, "jpg"),
        ("very_dark", "flower.jpg", _very_dark, "jpg"),
        ("washed_out", "china.jpg", _washed_out, "jpg"),
        ("heavy_jpeg", "flower.jpg", _heavy_jpeg, "jpg"),
        ("tiny", "china.jpg", _tiny, "jpg"),
        ("letterbox", "flower.jpg", _letterbox, "jpg"),
        ("grayscale", "china.jpg", _grayscale, "jpg"),
        ("cmyk_jpeg", "flower.jpg", _cmyk_jpeg, "jpg"),
        ("png_16bit_gray", "china.jpg", _png_16bit_gray, "png"),
        ("png_48bit_rgb", "flower.jpg", _png_48bit_rgb, "png"),
        ("palette_transparency", "china.jpg", _palette_with_transparency, "png"),
        ("rgba_cutout", "flower.jpg", _rgba_cutout, "png"),
        ("exif_rotated", "china.jpg", _exif_rotated, "jpg"),
        ("animated_gif", "flower.jpg", _animated_gif, "gif"),
    )
    for degradation, source, degrade, extension in degradations:
        relative = f"degraded/{Path(source).stem}_{degradation}.{extension}"
        yield _write(out_dir, relative, "degraded", f"sklearn:{source}", degradation, degrade(photos[source]))


def _blurred(image: Image.Image) -> _Encoded:
    return _encode(image.filter(ImageFilter.GaussianBlur(radius=6)), "JPEG", quality=90)


def _very_dark(image: Image.Image) -> _Encoded:
    return _encode(image.point(lambda value: value * 8 // 100), "JPEG", quality=90)


def _washed_out(image: Image.Image) -> _Encoded:
    # Contrast squeezed into the top of the range: what an over-exposed, hazy or faded scan looks like.
    return _encode(image.point(lambda value: 170 + value * 25 // 100), "JPEG", quality=90)


def _heavy_jpeg(image: Image.Image) -> _Encoded:
    return _encode(image, "JPEG", quality=3)


def _grayscale(image: Image.Image) -> _Encoded:
    return _encode(image.convert("L"), "JPEG", quality=90)


def _cmyk_jpeg(image: Image.Image) -> _Encoded:
    return _encode(image.convert("CMYK"), "JPEG", quality=90)


def _tiny(image: Image.Image) -> _Encoded:
    return _encode(image.resize((96, 64), Image.Resampling.LANCZOS), "JPEG", quality=90)


def _letterbox(image: Image.Image) -> _Encoded:
    framed = Image.new("RGB", (image.width, image.width), (0, 0, 0))
    framed.paste(image, (0, (image.width - image.height) // 2))
    return _encode(framed, "JPEG", quality=90)


def _png_16bit_gray(image: Image.Image) -> _Encoded:
    wide = np.asarray(image.convert("L")).astype(np.uint16) * 257  # 8-bit value v widened to v * 257
    return _encode(Image.fromarray(wide), "PNG", compress_level=1)


def _png_48bit_rgb(image: Image.Image) -> _Encoded:
    # Pillow cannot write 16-bit-per-channel RGB, so the PNG is assembled by hand (colour type 2, depth 16).
    wide = (np.asarray(image).astype(np.uint16) * 257).astype(">u2")
    data = png_bytes(image.width, image.height, bit_depth=16, colour_type=2, scanlines=_filter_none(wide))
    return _Encoded(data, format="PNG", size=image.size)


def _palette_with_transparency(image: Image.Image) -> _Encoded:
    # 63 photo colours plus one extra entry, pure green, used only by a 32 px border marked transparent:
    # a decoder that ignores the transparency shows a green frame instead of white.
    palette_image = image.quantize(colors=63)
    transparent_index = 63
    palette_image.putpalette(palette_image.getpalette()[: 3 * transparent_index] + [0, 255, 0])
    ImageDraw.Draw(palette_image).rectangle(
        (0, 0, palette_image.width - 1, palette_image.height - 1), outline=transparent_index, width=32
    )
    return _encode(palette_image, "PNG", transparency=transparent_index)


def _rgba_cutout(image: Image.Image) -> _Encoded:
    alpha = Image.new("L", image.size, 0)
    ImageDraw.Draw(alpha).ellipse((40, 30, image.width - 40, image.height - 30), fill=255)
    cutout = image.copy()
    cutout.putalpha(alpha.filter(ImageFilter.GaussianBlur(radius=4)))  # soft edge: partial alpha too
    return _encode(cutout, "PNG", compress_level=1)


def _exif_rotated(image: Image.Image) -> _Encoded:
    # Stored as a camera held sideways writes it: pixels rotated 90 degrees counter-clockwise, EXIF
    # orientation 6 ("rotate 90 clockwise to display"). Displayed size is the original size.
    exif = Image.Exif()
    exif[0x0112] = 6
    encoded = _encode(image.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=90, exif=exif.tobytes())
    return _Encoded(encoded.data, format="JPEG", size=image.size)


def _animated_gif(image: Image.Image) -> _Encoded:
    small = image.resize((160, 107), Image.Resampling.BILINEAR)
    frames = [small.rotate(angle, fillcolor=(255, 255, 255)) for angle in (0, 10, 20, 30)]
    encoded = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
    return _Encoded(encoded.data, expected="animated")


# --- corrupt files --------------------------------------------------------------------------------------

_HTML_PAGE = b"""<!DOCTYPE html>
<html><head><title>404 Not Found</title></head>
<body><h1>Not Found</h1><p>The requested URL /images/photo_1234.jpg was not found on this server.</p></body>
</html>
"""


def _write_corrupt(out_dir: Path, china_jpeg: bytes, china: Image.Image) -> Iterator[CorpusFile]:
    png = _encode(china, "PNG", compress_level=1)
    icon = _encode(china.resize((32, 32)), "ICO").data
    corrupt: tuple[tuple[str, str, _Encoded], ...] = (
        ("empty.jpg", "zero_bytes", _Encoded(b"", expected="empty_file")),
        ("truncated.jpg", "cut_at_55_percent", _Encoded(_cut(china_jpeg, 0.55), expected="truncated")),
        ("truncated.png", "cut_at_40_percent", _Encoded(_cut(png.data, 0.40), expected="truncated")),
        ("html_page.jpg", "html_saved_as_jpg", _Encoded(_HTML_PAGE, expected="not_an_image")),
        ("png_named.jpg", "png_with_jpg_extension", replace(png, extension_mismatch=True)),
        ("bomb_30000x30000.png", "bomb_header", _Encoded(_bomb_png(30000, 30000), expected="decompression_bomb")),
        ("favicon.ico", "ico_format", _Encoded(icon, expected="unsupported_format")),
        ("garbage_idat.png", "pixel_stream_overwritten", _Encoded(_garbage_idat(png.data), expected="corrupt_data")),
    )
    for name, degradation, encoded in corrupt:
        yield _write(out_dir, f"corrupt/{name}", "corrupt", "crafted", degradation, encoded)


def _cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


def _bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header declaring width x height RGB pixels, followed by a pixel stream of a few bytes:
    decoders that trust the header allocate width * height * 3 bytes before finding out."""
    return png_bytes(width, height, bit_depth=8, colour_type=2, scanlines=b"\x00")


def _garbage_idat(png: bytes) -> bytes:
    """Overwrite the middle of the first IDAT payload with noise and recompute its CRC, so only the
    compressed pixel stream is broken, not the chunk structure."""
    start = png.index(b"IDAT")
    (length,) = struct.unpack(">I", png[start - 4 : start])
    payload = bytearray(png[start + 4 : start + 4 + length])
    middle = len(payload) // 2
    payload[middle : middle + 256] = np.random.default_rng(0).integers(0, 256, 256, dtype=np.uint8).tobytes()
    return png[: start - 4] + _png_chunk(b"IDAT", bytes(payload)) + png[start + 8 + length :]


def png_bytes(width: int, height: int, *, bit_depth: int, colour_type: int, scanlines: bytes) -> bytes:
    """A PNG from raw, already filtered scanlines (each row prefixed with its filter byte), for the layouts
    Pillow cannot write (16-bit RGB) or must not allocate (a header declaring gigapixels)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(scanlines, 1))
        + _png_chunk(b"IEND", b"")
    )


def _png_chunk(chunk_type: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(chunk_type + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + chunk_type + payload + struct.pack(">I", crc)


def _filter_none(pixels: np.ndarray) -> bytes:
    """PNG scanlines with filter type 0 (None): a zero byte before each big-endian row."""
    rows = np.ascontiguousarray(pixels).reshape(pixels.shape[0], -1).view(np.uint8)
    return np.hstack([np.zeros((rows.shape[0], 1), np.uint8), rows]).tobytes()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    parser.add_argument("--n", type=int, default=48, help="number of procedural images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    summary = generate_demo_corpus(args.out, n_procedural=args.n, seed=args.seed)
    print(json.dumps({"labels": str(summary.labels_path), "n_files": summary.n_files, **summary.expected_counts}))


if __name__ == "__main__":
    main()
