"""Shared fixtures for the image-op tests: one demo corpus per session and lookups into it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from data_engine.demo_corpus import CorpusSummary, generate_demo_corpus


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory: pytest.TempPathFactory) -> CorpusSummary:
    return generate_demo_corpus(tmp_path_factory.mktemp("demo_corpus"))


@pytest.fixture(scope="session")
def corpus_labels(demo_corpus: CorpusSummary) -> dict[str, Any]:
    return json.loads(demo_corpus.labels_path.read_text())


@pytest.fixture(scope="session")
def corpus_bytes(demo_corpus: CorpusSummary, corpus_labels: dict[str, Any]) -> Callable[[str], bytes]:
    """Bytes of the corpus file with this relative path, e.g. "degraded/china_blurred.jpg"."""
    listed = {entry["path"] for entry in corpus_labels["files"]}

    def read(relative_path: str) -> bytes:
        assert relative_path in listed, f"{relative_path} is not in labels.json"
        return (Path(demo_corpus.out_dir) / relative_path).read_bytes()

    return read
