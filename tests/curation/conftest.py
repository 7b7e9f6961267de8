"""Shared fixtures for the curation tests: the NIQE parameters and generated images with known degradations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_engine.demo_corpus import sample_photo_paths
from data_engine.ops.niqe import NiqeParams, default_params_path, fetch_basicsr_sdist, fetch_params, load_params


@pytest.fixture(scope="session")
def basicsr_sdist() -> Path:
    """BasicSR's source package (pip download into the NIQE cache, once per machine)."""
    return fetch_basicsr_sdist(default_params_path().parent)


@pytest.fixture(scope="session")
def niqe_params(basicsr_sdist: Path) -> NiqeParams:
    path = default_params_path()
    if not path.is_file():
        fetch_params(path)
    return load_params(path)


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """The two real photos shipped with scikit-learn, RGB uint8, by stem ("china", "flower")."""
    return {path.stem: np.asarray(Image.open(path).convert("RGB")) for path in sample_photo_paths()}
