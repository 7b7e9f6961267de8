"""Run BasicSR 1.4.2's own `calculate_niqe` (from its PyPI source package, not installed) on PNG files.

Used only by the tests, as a subprocess: `python basicsr_niqe_reference.py SDIST IMAGE...` prints one JSON
list of scores. BasicSR's package `__init__` files import its whole training stack, so the modules that
`basicsr/metrics/niqe.py` needs are loaded from their own files under empty parent packages; the metric
code that runs is BasicSR's, unchanged.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tarfile
import tempfile
import types
import warnings
from pathlib import Path

import cv2


def _load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_calculate_niqe(source_root: Path):
    package = source_root / "basicsr"
    for name in ("basicsr", "basicsr.utils", "basicsr.metrics"):
        shell = types.ModuleType(name)
        shell.__path__ = []
        sys.modules[name] = shell
    color_util = _load("basicsr.utils.color_util", package / "utils" / "color_util.py")
    sys.modules["basicsr.utils"].bgr2ycbcr = color_util.bgr2ycbcr
    _load("basicsr.utils.registry", package / "utils" / "registry.py")
    _load("basicsr.utils.matlab_functions", package / "utils" / "matlab_functions.py")
    _load("basicsr.metrics.metric_util", package / "metrics" / "metric_util.py")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # scipy.ndimage.filters
        return _load("basicsr.metrics.niqe", package / "metrics" / "niqe.py").calculate_niqe


def main(argv: list[str]) -> None:
    sdist, images = Path(argv[0]), argv[1:]
    with tempfile.TemporaryDirectory() as temp:
        with tarfile.open(sdist) as archive:
            archive.extractall(temp, filter="data")
        calculate_niqe = load_calculate_niqe(next(Path(temp).glob("basicsr-*")))
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN blocks, as in BasicSR itself
        scores = [calculate_niqe(cv2.imread(path, cv2.IMREAD_COLOR), crop_border=0) for path in images]
    print(json.dumps(scores))


if __name__ == "__main__":
    main(sys.argv[1:])
