"""NIQE (Mittal, Soundararajan and Bovik, "Making a completely blind image quality analyzer", 2013), vectorised.

The score is the distance between a multivariate Gaussian fitted to an image's natural-scene-statistics
features and the one fitted to a pristine image set. Lower is more natural; blur, noise and compression
raise it. Every numerical choice follows BasicSR 1.4.2's `calculate_niqe` (itself validated against the
authors' MATLAB release), so the two agree to float rounding:

- the input is the Y channel of MATLAB's `rgb2ycbcr` (BT.601 studio range, 16..235), rounded to integers;
- the image is cropped from the top-left to whole 96 x 96 blocks; blocks do not overlap;
- local mean and deviation use the 7 x 7 Gaussian window stored with the pristine parameters, with
  replicated borders; coefficients are ``(y - mu) / (sigma + 1)``;
- per block, an asymmetric generalised Gaussian (AGGD) is fitted to the coefficients and to their products
  with the neighbour shifted by (0, 1), (1, 0), (1, 1), (1, -1), where the shift wraps around inside the
  block; the shape parameter is the nearest point of a grid from 0.2 to 10 in steps of 0.001;
- the same features at half resolution (MATLAB's antialiased bicubic `imresize`, 48 x 48 blocks);
- blocks with an undefined feature (no negative or no positive coefficient, e.g. a flat area) are left out
  of the covariance but still count in the mean of the features that are defined.

Where BasicSR loops over blocks in Python, this computes all blocks of an image at once. The score is
undefined (NaN) for images with fewer than two whole blocks.

The pristine parameters (`mu_pris_param`, `cov_pris_param`, `gaussian_window`) come from the file
`basicsr/metrics/niqe_pris_params.npz` inside BasicSR's source package on PyPI (Apache-2.0). They are not
part of this repository: `python -m data_engine.ops.niqe --fetch` downloads that source package with pip
and extracts the file into the cache (`$JOYAI_NIQE_PARAMS`, default `<repo>/.cache/niqe/`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np
from scipy import sparse
from scipy.special import gamma

PARAMS_ENV = "JOYAI_NIQE_PARAMS"
PARAMS_FILE_NAME = "niqe_pris_params.npz"
BASICSR_VERSION = "1.4.2"
BASICSR_PARAMS_MEMBER = f"basicsr-{BASICSR_VERSION}/basicsr/metrics/{PARAMS_FILE_NAME}"
BLOCK_SIZE = 96
N_FEATURES = 36  # 18 per scale

# Weights of MATLAB's rgb2ycbcr luma on [0, 1] inputs, in B, G, R order as BasicSR applies them.
_Y_WEIGHTS_BGR = np.array([24.966, 128.553, 65.481])
# Neighbour offsets (rows, columns) of the paired-product features.
_PAIR_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


class NiqeParamsMissing(FileNotFoundError):
    """The pristine-model parameter file is absent or unreadable; the message says how to get it."""


@dataclass(frozen=True)
class NiqeParams:
    mu: np.ndarray  # (36,)
    cov: np.ndarray  # (36, 36)
    window: np.ndarray  # (7, 7), sums to 1


def default_params_path() -> Path:
    configured = os.environ.get(PARAMS_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / ".cache" / "niqe" / PARAMS_FILE_NAME


def load_params(path: Path | None = None) -> NiqeParams:
    path = Path(path) if path is not None else default_params_path()
    if not path.is_file():
        raise NiqeParamsMissing(f"NIQE pristine parameters not found at {path}: run "
                                f"`python -m data_engine.ops.niqe --fetch --out {path}`")
    try:
        with np.load(path) as data:
            params = NiqeParams(mu=np.asarray(data["mu_pris_param"], np.float64).reshape(-1),
                                cov=np.asarray(data["cov_pris_param"], np.float64),
                                window=np.asarray(data["gaussian_window"], np.float64))
    except (OSError, ValueError, KeyError) as exc:
        raise NiqeParamsMissing(f"{path}: not a NIQE parameter file ({type(exc).__name__}: {exc})") from None
    if params.mu.shape != (N_FEATURES,) or params.cov.shape != (N_FEATURES, N_FEATURES) or params.window.ndim != 2:
        raise NiqeParamsMissing(f"{path}: unexpected shapes mu {params.mu.shape}, cov {params.cov.shape}, "
                                f"window {params.window.shape}")
    taps = params.window.sum(axis=0)
    if not np.allclose(np.outer(taps, taps), params.window, rtol=0, atol=1e-12):
        raise NiqeParamsMissing(f"{path}: gaussian_window is not a symmetric separable window")
    return params


def fetch_params(out: Path) -> Path:
    """Download BasicSR's source package with pip (kept beside `out`) and extract the parameter file."""
    return extract_params(fetch_basicsr_sdist(out.parent), out)


