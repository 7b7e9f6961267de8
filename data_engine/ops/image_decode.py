"""Decode one encoded image into 8-bit RGB pixels, or say in one word why not.

`decode_image` never raises for bad input: every failure is a `DecodeReject` whose `reason` is one of the
closed set `REJECT_REASONS` (listed in checking order; an unconvertible pixel mode is found after decoding):

- ``empty_file``: zero bytes.
- ``too_large_file``: more bytes than `DecodePolicy.max_file_bytes` (checked before any parsing).
- ``not_an_image``: the content is no image at all (HTML error page, text, PDF, unknown binary), whatever
  the file name says.
- ``unsupported_format``: an image, but in a format this policy does not decode (Pillow can open it but it
  is not in `DecodePolicy.formats`, or it is HEIF/JPEG XL/SVG, which Pillow cannot open), or in a pixel
  mode with no stated conversion to RGB (32-bit float).
- ``decompression_bomb``: the header declares more than `DecodePolicy.max_pixels` pixels. Refused from
  the declared size, before any pixel is decoded.
- ``animated``: more than one frame and `DecodePolicy.animated == "reject"`. MPO files (JPEG plus
  stereo/depth companions, as phones write them) are not animated: their first frame is the photo.
- ``truncated``: the file ends before the pixel data does. Relies on Pillow's default
  ``ImageFile.LOAD_TRUNCATED_IMAGES = False``, under which a full `load()` raises instead of padding.
- ``corrupt_data``: an image signature, but the header or the pixel data cannot be decoded.

The format is sniffed from the content (Pillow's magic-byte identification); the file name only feeds
`DecodedImage.extension_mismatch`, which is recorded and never a reject.

Normalisation to 8-bit RGB, in this order:

1. EXIF orientation (tag 0x0112, values 2-8) is read from the original image and applied at the end as a
   lossless transpose, so `width`/`height` are the displayed size. XMP orientation is ignored.
2. 16-bit and 32-bit integer grey (I;16, I;16B, I;16L, I;16N, I) keeps the high byte of the 16-bit value
   (``v >> 8``, the exact inverse of the usual ``v8 * 257`` widening); mode I is clipped to 0..65535 first.
   Pillow's own I;16 -> L conversion clips at 255 instead of scaling, hence numpy. Transparency of 16-bit
   grey images is ignored. 48/64-bit PNGs arrive as RGB/RGBA: Pillow keeps the high byte while decoding,
   the same rule.
3. Anything with alpha (RGBA, LA, PA, RGBa) or a transparency key (palette, L or RGB with tRNS) becomes
   RGBA and is composited onto white.
4. Everything else without alpha (1, L, P, CMYK, YCbCr, RGBX, LAB, HSV) uses Pillow's conversion to RGB.
   CMYK is converted without colour management (ICC profiles are ignored everywhere).
5. 32-bit float (F) has no defined range and is rejected as ``unsupported_format``.

Animated images under ``animated="first_frame"`` are decoded at frame 0.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
from dataclasses import dataclass
from functools import cache
from typing import Literal, get_args

import cv2
import numpy as np
import pyarrow as pa
from PIL import ExifTags, Image, UnidentifiedImageError

RejectReason = Literal[
    "empty_file",
    "too_large_file",
    "not_an_image",
    "unsupported_format",
    "decompression_bomb",
    "animated",
    "truncated",
    "corrupt_data",
]
REJECT_REASONS: tuple[str, ...] = get_args(RejectReason)

AnimatedPolicy = Literal["reject", "first_frame"]

# Formats of images found on the web and in photo collections. Pillow can open ~40 more (ICO, PCX, TGA,
# EPS, ...); refusing them keeps rare, less-fuzzed decoders away from untrusted input.
WEB_IMAGE_FORMATS: tuple[str, ...] = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")


@dataclass(frozen=True)
class DecodePolicy:
    """What `decode_image` accepts. Pillow refuses images above 2 x `Image.MAX_IMAGE_PIXELS` by itself
    (reported as ``decompression_bomb``), so `max_pixels` cannot usefully exceed that."""

    max_pixels: int = 89_478_485  # Pillow's default MAX_IMAGE_PIXELS: a 24-bit 256 MiB image
    max_file_bytes: int = 64 * 2**20  # well above a 50 MP camera JPEG (~25 MiB)
    animated: AnimatedPolicy = "reject"
    formats: tuple[str, ...] = WEB_IMAGE_FORMATS

    def __post_init__(self) -> None:
        if self.max_pixels <= 0 or self.max_file_bytes <= 0:
            raise ValueError(f"limits must be positive: {self}")
        if self.animated not in get_args(AnimatedPolicy):
            raise ValueError(f"animated must be one of {get_args(AnimatedPolicy)}, got {self.animated!r}")
        pillow_limit = Image.MAX_IMAGE_PIXELS
        if pillow_limit is not None and self.max_pixels > 2 * pillow_limit:
            raise ValueError(f"max_pixels {self.max_pixels} exceeds Pillow's hard limit {2 * pillow_limit}")


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """A decoded image. `rgb` is read-only, C-contiguous uint8 HxWx3; hashes are of the original bytes."""

    rgb: np.ndarray
    width: int
    height: int
    format: str
    mode_before: str
    md5: str
    sha256: str
    n_frames: int
    extension_mismatch: bool
    orientation_applied: bool  # an EXIF orientation other than 1 transposed the pixels
    alpha_composited: bool  # an alpha channel or transparency key was composited onto white


@dataclass(frozen=True)
class DecodeReject:
    reason: RejectReason
    detail: str


class _Rejected(Exception):
    """Internal early exit carrying the reject; never leaves this module."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reject = DecodeReject(reason, detail)


