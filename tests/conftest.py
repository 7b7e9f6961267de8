"""Shared expensive fixtures: one local Ray per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS

REPO = Path(__file__).resolve().parents[1]


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
