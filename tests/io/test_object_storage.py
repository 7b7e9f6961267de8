"""Object storage against a real S3-compatible server (moto's) on 127.0.0.1.

The demo job reads its images from s3:// and writes its shards to s3://; it is SIGKILLed between a shard's
data and its commit marker, resumed, and must then equal a local run of the same images. Readers, `inspect`,
the allow-list and the commit-marker protocol are checked against the same server.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

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
from data_engine.shards import (CRASHPOINT_ENV, ShardDirError, commit_file_name, completed_shards, iter_shards,
                                read_manifest, remove_stale_temps, shard_file_name, shard_paths, write_shard)
from data_engine.storage import ALLOW_ENV, S3Settings, StorageConfig, StorageError, check_allowed, resolve
from pipelines.cli import main as cli_main
from pipelines.jobfile import JOBS_DIR, load_job
from tests.io.conftest import rows_by_upstream_id

moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed")

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
BUCKET = "joyai"
ALLOWED = f"s3://{BUCKET}/allowed"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test-key", "AWS_SECRET_ACCESS_KEY": "test-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    filesystem: pafs.S3FileSystem

    def storage(self) -> StorageConfig:
        return StorageConfig(allowed_prefixes=(ALLOWED,), s3=S3Settings(endpoint_override=self.endpoint))

    def keys(self, prefix: str) -> list[str]:
        selector = pafs.FileSelector(prefix, recursive=True, allow_not_found=True)
        return sorted(info.path[len(prefix) + 1:] for info in self.filesystem.get_file_info(selector)
                      if info.type == pafs.FileType.File)

    def upload(self, local: Path, prefix: str) -> None:
        self.filesystem.create_dir(prefix)
        pafs.copy_files(str(local), prefix, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=self.filesystem)


@pytest.fixture(scope="module")
def s3():
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    with pytest.MonkeyPatch.context() as patch:
        for name, value in CREDENTIALS.items():
            patch.setenv(name, value)
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        filesystem = pafs.S3FileSystem(endpoint_override=endpoint, allow_bucket_creation=True)
        filesystem.create_dir(BUCKET)
        yield S3Server(endpoint, filesystem)
        server.stop()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, s3):
    root = tmp_path_factory.mktemp("s3-corpus")
    generate_demo_corpus(root, n_procedural=3, seed=5)
    s3.upload(root, f"{BUCKET}/allowed/raw")
    return root


def job_command(s3: S3Server, out: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pipelines", "run", str(JOBS_DIR / "demo.yaml"), "--no-progress", "--out", out,
            "--set", f"input={ALLOWED}/raw", "--set", "reader.shard_rows=6", "--set", "ray.num_cpus=2",
            "--set", f"storage.allowed_prefixes=[{ALLOWED}]", "--set", f"storage.s3.endpoint_override={s3.endpoint}",
            *extra]


def start_job(s3: S3Server, out: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    env = os.environ | CREDENTIALS | {"PYTHONPATH": str(REPO)} | (extra_env or {})
    # A session of its own, so the test can SIGKILL the driver and the local Ray it started, and nothing else.
    return subprocess.Popen(job_command(s3, out), cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@dataclass
class CrashedThenResumed:
    out: str
    keys_after_crash: list[str]
    completed_after_crash: set[int]
    manifest: dict


@pytest.fixture(scope="module")
def s3_run(s3, corpus, tmp_path_factory) -> CrashedThenResumed:
    """The demo job on S3, SIGKILLed after a shard's data is written and before its marker, then resumed."""
    out = f"{ALLOWED}/out"
    markers = tmp_path_factory.mktemp("markers")
    process = start_job(s3, out, {CRASHPOINT_ENV: f"shard_before_commit:60:{markers}"})
    deadline = time.monotonic() + 120
    while not any(markers.iterdir()):
        assert process.poll() is None, process.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "the job never reached shard_before_commit"
        time.sleep(0.05)
    subprocess.run(["pkill", "-9", "-s", str(process.pid)], check=False)
    process.communicate(timeout=60)
    keys = s3.keys(f"{BUCKET}/allowed/out")
    completed = completed_shards(resolve(out, s3.storage()))
    resumed = start_job(s3, out)
    output, _ = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, output[-3000:]
    return CrashedThenResumed(out, keys, completed, json.loads(output.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def local_rows(ray_local, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    run_job(load_job(JOBS_DIR / "demo.yaml", [f"input={corpus}", f"output={out}", "reader.shard_rows=6"]),
            progress=False)
    return rows_by_upstream_id(out)


def test_crash_between_data_and_marker_leaves_an_untrusted_shard(s3_run):
    """At the kill, some shard had its parquet and stats at their final keys but no marker: not complete."""
    keys = set(s3_run.keys_after_crash)
    uncommitted = [name for name in keys if name.endswith(".parquet") and
                   name.replace(".parquet", ".commit") not in keys]
    assert uncommitted, f"expected a shard without its marker, found {sorted(keys)}"
    for name in uncommitted:
        assert int(name[5:10]) not in s3_run.completed_after_crash
        assert name.replace(".parquet", ".stats.json") in keys
    assert "_manifest.json" not in keys


def test_resumed_s3_run_equals_a_local_run(s3, s3_run, local_rows):
    storage = s3.storage()
    rows = {}
    for _, table in iter_shards(resolve(s3_run.out, storage)):
        for row in table.to_pylist():
            assert row["upstream_id"] not in rows, f"duplicated row {row['upstream_id']}"
            rows[row["upstream_id"]] = row
    assert rows == local_rows
    manifest = read_manifest(resolve(s3_run.out, storage))
    assert manifest["rows_written"] == len(local_rows) == s3_run.manifest["rows_written"]
    assert manifest["timings"]["shards_skipped"] == len(s3_run.completed_after_crash)
    keys = s3.keys(f"{BUCKET}/allowed/out")
    shards = {name[:10] for name in keys if name.startswith("part-")}
    assert keys == sorted({"_job.json", "_manifest.json"} | {f"{s}{suffix}" for s in shards
                                                            for suffix in (".parquet", ".stats.json", ".commit")})


def test_inspect_reads_an_s3_output(s3, s3_run, local_rows, monkeypatch, capsys):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    assert cli_main(["inspect", s3_run.out, "--json", "--rows", "1"]) == 2
    assert capsys.readouterr().err.strip().endswith(f"add a prefix to storage.allowed_prefixes or {ALLOW_ENV}")
    monkeypatch.setenv(ALLOW_ENV, ALLOWED)
    assert cli_main(["inspect", s3_run.out, "--json", "--rows", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["path"] == s3_run.out and report["rows"] == report["manifest_rows_written"] == len(local_rows)
    assert report["rows_accepted"] == sum(row["reject_reason"] is None for row in local_rows.values())


def test_webdataset_export_reads_an_s3_output(s3, s3_run, local_rows, tmp_path):
    manifest = export_webdataset(resolve(s3_run.out, s3.storage()), tmp_path / "wds", samples_per_tar=8)
    accepted = sorted(row["id"] for row in local_rows.values() if row["reject_reason"] is None)
    assert manifest["source"] == s3_run.out and manifest["samples"] == len(accepted)
    with tarfile.open(tmp_path / "wds" / manifest["tars"][0]["file"]) as tar:
        assert {name.split(".")[0] for name in tar.getnames()} <= set(accepted)


def test_locations_outside_the_allow_list_are_one_line_errors_before_ray(s3, capsys, monkeypatch):
    job = str(JOBS_DIR / "demo.yaml")
    # once a job has an allow-list, its local default output must be admitted too: all cases move it to S3
    allow = ["--set", f"storage.allowed_prefixes=[{ALLOWED}]", "--set", f"output={ALLOWED}/out"]
    cases = {
        ("validate", job, "--set", f"input=s3://{BUCKET}/elsewhere/raw", *allow):
            f"input: s3://{BUCKET}/elsewhere/raw is outside the allowed storage prefixes",
        ("validate", job, *allow, "--set", f"output={ALLOWED}-old/out"):
            f"output: {ALLOWED}-old/out is outside the allowed storage prefixes",
        ("validate", job, "--set", f"input={ALLOWED}/raw"): "is object storage, and no allow-list admits it",
        ("validate", job, "--set", f"input={ALLOWED}/../secret", *allow): "without '.' or '..' segments",
        ("validate", job, "--set", "input=hdfs://namenode/raw"): "unsupported scheme 'hdfs'",
        ("validate", job, "--set", f"input={ALLOWED}/raw", "--set", f"storage.allowed_prefixes=[{ALLOWED}]"):
            "output: /",  # the job's local default output, outside the job's list
        ("run", job, *allow, "--out", f"s3://{BUCKET}/elsewhere"): "outside the allowed storage prefixes",
    }
    for argv, message in cases.items():
        assert cli_main(list(argv)) == 2, argv
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and message in error, (argv, error)
    # the cluster-wide list narrows what a job may name, including local paths
    monkeypatch.setenv(ALLOW_ENV, f"{ALLOWED}/raw")
    with pytest.raises(StorageError, match=ALLOW_ENV):
        check_allowed(f"{ALLOWED}/out", StorageConfig(allowed_prefixes=(ALLOWED,)))
    with pytest.raises(StorageError, match=ALLOW_ENV):
        check_allowed("/tmp/local-out", StorageConfig())
    assert check_allowed(f"{ALLOWED}/raw/x.jpg", StorageConfig(allowed_prefixes=(ALLOWED,))) == f"{ALLOWED}/raw/x.jpg"


def test_commit_marker_protocol(s3):
    """Only marked shards are listed and read; a rewrite is untrusted until its new marker lands; resume
    deletes unmarked leftovers."""
    out = resolve(f"{ALLOWED}/protocol", s3.storage())
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
    assert s3.keys(f"{BUCKET}/allowed/protocol") == sorted(
        [shard_file_name(0), "part-00000.stats.json", commit_file_name(0)])


def test_tar_and_parquet_readers_read_s3_like_local(s3, packed_corpus):
    """The same containers (hostile and corrupt ones included) give the same rows from S3 as from disk."""
    for name, config in (("tar", TarConfig()), ("parquet_bytes", ParquetImagesConfig(bytes_column="image"))):
        local, remote = str(packed_corpus.inputs[name]), f"{ALLOWED}/{name}"
        s3.upload(Path(local), f"{BUCKET}/allowed/{name}")
        disk_reader, s3_reader = make_reader(config), make_reader(config, s3.storage())
        items = disk_reader.list_items(local)
        assert s3_reader.list_items(remote) == items and items
        from_s3 = s3_reader.read_items(remote, items).to_pylist()
        from_disk = disk_reader.read_items(local, items).to_pylist()
        for remote, disk in zip(from_s3, from_disk, strict=True):
            assert (remote["image_bytes"], remote["reject_reason"]) == (disk["image_bytes"], disk["reject_reason"])


def test_parquet_uris_resolve_only_under_an_s3_media_root(s3, corpus):
    buffer = io.BytesIO()
    uris = ["photos/china.jpg", f"{ALLOWED}/raw/photos/flower.jpg", "../raw/photos/china.jpg",
            f"s3://{BUCKET}/elsewhere/x.jpg", "file:///etc/passwd", "photos/missing.jpg"]
    pq.write_table(pa.table({"uri": uris}), buffer)
    with s3.filesystem.open_output_stream(f"{BUCKET}/allowed/uris/u.parquet") as stream:
        stream.write(buffer.getvalue())
    reader = make_reader(ParquetImagesConfig(uri_column="uri", media_root=f"{ALLOWED}/raw"), s3.storage())
    rows = reader.read_items(f"{ALLOWED}/uris", reader.list_items(f"{ALLOWED}/uris")).to_pylist()
    assert rows[0]["image_bytes"] == (corpus / "photos/china.jpg").read_bytes()
    assert rows[1]["image_bytes"] == (corpus / "photos/flower.jpg").read_bytes()
    assert [r["reject_reason"] for r in rows] == [None, None, "unsafe_uri", "unsafe_uri", "unsafe_uri", "unreadable"]
