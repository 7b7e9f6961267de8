"""Shared expensive fixtures (one local Ray per test session) and the machine named in the report header.

The tests exercise every package together, as the composition root does: importing `pipelines.registry`
adds the client packages' stages, readers and report sections to the engine.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pytest

import pipelines.registry  # noqa: F401
from tests.browser import CHROMIUM, CHROMIUM_ARGS

REPO = Path(__file__).resolve().parents[1]


def _cpu_description() -> str:
    """Model name and the vector extensions that change floating-point results (which values round to zero)."""
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    vector = [name for name in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if name in flags]
    return f"{model} ({os.cpu_count()} cpus; {' '.join(vector) or 'no AVX2'})"


def pytest_report_header(config) -> list[str]:
    """A failure report names the machine: CPU model, vector extensions, and the BLAS overrides in force."""
    blas = {name: os.environ[name] for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "NPY_DISABLE_CPU_FEATURES")
            if name in os.environ}
    return [f"cpu: {_cpu_description()}", f"blas overrides: {blas or 'none'}"]


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole session; run_job reuses it instead of starting its own."""
    import ray

    from data_engine.executor import init_local_ray

    init_local_ray(num_cpus=2)
    yield ray
    ray.shutdown()



@pytest.fixture(scope="session")
def browser():
    """One headless Debian Chromium for the session, driven by Playwright (no browser download)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed; `make setup` installs Debian chromium for the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()
