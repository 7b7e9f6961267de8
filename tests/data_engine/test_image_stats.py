"""basic_image_stats: known values on synthetic images, size independence, and order on real degradations."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest

from data_engine.ops.image_decode import DecodedImage, DecodePolicy, decode_image
from data_engine.ops.image_stats import basic_image_stats


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (40, 60)) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (*size, 3)).copy()


def checkerboard(size: int = 64) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size]
    board = ((xs + ys) % 2 * 255).astype(np.uint8)
    return np.repeat(board[..., None], 3, axis=2)


def grey_noise(size: int = 256, seed: int = 0) -> np.ndarray:
    grey = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def test_constant_grey_has_no_entropy_sharpness_contrast_or_saturation() -> None:
    stats = basic_image_stats(solid((90, 90, 90)))
    assert stats == {"brightness": 90.0, "contrast": 0.0, "entropy": 0.0, "saturation": 0.0, "sharpness": 0.0}


@pytest.mark.parametrize(
    ("colour", "luma"),
    # BT.601: round(0.299 R + 0.587 G + 0.114 B)
    [((255, 0, 0), 76), ((0, 255, 0), 150), ((0, 0, 255), 29), ((255, 255, 255), 255), ((0, 0, 0), 0)],
)
def test_brightness_is_bt601_luma(colour: tuple[int, int, int], luma: int) -> None:
    assert basic_image_stats(solid(colour))["brightness"] == luma


@pytest.mark.parametrize(
    ("colour", "saturation"),
    [((255, 0, 0), 1.0), ((0, 0, 0), 0.0), ((200, 200, 200), 0.0), ((200, 100, 100), 0.5), ((10, 255, 128), 245 / 255)],
)
def test_saturation_is_mean_hsv_s(colour: tuple[int, int, int], saturation: float) -> None:
    assert basic_image_stats(solid(colour))["saturation"] == pytest.approx(saturation, abs=1 / 255)


def test_any_grey_image_has_zero_saturation() -> None:
    assert basic_image_stats(grey_noise())["saturation"] == 0.0


def test_two_equal_halves_have_one_bit_of_entropy() -> None:
    half_and_half = solid((0, 0, 0), (32, 32))
    half_and_half[:, 16:] = 255
    stats = basic_image_stats(half_and_half)
    assert stats["entropy"] == pytest.approx(1.0, abs=1e-12)
    assert (stats["brightness"], stats["contrast"]) == (127.5, 127.5)


def test_uniform_grey_noise_approaches_eight_bits() -> None:
    assert 7.99 < basic_image_stats(grey_noise(512))["entropy"] <= 8.0


def test_checkerboard_sharpness_is_the_laplacian_peak_squared() -> None:
    # Every pixel of a 1-px 0/255 checkerboard has four neighbours of the other colour: Laplacian +-4 * 255,
    # mean 0, so the variance is 1020 ** 2 (the reflected border continues the pattern).
    assert basic_image_stats(checkerboard())["sharpness"] == pytest.approx(1020.0**2)


def test_blur_lowers_sharpness() -> None:
    image = grey_noise()
    blurred = cv2.GaussianBlur(image, (0, 0), 2.0)
    assert basic_image_stats(blurred)["sharpness"] < basic_image_stats(image)["sharpness"] / 10


def test_statistics_do_not_scale_with_image_size() -> None:
    image = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    tiled = np.tile(image, (2, 2, 1))
    single, double = basic_image_stats(image), basic_image_stats(tiled)
    for name in ("brightness", "contrast", "entropy", "saturation"):
        assert double[name] == pytest.approx(single[name], rel=1e-9), name
    assert double["sharpness"] == pytest.approx(single["sharpness"], rel=0.05)  # differs only at seams/border


def test_accepts_read_only_and_strided_views() -> None:
    image = grey_noise(64)
    image.flags.writeable = False
    assert basic_image_stats(image[::2, ::2])["entropy"] > 0


@pytest.mark.parametrize(
    "bad",
    [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3)), np.zeros((0, 8, 3), np.uint8)],
)
def test_rejects_anything_but_rgb_uint8(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        basic_image_stats(bad)


def test_corpus_degradations_move_the_statistics_the_right_way(corpus_bytes: Callable[[str], bytes]) -> None:
    def stats(path: str) -> dict[str, float]:
        decoded = decode_image(corpus_bytes(path), name=path, policy=DecodePolicy())
        assert isinstance(decoded, DecodedImage), decoded
        return basic_image_stats(decoded.rgb)

    china, flower = stats("photos/china.jpg"), stats("photos/flower.jpg")
    assert stats("degraded/china_blurred.jpg")["sharpness"] < china["sharpness"] / 5
    assert stats("degraded/flower_very_dark.jpg")["brightness"] < 20 < flower["brightness"]
    washed_out = stats("degraded/china_washed_out.jpg")
    assert washed_out["contrast"] < china["contrast"] / 3 and washed_out["brightness"] > 170
    assert stats("degraded/china_grayscale.jpg")["saturation"] < 0.01 < china["saturation"]
    assert stats("degraded/flower_letterbox.jpg")["brightness"] < flower["brightness"]