def decode_image(data: bytes, *, name: str, policy: DecodePolicy) -> DecodedImage | DecodeReject:
    """Decode `data` (the file's bytes; `name` is its file name or path) under `policy`."""
    if not data:
        return DecodeReject("empty_file", "0 bytes")
    if len(data) > policy.max_file_bytes:
        return DecodeReject("too_large_file", f"{len(data)} bytes > {policy.max_file_bytes}")
    try:
        # Pillow warns (DecompressionBombWarning, corrupt EXIF, ...) on exactly the inputs this function
        # turns into rejects or records; the result is the report, so its warnings must not leak.
        # catch_warnings swaps the process-wide filter list: callers decoding from several threads at once
        # may see a stray warning, never a wrong result.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _decode(data, name, policy)
    except _Rejected as rejected:
        return rejected.reject
    except MemoryError:
        raise  # the machine is short of memory; the file is not to blame
    except Exception as error:  # noqa: BLE001 - Pillow plugins raise many exception types on malformed input
        return DecodeReject("corrupt_data", f"{type(error).__name__}: {error}")


def _decode(data: bytes, name: str, policy: DecodePolicy) -> DecodedImage:
    # Pillow invalidates a closed image's pixels, so everything that reads them stays inside the block.
    with _open(data, policy) as image:
        width, height = image.size
        if width * height > policy.max_pixels:
            raise _Rejected("decompression_bomb", f"declares {width}x{height} > {policy.max_pixels} pixels")
        n_frames = getattr(image, "n_frames", 1)
        if n_frames > 1 and image.format != "MPO" and policy.animated == "reject":
            raise _Rejected("animated", f"{image.format} with {n_frames} frames")
        _load_pixels(image, data)
        orientation = _exif_orientation(image)
        rgb = _rgb_array(_oriented(_to_rgb(image), orientation))
        return DecodedImage(
            rgb=rgb,
            width=rgb.shape[1],
            height=rgb.shape[0],
            format=image.format or "",
            mode_before=image.mode,
            md5=hashlib.md5(data).hexdigest(),
            sha256=hashlib.sha256(data).hexdigest(),
            n_frames=n_frames,
            extension_mismatch=_extension_mismatch(name, image.format or ""),
            orientation_applied=orientation in _TRANSPOSE_FOR_ORIENTATION,
            alpha_composited=image.mode in _ALPHA_MODES or "transparency" in image.info,
        )


