"""One corpus and one uninterrupted run of the demo job for every test that kills or starves a run of it."""

from __future__ import annotations

import time

import pytest

from data_engine.demo_corpus import generate_demo_corpus
from data_engine.shards import read_manifest
from tests.runtime.demo_job import Reference, finish, rows_of, start_job


@pytest.fixture(scope="session")
def job_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    generate_demo_corpus(root, n_procedural=24, seed=5)
    return root


@pytest.fixture(scope="session")
def job_reference(job_corpus, tmp_path_factory) -> Reference:
    out = tmp_path_factory.mktemp("reference") / "out"
    started = time.perf_counter()
    finish(start_job(job_corpus, out))
    return Reference(out, rows_of(out), read_manifest(out), time.perf_counter() - started)
