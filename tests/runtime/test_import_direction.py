"""Dependencies point inward: pipelines -> {openspatial, render, trainer} -> data_engine.

Each check runs in a fresh interpreter in which the packages a module must not reach are made unimportable,
then imports every module of the package under test (a lazy import inside a function is not reached, which is
why the engine's registry and model references are checked separately below).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLIENTS = ("openspatial", "render", "trainer", "pipelines")

_IMPORT_ALL = """
import importlib, importlib.abc, pkgutil, sys

class Forbidden(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {forbidden!r}:
            raise ImportError(f"{{name}} may not be imported from {package}")
        return None

sys.meta_path.insert(0, Forbidden())
package = importlib.import_module({package!r})
failed = []
for module in pkgutil.walk_packages(package.__path__, {package!r} + "."):
    if module.name.endswith("__main__"):
        continue
    try:
        importlib.import_module(module.name)
    except ImportError as exc:  # an optional dependency missing here (bpy, vllm) is not a direction problem
        if "may not be imported" in str(exc):
            failed.append(f"{{module.name}}: {{exc}}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def _import_everything(package: str, forbidden: tuple[str, ...]) -> subprocess.CompletedProcess:
    script = textwrap.dedent(_IMPORT_ALL).format(package=package, forbidden=set(forbidden))
    return subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_the_engine_imports_without_any_client_package():
    result = _import_everything("data_engine", CLIENTS)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]


@pytest.mark.parametrize("client", ["openspatial", "render", "trainer"])
def test_a_client_imports_without_the_other_clients_or_the_job_layer(client):
    result = _import_everything(client, tuple(c for c in CLIENTS if c != client))
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]


def test_the_engine_registry_names_no_client_and_resolves_tiny_models_alone():
    script = textwrap.dedent("""
        import sys
        sys.modules.update({name: None for name in ("openspatial", "render", "trainer", "pipelines")})
        from data_engine import registry
        from data_engine.model_refs import resolve_model_path
        modules = [*registry.STAGE_MODULES.values(), *registry.READER_MODULES.values(),
                   *registry.REPORT_SECTION_MODULES]
        assert all(module.startswith("data_engine.") for module in modules), modules
        for op in registry.STAGE_MODULES:
            registry.stage_class(op)
        for kind in registry.READER_MODULES:
            registry.reader_class(kind)
        registry.import_report_sections()
        try:
            resolve_model_path("tiny:no_such_model")
        except RuntimeError as exc:
            assert "make tiny-models" in str(exc), exc
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