# --- opening and sniffing -------------------------------------------------------------------------------


def _open(data: bytes, policy: DecodePolicy) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=_available_formats(policy.formats))
    except Image.DecompressionBombError as error:
        raise _Rejected("decompression_bomb", str(error)) from None
    except UnidentifiedImageError:
        raise _Rejected(*_classify_unidentified(data, policy)) from None
    except OSError as error:  # a recognised format whose header ends early or is broken
        raise _Rejected(_load_error_reason(error, data), f"header: {error}") from None


@cache
def _available_formats(formats: tuple[str, ...]) -> tuple[str, ...]:
    # Image.open raises KeyError for a format this Pillow build lacks (AVIF before 11.2); such files fall
    # through to the signature table and become unsupported_format.
    Image.init()
    return tuple(fmt for fmt in formats if fmt in Image.OPEN)


def _classify_unidentified(data: bytes, policy: DecodePolicy) -> tuple[RejectReason, str]:
    """Why the policy's formats could not open `data`. Only reached on the reject path."""
    try:
        with Image.open(io.BytesIO(data)) as other_format:
            return "unsupported_format", f"{other_format.format} is not in {policy.formats}"
    except Exception:  # noqa: BLE001 - no Pillow plugin accepts it; look at the signature
        pass
    signature_format = _signature_format(data)
    if signature_format in policy.formats:
        return "corrupt_data", f"{signature_format} signature but unreadable header"
    if signature_format is not None:
        return "unsupported_format", f"{signature_format} (no decoder)"
    return "not_an_image", _describe_content(data)


# Signatures of image formats, for content no Pillow plugin accepted: either a decodable format with a
# broken header, or a format Pillow has no decoder for. ISO-BMFF brands are matched at bytes 8..12.
_PREFIX_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\xff\x0a", "JXL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JXL"),
)
_FTYP_BRANDS: dict[bytes, str] = {
    b"avif": "AVIF",
    b"avis": "AVIF",
    b"heic": "HEIF",
    b"heix": "HEIF",
    b"hevc": "HEIF",
    b"hevx": "HEIF",
    b"heim": "HEIF",
    b"heis": "HEIF",
    b"mif1": "HEIF",
    b"msf1": "HEIF",
}


def _signature_format(data: bytes) -> str | None:
    for prefix, fmt in _PREFIX_SIGNATURES:
        if data.startswith(prefix):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(data[8:12])
    head = data[:1024].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")) and b"<svg" in head:
        return "SVG"
    return None


def _describe_content(data: bytes) -> str:
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        return "HTML document"
    if head.startswith(b"%pdf"):
        return "PDF document"
    try:
        data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return f"unrecognised binary ({len(data)} bytes)"
    return f"text ({len(data)} bytes)"


# --- pixels ---------------------------------------------------------------------------------------------


def _load_pixels(image: Image.Image, data: bytes) -> None:
    try:
        image.load()
    except EOFError as error:
        raise _Rejected("truncated", f"{error}") from None
    except OSError as error:
        raise _Rejected(_load_error_reason(error, data), f"{error}") from None


def _load_error_reason(error: OSError, data: bytes) -> RejectReason:
    # Pillow's decoders say "image file is truncated" / "Truncated File Read"; libwebp only says it
    # "could not create decoder object", so for WebP the RIFF size field tells a short file apart.
    if "truncated" in str(error).lower() or _riff_declares_more_bytes(data):
        return "truncated"
    return "corrupt_data"


def _riff_declares_more_bytes(data: bytes) -> bool:
    if data[:4] != b"RIFF" or len(data) < 8:
        return False
    (declared_payload,) = struct.unpack("<I", data[4:8])
    return len(data) < declared_payload + 8


