"""Our vectorised NIQE against BasicSR's own computation, and the parameter file's failure modes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_engine.ops.niqe import (NiqeParamsMissing, extract_params, load_params, main, matlab_luma, niqe_score)
from tests.curation.images import grey, jpeg_roundtrip, with_noise

REFERENCE_SCRIPT = Path(__file__).with_name("basicsr_niqe_reference.py")


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


def test_matches_basicsr_on_the_same_images(photos, niqe_params, basicsr_sdist, tmp_path):
    images = _validation_images(photos)
    paths = []
    for name, rgb in images.items():
        path = tmp_path / f"{name}.png"
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        paths.append(str(path))
    result = subprocess.run([sys.executable, str(REFERENCE_SCRIPT), str(basicsr_sdist), *paths],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    reference = dict(zip(images, json.loads(result.stdout)))
    ours = {name: niqe_score(rgb, niqe_params) for name, rgb in images.items()}
    for name in images:
        # float32 vs float64 rounding only; exactly flat areas move it most (measured 6.5e-4).
        assert ours[name] == pytest.approx(reference[name], rel=2e-3), name
    assert reference["china_blur2"] > reference["china"] + 2  # the images differ enough to mean something


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
