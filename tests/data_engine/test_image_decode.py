"""decode_image: every reject reason on a crafted file, every normalisation rule on pixel values."""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from data_engine.demo_corpus import png_bytes
from data_engine.ops.image_decode import (
    REJECT_REASONS,
    DecodedImage,
    DecodePolicy,
    DecodeReject,
    decode_image,
)

DEFAULT_POLICY = DecodePolicy()


def encode(image: Image.Image, fmt: str, **save_options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_options)
    return buffer.getvalue()


def gradient_rgb(width: int = 64, height: int = 48) -> Image.Image:
    ys, xs = np.mgrid[0:height, 0:width]
    pixels = np.stack([xs * 255 // width, ys * 255 // height, (xs + ys) % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(pixels)


def decode_ok(data: bytes, name: str = "image", policy: DecodePolicy = DEFAULT_POLICY) -> DecodedImage:
    result = decode_image(data, name=name, policy=policy)
    assert isinstance(result, DecodedImage), result
    return result


def solid_frames(colours: list[tuple[int, int, int]], size: tuple[int, int] = (24, 16)) -> list[Image.Image]:
    return [Image.new("RGB", size, colour) for colour in colours]


# --- crafted rejects ------------------------------------------------------------------------------------

JPEG = encode(gradient_rgb(160, 120), "JPEG", quality=90)
PNG = encode(gradient_rgb(160, 120), "PNG")


def png_with_noise_idat() -> bytes:
    """A valid PNG structure (CRCs correct) whose compressed pixel stream is noise."""
    noise = np.random.default_rng(1).integers(0, 256, 64, dtype=np.uint8).tobytes()
    idat = struct.pack(">I", len(noise)) + b"IDAT" + noise + struct.pack(">I", zlib.crc32(b"IDAT" + noise))
    valid = png_bytes(8, 8, bit_depth=8, colour_type=2, scanlines=bytes(8 * (1 + 8 * 3)))
    return valid[: valid.index(b"IDAT") - 4] + idat + valid[valid.index(b"IEND") - 4 :]


def two_frame_animation(fmt: str, **save_options: Any) -> bytes:
    first, second = solid_frames([(255, 0, 0), (0, 0, 255)])
    return encode(first, fmt, save_all=True, append_images=[second], duration=50, **save_options)


def first_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


REJECT_CASES: dict[str, tuple[Callable[[], bytes], str, DecodePolicy, str]] = {
    # case id: (bytes, file name, policy, expected reason)
    "zero_bytes": (lambda: b"", "a.jpg", DEFAULT_POLICY, "empty_file"),
    "over_byte_limit": (lambda: PNG, "a.png", DecodePolicy(max_file_bytes=100), "too_large_file"),
    "html_as_jpg": (lambda: b"<!DOCTYPE html><html><body>404</body></html>", "a.jpg", DEFAULT_POLICY, "not_an_image"),
    "text_as_png": (lambda: b"just some notes\n" * 10, "a.png", DEFAULT_POLICY, "not_an_image"),
    "pdf_as_jpg": (lambda: b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", "a.jpg", DEFAULT_POLICY, "not_an_image"),
    "random_binary": (
        lambda: np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "a.webp",
        DEFAULT_POLICY,
        "not_an_image",
    ),
    "ico": (lambda: encode(gradient_rgb(32, 32), "ICO"), "a.ico", DEFAULT_POLICY, "unsupported_format"),
    "jpeg_outside_policy": (lambda: JPEG, "a.jpg", DecodePolicy(formats=("PNG",)), "unsupported_format"),
    "heic_signature": (
        lambda: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64),
        "a.heic",
        DEFAULT_POLICY,
        "unsupported_format",
    ),
    "svg": (
        lambda: b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
        "a.jpg",
        DEFAULT_POLICY,
        "unsupported_format",
    ),
    "float_tiff": (
        lambda: encode(Image.new("F", (8, 8), 0.5), "TIFF"),
        "a.tif",
        DEFAULT_POLICY,
        "unsupported_format",
    ),
    # 900 MP: above Pillow's own hard limit (2 x MAX_IMAGE_PIXELS), which raises inside Image.open.
    "bomb_30000x30000": (
        lambda: png_bytes(30000, 30000, bit_depth=8, colour_type=2, scanlines=b"\x00"),
        "a.png",
        DEFAULT_POLICY,
        "decompression_bomb",
    ),
    # 100 MP: between Pillow's warning and error limits, so only the policy stops it; the IDAT is empty, so
    # "truncated" here would mean pixels were decoded before the size check.
    "bomb_10000x10000": (
        lambda: png_bytes(10000, 10000, bit_depth=8, colour_type=2, scanlines=b"\x00"),
        "a.png",
        DEFAULT_POLICY,
        "decompression_bomb",
    ),
    "over_policy_pixels": (lambda: JPEG, "a.jpg", DecodePolicy(max_pixels=160 * 120 - 1), "decompression_bomb"),
    "animated_gif": (lambda: two_frame_animation("GIF"), "a.gif", DEFAULT_POLICY, "animated"),
    "animated_webp": (lambda: two_frame_animation("WEBP", lossless=True), "a.webp", DEFAULT_POLICY, "animated"),
    "apng": (lambda: two_frame_animation("PNG"), "a.png", DEFAULT_POLICY, "animated"),
    "jpeg_cut_10pct": (lambda: JPEG[: len(JPEG) // 10], "a.jpg", DEFAULT_POLICY, "truncated"),
    "jpeg_cut_50pct": (lambda: first_half(JPEG), "a.jpg", DEFAULT_POLICY, "truncated"),
    "jpeg_missing_eoi": (lambda: JPEG[:-2], "a.jpg", DEFAULT_POLICY, "truncated"),
    "png_cut_50pct": (lambda: first_half(PNG), "a.png", DEFAULT_POLICY, "truncated"),
    "png_cut_in_header": (lambda: PNG[:20], "a.png", DEFAULT_POLICY, "truncated"),
    "webp_cut_50pct": (lambda: first_half(encode(gradient_rgb(), "WEBP")), "a.webp", DEFAULT_POLICY, "truncated"),
    "gif_cut_50pct": (lambda: first_half(encode(gradient_rgb(), "GIF")), "a.gif", DEFAULT_POLICY, "truncated"),
    "png_noise_idat": (png_with_noise_idat, "a.png", DEFAULT_POLICY, "corrupt_data"),
    "jpeg_signature_then_junk": (lambda: b"\xff\xd8\xff" + b"\x00" * 3, "a.jpg", DEFAULT_POLICY, "corrupt_data"),
}


@pytest.mark.parametrize("case", list(REJECT_CASES))
def test_crafted_file_is_rejected_with_its_reason_and_no_warning(case: str) -> None:
    make_bytes, name, policy, expected_reason = REJECT_CASES[case]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = decode_image(make_bytes(), name=name, policy=policy)
    assert isinstance(result, DecodeReject), result
    assert (result.reason, bool(result.detail)) == (expected_reason, True)
    assert [str(warning.message) for warning in caught] == []


def test_every_reject_reason_is_exercised_by_a_crafted_file() -> None:
    assert {reason for *_, reason in REJECT_CASES.values()} == set(REJECT_REASONS)


def test_truncation_relies_on_pillows_default() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_corrupted_bytes_never_raise() -> None:
    rng = np.random.default_rng(0)
    originals = [encode(gradient_rgb(24, 16), fmt) for fmt in ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")]
    for _ in range(300):
        data = np.frombuffer(originals[rng.integers(len(originals))], np.uint8).copy()
        positions = rng.integers(0, len(data), rng.integers(1, 8))
        data[positions] = rng.integers(0, 256, len(positions))
        damaged = data[: rng.integers(1, len(data) + 1)].tobytes()
        result = decode_image(damaged, name="x.jpg", policy=DEFAULT_POLICY)
        assert isinstance(result, DecodedImage) or result.reason in REJECT_REASONS


# --- accepted images: record fields ---------------------------------------------------------------------


def test_rgb_jpeg_fields() -> None:
    result = decode_ok(JPEG, "photo.jpg")
    reference = np.asarray(Image.open(io.BytesIO(JPEG)))
    assert np.array_equal(result.rgb, reference)
    assert (result.width, result.height, result.format, result.mode_before) == (160, 120, "JPEG", "RGB")
    assert (result.md5, result.sha256) == (hashlib.md5(JPEG).hexdigest(), hashlib.sha256(JPEG).hexdigest())
    assert (result.n_frames, result.extension_mismatch, result.orientation_applied) == (1, False, False)
    assert result.rgb.dtype == np.uint8 and result.rgb.shape == (120, 160, 3)
    assert result.rgb.flags.c_contiguous and not result.rgb.flags.writeable


def test_image_above_pillows_block_size_decodes_identically() -> None:
    # 2100 x 2100 RGB is 17.6 MB in Pillow's 4-byte layout, above its 16 MiB block: the non-Arrow path.
    image = gradient_rgb(2100, 2100)
    result = decode_ok(encode(image, "PNG", compress_level=1), "big.png")
    assert np.array_equal(result.rgb, np.asarray(image))
    assert result.rgb.flags.c_contiguous and not result.rgb.flags.writeable


@pytest.mark.parametrize(
    ("name", "fmt", "mismatch"),
    [
        ("a.jpg", "JPEG", False),
        ("dir.png/A.JPEG", "JPEG", False),
        ("a.png", "JPEG", True),
        ("a.jpg", "PNG", True),
        ("a.webp", "PNG", True),
        ("a.gif", "GIF", False),
        ("no_extension", "JPEG", False),
        ("a.unknown", "PNG", False),
    ],
)
def test_extension_mismatch_is_recorded_not_rejected(name: str, fmt: str, mismatch: bool) -> None:
    result = decode_ok(encode(gradient_rgb(), fmt), name)
    assert (result.format, result.extension_mismatch) == (fmt, mismatch)


def test_mpo_is_not_animated_and_matches_jpg_extension() -> None:
    primary, companion = solid_frames([(200, 30, 30), (30, 30, 200)], size=(32, 32))
    result = decode_ok(encode(primary, "MPO", save_all=True, append_images=[companion]), "phone.jpg")
    assert (result.format, result.n_frames, result.extension_mismatch) == ("MPO", 2, False)
    assert np.abs(result.rgb[16, 16].astype(int) - (200, 30, 30)).max() <= 4


def test_first_frame_policy_decodes_frame_zero() -> None:
    first, *rest = solid_frames([(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    gif = encode(first, "GIF", save_all=True, append_images=rest, duration=50)
    result = decode_ok(gif, "a.gif", DecodePolicy(animated="first_frame"))
    assert result.n_frames == 3
    assert np.all(result.rgb == (255, 0, 0))


@pytest.mark.parametrize(
    "policy_options", [{"animated": "skip"}, {"max_pixels": 0}, {"max_file_bytes": -1}, {"max_pixels": 10**12}]
)
def test_invalid_policy_is_refused(policy_options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        DecodePolicy(**policy_options)


# --- normalisation rules --------------------------------------------------------------------------------

# What each EXIF orientation asks the viewer to do to the stored pixels (EXIF 2.32, tag 0x0112).
DISPLAYED_FROM_STORED: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirror horizontally
    3: lambda a: a[::-1, ::-1],  # rotate 180
    4: lambda a: a[::-1, :],  # mirror vertically
    5: lambda a: a.transpose(1, 0, 2),  # mirror along the main diagonal
    6: lambda a: np.rot90(a, k=-1),  # rotate 90 clockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # mirror along the anti-diagonal
    8: lambda a: np.rot90(a, k=1),  # rotate 90 counter-clockwise
}


def with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


@pytest.mark.parametrize("orientation", sorted(DISPLAYED_FROM_STORED))
def test_exif_orientation_is_applied(orientation: int) -> None:
    stored = gradient_rgb(5, 3)  # lossless PNG, asymmetric, every pixel distinct
    data = encode(stored, "PNG", exif=with_orientation(orientation))
    result = decode_ok(data, "a.png")
    expected = DISPLAYED_FROM_STORED[orientation](np.asarray(stored))
    assert np.array_equal(result.rgb, expected)
    assert np.array_equal(result.rgb, np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data)))))
    assert (result.width, result.height) == (expected.shape[1], expected.shape[0])
    assert result.orientation_applied == (orientation != 1)


@pytest.mark.parametrize("orientation", [0, 9, 65535])
def test_invalid_exif_orientation_is_ignored(orientation: int) -> None:
    stored = gradient_rgb(5, 3)
    result = decode_ok(encode(stored, "PNG", exif=with_orientation(orientation)), "a.png")
    assert np.array_equal(result.rgb, np.asarray(stored)) and not result.orientation_applied


def test_exif_rotated_jpeg_has_swapped_size_and_upright_corner() -> None:
    # Stored 64 wide x 32 high, left half red, right half blue; orientation 6 turns it 90 degrees clockwise,
    # so the displayed image is 32 x 64 with red on top.
    stored = Image.new("RGB", (64, 32), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 32, 32))
    result = decode_ok(encode(stored, "JPEG", quality=95, exif=with_orientation(6)), "a.jpg")
    assert (result.width, result.height, result.orientation_applied) == (32, 64, True)
    assert np.abs(result.rgb[0, 0].astype(int) - (255, 0, 0)).max() <= 8
    assert np.abs(result.rgb[-1, -1].astype(int) - (0, 0, 255)).max() <= 8


def test_cmyk_tiff_is_converted_exactly() -> None:
    cmyk = Image.new("CMYK", (4, 1))
    for x, ink in enumerate([(255, 0, 0, 0), (0, 255, 255, 0), (0, 0, 0, 255), (0, 0, 0, 0)]):
        cmyk.putpixel((x, 0), ink)
    result = decode_ok(encode(cmyk, "TIFF"), "a.tif")
    assert result.mode_before == "CMYK"
    assert result.rgb[0].tolist() == [[0, 255, 255], [255, 0, 0], [0, 0, 0], [255, 255, 255]]


def test_cmyk_jpeg_is_converted() -> None:
    red_ink = Image.new("CMYK", (16, 16), (0, 255, 255, 0))
    result = decode_ok(encode(red_ink, "JPEG", quality=95), "a.jpg")
    assert result.mode_before == "CMYK"
    assert np.abs(result.rgb.astype(int) - (255, 0, 0)).max() <= 6


def test_16bit_grey_png_keeps_the_high_byte() -> None:
    values = np.array([[0, 10 * 257, 0xFFFF, 0x1234, 0x00FF]], np.uint16)
    result = decode_ok(encode(Image.fromarray(values), "PNG"), "a.png")
    assert result.mode_before == "I;16"
    assert result.rgb[0, :, 0].tolist() == [0, 10, 255, 0x12, 0]
    assert np.array_equal(result.rgb[..., 0], result.rgb[..., 2])


def test_32bit_integer_grey_is_clipped_to_16_bits_then_scaled() -> None:
    values = Image.new("I", (4, 1))
    for x, value in enumerate([-5, 0x1234, 0xFFFF, 70_000]):
        values.putpixel((x, 0), value)
    result = decode_ok(encode(values, "TIFF"), "a.tif")
    assert result.mode_before == "I"
    assert result.rgb[0, :, 1].tolist() == [0, 0x12, 255, 255]


def test_48bit_png_keeps_the_high_byte() -> None:
    pixels = np.zeros((2, 2, 3), np.uint16)
    pixels[0, 0] = (0x1234, 0xFF00, 0x00FF)
    ok, png = cv2.imencode(".png", pixels[..., ::-1])  # OpenCV writes BGR order
    assert ok
    result = decode_ok(png.tobytes(), "a.png")
    assert result.rgb[0, 0].tolist() == [0x12, 0xFF, 0x00]


def test_palette_with_transparent_index_becomes_white() -> None:
    palette_image = Image.new("P", (3, 1))
    palette_image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    for x in range(3):
        palette_image.putpixel((x, 0), x)
    result = decode_ok(encode(palette_image, "PNG", transparency=1), "a.png")
    assert result.mode_before == "P"
    assert result.rgb[0].tolist() == [[255, 0, 0], [255, 255, 255], [0, 0, 255]]


def test_palette_with_partial_alpha_is_blended_onto_white() -> None:
    palette_image = Image.new("P", (3, 1))
    palette_image.putpalette([255, 0, 0, 0, 0, 0, 0, 0, 0])
    for x in range(3):
        palette_image.putpixel((x, 0), x)
    result = decode_ok(encode(palette_image, "PNG", transparency=bytes([255, 0, 128])), "a.png")
    assert result.rgb[0].tolist() == [[255, 0, 0], [255, 255, 255], [127, 127, 127]]


def test_palette_without_transparency_uses_its_colours() -> None:
    palette_image = Image.new("P", (2, 1))
    palette_image.putpalette([10, 20, 30, 200, 100, 50])
    palette_image.putpixel((1, 0), 1)
    result = decode_ok(encode(palette_image, "PNG"), "a.png")
    assert result.rgb[0].tolist() == [[10, 20, 30], [200, 100, 50]]


def test_rgba_is_composited_onto_white() -> None:
    rgba = Image.new("RGBA", (4, 1))
    for x, pixel in enumerate([(10, 20, 30, 0), (10, 20, 30, 255), (0, 0, 0, 128), (200, 100, 0, 64)]):
        rgba.putpixel((x, 0), pixel)
    result = decode_ok(encode(rgba, "PNG"), "a.png")
    assert result.mode_before == "RGBA"
    assert result.rgb[0, :3].tolist() == [[255, 255, 255], [10, 20, 30], [127, 127, 127]]
    # 200 * 64/255 + 255 * 191/255 = 241.2, and so on; allow Pillow's integer rounding.
    assert np.abs(result.rgb[0, 3].astype(int) - (241, 216, 191)).max() <= 1


def test_rgb_with_transparent_colour_key_becomes_white() -> None:
    image = Image.new("RGB", (2, 1), (0, 128, 0))
    image.putpixel((1, 0), (9, 9, 9))
    result = decode_ok(encode(image, "PNG", transparency=(0, 128, 0)), "a.png")
    assert result.rgb[0].tolist() == [[255, 255, 255], [9, 9, 9]]


def test_grey_with_alpha_is_composited_onto_white() -> None:
    grey_alpha = Image.new("LA", (2, 1))
    grey_alpha.putpixel((0, 0), (50, 0))
    grey_alpha.putpixel((1, 0), (50, 255))
    result = decode_ok(encode(grey_alpha, "PNG"), "a.png")
    assert result.mode_before == "LA"
    assert result.rgb[0].tolist() == [[255, 255, 255], [50, 50, 50]]


@pytest.mark.parametrize(
    ("mode", "values", "expected"), [("L", [0, 77, 255], [0, 77, 255]), ("1", [0, 1, 0], [0, 255, 0])]
)
def test_grey_and_bilevel_are_replicated_to_rgb(mode: str, values: list[int], expected: list[int]) -> None:
    image = Image.new(mode, (3, 1))
    for x, value in enumerate(values):
        image.putpixel((x, 0), value)
    result = decode_ok(encode(image, "PNG"), "a.png")
    assert result.mode_before == mode
    assert result.rgb[0].tolist() == [[value] * 3 for value in expected]


# --- the demo corpus ------------------------------------------------------------------------------------


def test_decode_of_every_corpus_file_matches_its_label(
    corpus_labels: dict[str, Any], corpus_bytes: Callable[[str], bytes]
) -> None:
    mismatches = []
    for entry in corpus_labels["files"]:
        result = decode_image(corpus_bytes(entry["path"]), name=entry["path"], policy=DEFAULT_POLICY)
        if isinstance(result, DecodeReject):
            observed = {"expected": result.reason}
        else:
            observed = {
                "expected": "ok",
                "expected_format": result.format,
                "expected_width": result.width,
                "expected_height": result.height,
                "expected_extension_mismatch": result.extension_mismatch,
            }
        labelled = {key: entry[key] for key in observed}
        if observed != labelled:
            mismatches.append((entry["path"], labelled, observed))
    assert mismatches == []


def test_corpus_normalisations_on_real_photos(corpus_bytes: Callable[[str], bytes]) -> None:
    china = decode_ok(corpus_bytes("photos/china.jpg")).rgb.astype(int)
    rotated = decode_ok(corpus_bytes("degraded/china_exif_rotated.jpg")).rgb.astype(int)
    assert rotated.shape == china.shape and np.abs(rotated - china).mean() < 5  # upright, up to re-encoding
    palette = decode_ok(corpus_bytes("degraded/china_palette_transparency.png")).rgb
    assert np.all(palette[:32] == 255) and np.all(palette[:, -32:] == 255)  # transparent frame -> white
    gray16 = decode_ok(corpus_bytes("degraded/china_png_16bit_gray.png")).rgb.astype(int)
    assert np.abs(gray16[..., 0] - cv2.cvtColor(china.astype(np.uint8), cv2.COLOR_RGB2GRAY)).max() <= 1
    cmyk = decode_ok(corpus_bytes("degraded/flower_cmyk_jpeg.jpg")).rgb.astype(int)
    flower = decode_ok(corpus_bytes("photos/flower.jpg")).rgb.astype(int)
    assert np.abs(cmyk - flower).mean() < 4
    assert np.array_equal(decode_ok(corpus_bytes("degraded/flower_png_48bit_rgb.png")).rgb, flower)