_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa"})
_OPAQUE_MODES = frozenset({"1", "L", "P", "CMYK", "YCbCr", "RGBX", "LAB", "HSV"})
_WHITE = (255, 255, 255)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in _SIXTEEN_BIT_MODES:
        image = _sixteen_bit_to_grey(image)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        return _composite_on_white(image)
    if image.mode == "RGB":
        return image
    if image.mode in _OPAQUE_MODES:
        return image.convert("RGB")
    raise _Rejected("unsupported_format", f"pixel mode {image.mode} has no defined 8-bit conversion")


def _sixteen_bit_to_grey(image: Image.Image) -> Image.Image:
    values = np.asarray(image)
    if image.mode == "I":
        values = np.clip(values, 0, 0xFFFF)
    return Image.fromarray((values >> 8).astype(np.uint8))  # 2-D uint8 -> mode L


def _composite_on_white(image: Image.Image) -> Image.Image:
    # White, not black: transparent web images (logos, product cut-outs, stickers, icons) are authored to be
    # shown on light pages, and the colour under alpha=0 is arbitrary (often black), so any other
    # background produces dark halos and blacked-out cut-outs that no viewer ever saw.
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    canvas = Image.new("RGB", rgba.size, _WHITE)
    canvas.paste(rgba, mask=rgba.getchannel("A"))
    return canvas


_TRANSPOSE_FOR_ORIENTATION: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag; 1 (as stored) when absent. Values outside 2..8 are treated as 1."""
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    return orientation if isinstance(orientation, int) else 1


def _oriented(image: Image.Image, orientation: int) -> Image.Image:
    transpose = _TRANSPOSE_FOR_ORIENTATION.get(orientation)
    return image if transpose is None else image.transpose(transpose)


def _rgb_array(image: Image.Image) -> np.ndarray:
    """Read-only HxWx3 uint8 copy of an RGB image.

    Pillow stores RGB as 4 bytes per pixel; `np.asarray(image)` repacks through its raw encoder (~2.3 ms per
    megapixel). Arrow export is zero-copy and one SIMD cvtColor drops the pad byte (~0.2 ms per MP). Arrow
    export needs one memory block (Pillow >= 11.2; images above its 16 MiB block size are split), so big
    images, and older Pillow, take the slow path.
    """
    padded = _padded_pixels(image)
    rgb = np.asarray(image) if padded is None else cv2.cvtColor(padded, cv2.COLOR_RGBA2RGB)
    rgb.flags.writeable = False
    return rgb


def _padded_pixels(image: Image.Image) -> np.ndarray | None:
    """Zero-copy HxWx4 view of Pillow's RGBX storage, or None where Arrow export is unavailable."""
    try:
        channels = pa.array(image).values
    except (ValueError, TypeError, pa.ArrowException):
        return None
    # np.frombuffer on the data buffer, not Array.to_numpy, which imports pandas (~0.3 s) on first use.
    flat = np.frombuffer(channels.buffers()[1], np.uint8, count=len(channels), offset=channels.offset)
    return flat.reshape(image.height, image.width, 4)


# --- file name ------------------------------------------------------------------------------------------

# Extensions that name a format; unknown or missing extensions make no claim and never mismatch.
_EXTENSION_FORMATS: dict[str, str] = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".jfif": "JPEG",
    ".mpo": "JPEG",
    ".png": "PNG",
    ".apng": "PNG",
    ".gif": "GIF",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".dib": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".avif": "AVIF",
    ".heic": "HEIF",
    ".heif": "HEIF",
    ".jxl": "JXL",
    ".svg": "SVG",
    ".ico": "ICO",
}
_FORMAT_FAMILY = {"MPO": "JPEG"}  # an MPO is a JPEG with companion images; .jpg is its usual name


def _extension_mismatch(name: str, sniffed_format: str) -> bool:
    claimed = _EXTENSION_FORMATS.get(os.path.splitext(name)[1].lower())
    return claimed is not None and claimed != _FORMAT_FAMILY.get(sniffed_format, sniffed_format)