def fetch_basicsr_sdist(download_dir: Path) -> Path:
    """pip-download the BasicSR source package (no install). No build isolation: pip reads the package's
    metadata with this environment's setuptools instead of building torch and numpy from source."""
    download_dir.mkdir(parents=True, exist_ok=True)
    sdist = download_dir / f"basicsr-{BASICSR_VERSION}.tar.gz"
    if not sdist.is_file():
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation", "--no-binary",
                   "basicsr", f"basicsr=={BASICSR_VERSION}", "-d", str(download_dir), "--quiet"]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0 or not sdist.is_file():
            last_line = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise NiqeParamsMissing(f"pip download basicsr=={BASICSR_VERSION} failed: {last_line}")
    return sdist


def extract_params(sdist: Path, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as archive:
        try:
            member = archive.extractfile(BASICSR_PARAMS_MEMBER)
        except KeyError:
            member = None
        if member is None:
            raise NiqeParamsMissing(f"{sdist}: has no {BASICSR_PARAMS_MEMBER}")
        data = member.read()
    temp = out.with_name(f".{out.name}.tmp")
    temp.write_bytes(data)
    os.replace(temp, out)
    load_params(out)  # fail here, not in a worker, if the file is not what we expect
    return out


# --- the metric ------------------------------------------------------------------------------------------


def matlab_luma(rgb: np.ndarray) -> np.ndarray:
    """Rounded Y of MATLAB's rgb2ycbcr for an HxWx3 uint8 RGB image, float32, as BasicSR computes it."""
    terms = cv2.LUT(rgb, _luma_lookup_table())  # each channel's float64 term, in one pass
    # Summed in float64 in the order of BasicSR's dot product over B, G, R: the same value, bit for bit.
    dot = terms[..., 2] + terms[..., 1]
    dot += terms[..., 0]
    dot += 16.0
    dot /= 255.0
    y = dot.astype(np.float32)
    y *= np.float32(255.0)
    return np.round(y, out=y)


@cache
def _luma_lookup_table() -> np.ndarray:
    """(1, 256, 3) float64: per 8-bit value, the R, G and B terms of the luma dot product (inputs scaled in
    float32, as BasicSR scales them)."""
    unit = (np.arange(256, dtype=np.float32) / np.float32(255.0)).astype(np.float64)
    blue, green, red = _Y_WEIGHTS_BGR
    return np.stack([unit * red, unit * green, unit * blue], axis=-1)[None]


def niqe_score(rgb: np.ndarray, params: NiqeParams) -> float:
    """NIQE of an HxWx3 uint8 RGB image; NaN when fewer than two whole 96 x 96 blocks fit."""
    return niqe_of_luma(matlab_luma(rgb), params)


def niqe_of_luma(luma: np.ndarray, params: NiqeParams) -> float:
    rows, cols = luma.shape[0] // BLOCK_SIZE, luma.shape[1] // BLOCK_SIZE
    if rows * cols < 2:
        return float("nan")
    image = np.ascontiguousarray(luma[:rows * BLOCK_SIZE, :cols * BLOCK_SIZE], dtype=np.float32)
    full = _block_features(_normalised_coefficients(image, params.window), BLOCK_SIZE)
    half_image = (_matlab_half_size(image.astype(np.float64) / 255.0) * 255.0).astype(np.float32)
    half = _block_features(_normalised_coefficients(half_image, params.window), BLOCK_SIZE // 2)
    features = np.concatenate([full, half], axis=1)
    defined = ~np.isnan(features)
    complete = features[defined.all(axis=1)]
    if complete.shape[0] < 2:
        return float("nan")
    # The mean of each feature over the blocks where it is defined (np.nanmean without its warning).
    mean = np.where(defined, features, 0.0).sum(axis=0) / defined.sum(axis=0)
    cov = np.cov(complete, rowvar=False)
    difference = params.mu - mean
    distance = difference @ np.linalg.pinv((params.cov + cov) / 2) @ difference
    return float(np.sqrt(distance))


def _normalised_coefficients(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """(y - mu) / (sigma + 1) in float32, each filter summed in float64 and stored in float32 (as SciPy's
    `ndimage.convolve` does for a float32 image), so exactly flat areas give exactly zero coefficients."""
    # The window is a symmetric outer product a a^T (checked in load_params), so two 1-D passes do.
    taps = window.sum(axis=0)

    def smooth(values: np.ndarray) -> np.ndarray:
        return cv2.sepFilter2D(values.astype(np.float64), cv2.CV_64F, taps, taps,
                               borderType=cv2.BORDER_REPLICATE).astype(np.float32)

    mu = smooth(image)
    sigma = np.sqrt(np.abs(smooth(np.square(image)) - np.square(mu)))
    return (image - mu) / (sigma + np.float32(1.0))


def _block_features(coefficients: np.ndarray, block: int) -> np.ndarray:
    """18 features per non-overlapping block: (n_blocks, 18). float32 products, as BasicSR computes them."""
    rows, cols = coefficients.shape[0] // block, coefficients.shape[1] // block
    blocks = (coefficients[:rows * block, :cols * block].reshape(rows, block, cols, block)
              .transpose(0, 2, 1, 3).reshape(rows * cols, block, block))
    alpha, left, right = _aggd_fit(blocks.reshape(len(blocks), -1))
    columns = [alpha, (left + right) / 2]
    for shift in _PAIR_SHIFTS:
        products = blocks * np.roll(blocks, shift, axis=(1, 2))
        alpha, left, right = _aggd_fit(products.reshape(len(blocks), -1))
        with np.errstate(invalid="ignore"):
            mean = (right - left) * (gamma(2 / alpha) / gamma(1 / alpha))
        columns += [alpha, mean, left, right]
    return np.stack(columns, axis=1)


_SHAPE_GRID = np.arange(0.2, 10.001, 0.001)


@cache
def _shape_ratio_grid() -> np.ndarray:
    """r(a) = Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)) on the shape grid; increasing in a."""
    reciprocal = 1.0 / _SHAPE_GRID
    ratio = gamma(2 * reciprocal) ** 2 / (gamma(reciprocal) * gamma(3 * reciprocal))
    if not np.all(np.diff(ratio) > 0):
        raise AssertionError("AGGD ratio grid is not increasing; nearest-point search would be wrong")
    return ratio


def _aggd_fit(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Moment-matching AGGD fit per row: shape alpha and left/right scales. Rows without a negative or a
    positive sample get NaN scales and the grid's first shape, as BasicSR's argmin over NaN gives."""
    negative_part, positive_part = np.minimum(samples, 0), np.maximum(samples, 0)
    n = samples.shape[1]
    # Squares in float32 (as BasicSR squares its float32 samples), summed in float64.
    left_squares = np.square(negative_part).sum(axis=1, dtype=np.float64)
    right_squares = np.square(positive_part).sum(axis=1, dtype=np.float64)
    n_negative, n_positive = (samples < 0).sum(axis=1), (samples > 0).sum(axis=1)
    absolute_sum = positive_part.sum(axis=1, dtype=np.float64) - negative_part.sum(axis=1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        left_std = np.sqrt(left_squares / n_negative)
        right_std = np.sqrt(right_squares / n_positive)
        gamma_hat = left_std / right_std
        r_hat = (absolute_sum / n) ** 2 / ((left_squares + right_squares) / n)
        r_hat_norm = r_hat * (gamma_hat ** 3 + 1) * (gamma_hat + 1) / (gamma_hat ** 2 + 1) ** 2
    alpha = _SHAPE_GRID[_nearest_grid_index(r_hat_norm)]
    scale = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left_std * scale, right_std * scale


def _nearest_grid_index(values: np.ndarray) -> np.ndarray:
    """Index of the grid ratio nearest to each value (the lower one on a tie, like argmin); 0 for NaN."""
    grid = _shape_ratio_grid()
    upper = np.clip(np.searchsorted(grid, values), 1, len(grid) - 1)
    lower = upper - 1
    with np.errstate(invalid="ignore"):
        take_upper = np.abs(grid[upper] - values) < np.abs(grid[lower] - values)
    index = np.where(take_upper, upper, lower)
    return np.where(np.isnan(values), 0, index)


@cache
def _matlab_half_size_weights(length: int) -> sparse.csr_array:
    """(ceil(length/2), length) matrix of MATLAB's antialiased bicubic downscale by 0.5 along one axis,
    with MATLAB's symmetric (edge-repeating) boundary folded into the matrix."""
    scale, out_length = 0.5, -(-length // 2)
    kernel_width = 4 / scale
    centres = np.arange(1, out_length + 1) / scale + 0.5 * (1 - 1 / scale)
    taps = int(np.ceil(kernel_width)) + 2
    first = np.floor(centres - kernel_width / 2)
    indices = first[:, None] + np.arange(taps)[None, :]  # 1-based input positions
    weights = scale * _cubic((centres[:, None] - indices) * scale)
    weights /= weights.sum(axis=1, keepdims=True)
    zero_based = indices.astype(np.int64) - 1
    zero_based = np.where(zero_based < 0, -zero_based - 1, zero_based)
    zero_based = np.where(zero_based >= length, 2 * length - zero_based - 1, zero_based)
    # About 10 non-zeros per row: sparse, so the two products cost O(pixels), not O(pixels * side).
    return sparse.csr_array((weights.ravel(), (np.repeat(np.arange(out_length), taps), zero_based.ravel())),
                            shape=(out_length, length))


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    return ((1.5 * ax ** 3 - 2.5 * ax ** 2 + 1) * (ax <= 1)
            + (-0.5 * ax ** 3 + 2.5 * ax ** 2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def _matlab_half_size(image: np.ndarray) -> np.ndarray:
    rows_resized = _matlab_half_size_weights(image.shape[0]) @ image
    return (_matlab_half_size_weights(image.shape[1]) @ rows_resized.T).T


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fetch or check the NIQE pristine-model parameters.")
    parser.add_argument("--fetch", action="store_true", help="download BasicSR's source package and extract them")
    parser.add_argument("--out", type=Path, default=None, help=f"parameter file (default: {default_params_path()})")
    args = parser.parse_args(argv)
    out = args.out or default_params_path()
    try:
        if args.fetch and not out.is_file():
            fetch_params(out)
        load_params(out)
    except NiqeParamsMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
