"""Our vectorised NIQE against BasicSR's own computation, and the parameter file's failure modes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_engine.ops import niqe as niqe_module
from data_engine.ops.niqe import (NiqeParamsMissing, default_params_path, extract_params, load_params, main,
                                  matlab_luma, niqe_score)
from tests.curation.images import grey, jpeg_roundtrip, with_noise

REFERENCE_SCRIPT = Path(__file__).with_name("basicsr_niqe_reference.py")


# Images with exactly flat areas (JPEG q5 blocks, a painted patch). There the half-scale image decides which
# coefficients are exactly zero, and a block's AGGD features jump with that: BasicSR resizes in float32 through
# torch -> MKL sgemv, whose CPU-dispatched code path rounds flat areas differently per CPU family (on an AMD
# EPYC, MKL's own dispatch gave china_jpeg5 8.2905 vs 8.2598 pinned: 0.37%). The reference therefore runs
# with MKL pinned to its COMPATIBLE path, which gives one result on every x86-64 CPU.
IMAGES_WITH_FLAT_AREAS = {"china_jpeg5", "china_flat_patch"}
# Measured with the pinned reference (AMD EPYC, and the same under every MKL_CBWR / NPY / OpenCV vector
# setting): at most 2.3e-5 relative without flat areas (float32 vs float64 rounding), 1.6e-4 with them.
# A wrong step moves at least one image by >= 1.6e-3 (test_comparison_catches_a_wrong_step).
REL_TOLERANCE = {False: 5e-4, True: 1e-3}
REFERENCE_ENV = {"MKL_CBWR": "COMPATIBLE", "MKL_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def _validation_images(photos: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    china, flower = photos["china"], photos["flower"]
    flat_patch = china.copy()
    flat_patch[:200, :300] = (128, 128, 128)  # exactly flat area: zero coefficients, undefined block features
    return {
        "china": china,
        "flower_crop_odd_size": flower[7:400, 3:517],  # not a multiple of 96: exercises the crop
        "china_blur2": cv2.GaussianBlur(china, (0, 0), 2),
        "flower_noise20": with_noise(flower, 20),
        "china_jpeg5": jpeg_roundtrip(china, 5),
        "flower_grey": grey(flower),
        "china_flat_patch": flat_patch,
    }


@pytest.fixture(scope="module")
def validation_images(photos) -> dict[str, np.ndarray]:
    return _validation_images(photos)


@pytest.fixture(scope="module")
def reference_scores(validation_images, basicsr_sdist, tmp_path_factory) -> dict[str, float]:
    """BasicSR's own scores, computed once in a subprocess with MKL's code path pinned."""
    folder = tmp_path_factory.mktemp("niqe_images")
    paths = []
    for name, rgb in validation_images.items():
        path = folder / f"{name}.png"
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        paths.append(str(path))
    result = subprocess.run([sys.executable, str(REFERENCE_SCRIPT), str(basicsr_sdist), *paths],
                            capture_output=True, text=True, timeout=300, env={**os.environ, **REFERENCE_ENV})
    assert result.returncode == 0, result.stderr[-2000:]
    return dict(zip(validation_images, json.loads(result.stdout)))


def _disagreements(ours: dict[str, float], reference: dict[str, float]) -> list[str]:
    return [f"{name}: ours {ours[name]:.6f} vs BasicSR {reference[name]:.6f}" for name in reference
            if ours[name] != pytest.approx(reference[name], rel=REL_TOLERANCE[name in IMAGES_WITH_FLAT_AREAS])]


def test_matches_basicsr_on_the_same_images(validation_images, reference_scores, niqe_params):
    ours = {name: niqe_score(rgb, niqe_params) for name, rgb in validation_images.items()}
    assert _disagreements(ours, reference_scores) == []
    assert reference_scores["china_blur2"] > reference_scores["china"] + 2  # the images differ enough to matter


def _resize_by_area(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)


def _full_range_grey(rgb: np.ndarray) -> np.ndarray:
    return np.round(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float64))


def _coefficients_with(border: int, sigma_offset: float):
    def normalised(image: np.ndarray, window: np.ndarray) -> np.ndarray:
        taps = window.sum(axis=0)

        def smooth(values):
            return cv2.sepFilter2D(values.astype(np.float64), cv2.CV_64F, taps, taps,
                                   borderType=border).astype(np.float32)

        mu = smooth(image)
        sigma = np.sqrt(np.abs(smooth(np.square(image)) - np.square(mu)))
        return (image - mu) / (sigma + np.float32(sigma_offset))
    return normalised


@pytest.mark.parametrize("function, wrong_step", [
    ("_matlab_half_size", _resize_by_area),  # half scale without MATLAB's bicubic
    ("matlab_luma", _full_range_grey),  # full-range grey instead of studio-range Y
    ("_normalised_coefficients", _coefficients_with(cv2.BORDER_REFLECT_101, 1.0)),  # wrong border mode
    ("_normalised_coefficients", _coefficients_with(cv2.BORDER_REPLICATE, 0.5)),  # sigma + 0.5, not + 1
], ids=["area_resize", "full_range_luma", "reflect_border", "sigma_offset"])
def test_comparison_catches_a_wrong_step(validation_images, reference_scores, niqe_params, monkeypatch,
                                         function, wrong_step):
    """The tolerances above are tight enough that a NIQE with one wrong step fails the comparison."""
    monkeypatch.setattr(niqe_module, function, wrong_step)
    ours = {name: niqe_module.niqe_score(rgb, niqe_params) for name, rgb in validation_images.items()}
    assert _disagreements(ours, reference_scores)


def test_score_does_not_depend_on_vector_extensions(validation_images, niqe_params, tmp_path):
    """Our score is the same with numpy's, OpenCV's and OpenBLAS's wider vector kernels switched off, so the
    comparison above means the same on every x86-64 CPU."""
    image_path = tmp_path / "images.npz"
    np.savez(image_path, **validation_images)
    script = ("import json, sys, numpy as np\n"
              "from data_engine.ops.niqe import load_params, niqe_score\n"
              "images = np.load(sys.argv[1]); params = load_params(sys.argv[2])\n"
              "print(json.dumps({name: niqe_score(images[name], params) for name in images.files}))\n")
    features = np._core._multiarray_umath
    wide = [name for name in features.__cpu_dispatch__ if features.__cpu_features__.get(name)]
    narrow_env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": ",".join(wide), "OPENBLAS_CORETYPE": "Sandybridge",
                  "OPENCV_CPU_DISABLE": "AVX512_SKX,AVX512_COMMON,AVX2,FMA3,AVX,FP16"}
    result = subprocess.run([sys.executable, "-c", script, str(image_path), str(default_params_path())],
                            capture_output=True, text=True, timeout=300, env=narrow_env)
    assert result.returncode == 0, result.stderr[-2000:]
    narrow = json.loads(result.stdout)
    for name, rgb in validation_images.items():
        assert narrow[name] == pytest.approx(niqe_score(rgb, niqe_params), rel=1e-9), name


def test_luma_is_matlab_studio_range():
    pixels = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0]]], dtype=np.uint8)
    assert matlab_luma(pixels).tolist() == [[16.0, 235.0, 81.0]]


def test_undefined_below_two_blocks(niqe_params, photos):
    assert np.isnan(niqe_score(photos["china"][:150, :150], niqe_params))
    assert np.isfinite(niqe_score(photos["china"][:96, :192], niqe_params))


def test_missing_params_name_the_fix(tmp_path):
    missing = tmp_path / "nothing.npz"
    with pytest.raises(NiqeParamsMissing, match="python -m data_engine.ops.niqe --fetch"):
        load_params(missing)
    assert main(["--out", str(missing)]) == 2


def test_malformed_params_file_is_refused(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a numpy archive")
    with pytest.raises(NiqeParamsMissing, match="not a NIQE parameter file"):
        load_params(bad)
    np.savez(tmp_path / "shapes.npz", mu_pris_param=np.zeros(3), cov_pris_param=np.eye(3),
             gaussian_window=np.ones((7, 7)))
    with pytest.raises(NiqeParamsMissing, match="unexpected shapes"):
        load_params(tmp_path / "shapes.npz")


def test_extract_from_the_source_package(basicsr_sdist, tmp_path):
    out = extract_params(basicsr_sdist, tmp_path / "params.npz")
    assert load_params(out).cov.shape == (36, 36)
