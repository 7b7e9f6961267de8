"""Fixtures for render tests: the render environment (skip only when it is absent) and one shared worker."""

from __future__ import annotations

import pytest

from render.client import RenderEnvMissing, RenderWorker, render_python


@pytest.fixture(scope="session")
def render_env_python():
    try:
        return render_python()
    except RenderEnvMissing as missing:
        pytest.skip(f"needs the render environment: {missing}")


@pytest.fixture(scope="session")
def render_worker(render_env_python):
    """One worker process for the session, as a render stage's actor would hold it."""
    with RenderWorker(render_env_python) as worker:
        worker.start()
        yield worker
