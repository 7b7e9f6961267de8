"""The demo corpus packed into every input format the readers take, with the expected row of every item.

Ground truth comes from the corpus labels (what `decode_image` must conclude about each file) plus the
hostile or broken members added here, each with the `read` reject it must produce.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_engine.demo_corpus import generate_demo_corpus
from data_engine.executor import run_job
from data_engine.shards import iter_shards
from pipelines.jobfile import JOBS_DIR, load_job

THRESHOLD_REASONS = (None, "too_small", "aspect_ratio", "too_dark")


def add_member(tar: tarfile.TarFile, name: str, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE,
               linkname: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def write_webdataset_tar(path: Path, samples: dict[str, tuple[str, bytes]], mode: str = "w") -> None:
    """`samples`: key -> (image field, bytes); each sample also gets a `key.json` sidecar."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as tar:
        for key, (image_field, data) in samples.items():
            add_member(tar, f"{key}.{image_field}", data)
            add_member(tar, f"{key}.json", json.dumps({"key": key}).encode())


@dataclass
class PackedCorpus:
    """The corpus in each input format; `expected[kind][upstream_id]` = ("read", reason) for read rejects,
    else ("decode", corpus label) where the label is "ok" or the decode reject reason."""

    corpus: Path
    inputs: dict[str, Path] = field(default_factory=dict)
    overrides: dict[str, list[str]] = field(default_factory=dict)
    expected: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)
    corpus_path: dict[str, dict[str, str]] = field(default_factory=dict)  # kind -> upstream_id -> corpus path


def _pack_folder(packed: PackedCorpus, files: dict[str, tuple[bytes, str]]) -> None:
    packed.inputs["image_folder"] = packed.corpus
    packed.overrides["image_folder"] = []
    packed.expected["image_folder"] = {path: ("decode", label) for path, (_, label) in files.items()}
    packed.corpus_path["image_folder"] = {path: path for path in files}


def _pack_tar(packed: PackedCorpus, root: Path, files: dict[str, tuple[bytes, str]]) -> None:
    """Half the corpus in a plain tar, half in a gzip one a folder deeper, plus a hostile and a corrupt tar."""
    paths = sorted(files)
    halves = {"plain.tar": paths[::2], "nested/zipped.tar.gz": paths[1::2]}
    expected, corpus_path = {}, {}
    for tar_name, members in halves.items():
        samples = {}
        for path in members:
            key, extension = path.rsplit(".", 1)
            samples[key] = (extension, files[path][0])
            expected[f"{tar_name}#{key}"] = ("decode", files[path][1])
            corpus_path[f"{tar_name}#{key}"] = path
        write_webdataset_tar(root / tar_name, samples, "w:gz" if tar_name.endswith(".gz") else "w")
    photo = files["photos/china.jpg"][0]
    with tarfile.open(root / "hostile.tar", "w") as tar:
        add_member(tar, "../escape.jpg", photo)
        add_member(tar, "/etc/absolute.jpg", photo)
        add_member(tar, "symlink.jpg", kind=tarfile.SYMTYPE, linkname="/etc/passwd")
        add_member(tar, "hardlink.jpg", kind=tarfile.LNKTYPE, linkname="../escape.jpg")
        add_member(tar, "device.jpg", kind=tarfile.CHRTYPE)
        add_member(tar, "fifo.png", kind=tarfile.FIFOTYPE)
        add_member(tar, "label_only.json", b"{}")
        add_member(tar, "twice.jpg", photo)
        add_member(tar, "twice.jpg", photo)
        add_member(tar, "good.jpg", photo)
    expected |= {f"hostile.tar#{key}": ("read", reason) for key, reason in {
        "../escape": "unsafe_member_name", "/etc/absolute": "unsafe_member_name", "symlink": "link_member",
        "hardlink": "link_member", "device": "special_member", "fifo": "special_member",
        "label_only": "no_image_member", "twice": "duplicate_member"}.items()}
    expected["hostile.tar#good"] = ("decode", "ok")
    corpus_path["hostile.tar#good"] = "photos/china.jpg"
    (root / "nested" / "not_a_tar.tar").write_bytes(b"<html>an error page saved under a tar name</html>")
    expected["nested/not_a_tar.tar#"] = ("read", "unreadable_tar")
    packed.inputs["tar"] = root
    packed.overrides["tar"] = ["reader.kind=tar"]
    packed.expected["tar"], packed.corpus_path["tar"] = expected, corpus_path


def _pack_parquet_bytes(packed: PackedCorpus, root: Path, files: dict[str, tuple[bytes, str]]) -> None:
    """The corpus in two Parquet files of 4-row row groups; a null cell; a corrupt file; a file without the
    image column."""
    paths = sorted(files)
    root.mkdir(parents=True)
    expected, corpus_path = {}, {}
    for name, chunk in {"part-a.parquet": paths[:13], "more/part-b.parquet": paths[13:]}.items():
        images = [files[p][0] for p in chunk] + [None]
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"name": chunk + ["null"], "image": pa.array(images, pa.binary())}), root / name,
                       row_group_size=4)
        for index, path in enumerate(chunk):
            expected[f"{name}#{index}"] = ("decode", files[path][1])
            corpus_path[f"{name}#{index}"] = path
        expected[f"{name}#{len(chunk)}"] = ("read", "missing_image")
    (root / "broken.parquet").write_bytes(b"PAR1 but no footer")
    expected["broken.parquet#"] = ("read", "unreadable_parquet")
    pq.write_table(pa.table({"other": [b"x"]}), root / "other_columns.parquet")
    expected["other_columns.parquet#"] = ("read", "missing_column")
    packed.inputs["parquet_bytes"] = root
    packed.overrides["parquet_bytes"] = ["reader.kind=parquet_images", "reader.bytes_column=image"]
    packed.expected["parquet_bytes"], packed.corpus_path["parquet_bytes"] = expected, corpus_path


def _pack_parquet_uris(packed: PackedCorpus, root: Path, files: dict[str, tuple[bytes, str]]) -> None:
    """URIs of the corpus files relative to the corpus (the media root), then URIs that must be refused."""
    outside = root / "outside.jpg"
    root.mkdir(parents=True)
    outside.write_bytes(files["photos/china.jpg"][0])
    os.symlink(outside, packed.corpus / "link_out.jpg")
    packed.expected["image_folder"]["link_out.jpg"] = ("read", "outside_input_root")  # same escape, folder reader
    paths = sorted(files)
    hostile = {"../uris/outside.jpg": "unsafe_uri", str(outside): "unsafe_uri", "link_out.jpg": "unsafe_uri",
               "photos/missing.jpg": "unreadable", "photos": "unreadable"}
    uris = paths + [f"file://{packed.corpus / 'photos/flower.jpg'}"] + list(hostile)
    pq.write_table(pa.table({"uri": uris}), root / "uris.parquet", row_group_size=8)
    expected = {f"uris.parquet#{i}": ("decode", files[p][1]) for i, p in enumerate(paths)}
    corpus_path = {f"uris.parquet#{i}": p for i, p in enumerate(paths)}
    expected[f"uris.parquet#{len(paths)}"] = ("decode", "ok")
    corpus_path[f"uris.parquet#{len(paths)}"] = "photos/flower.jpg"
    for index, reason in enumerate(hostile.values(), start=len(paths) + 1):
        expected[f"uris.parquet#{index}"] = ("read", reason)
    packed.inputs["parquet_uris"] = root / "uris.parquet"
    packed.overrides["parquet_uris"] = ["reader.kind=parquet_images", "reader.uri_column=uri",
                                        f"reader.media_root={packed.corpus}"]
    packed.expected["parquet_uris"], packed.corpus_path["parquet_uris"] = expected, corpus_path


@pytest.fixture(scope="session")
def packed_corpus(tmp_path_factory: pytest.TempPathFactory) -> PackedCorpus:
    work = tmp_path_factory.mktemp("packed")
    corpus = work / "corpus"
    generate_demo_corpus(corpus, n_procedural=6, seed=5)
    labels = json.loads((corpus / "labels.json").read_text())
    files = {e["path"]: ((corpus / e["path"]).read_bytes(), e["expected"]) for e in labels["files"]}
    packed = PackedCorpus(corpus)
    _pack_folder(packed, files)
    _pack_tar(packed, work / "tars", files)
    _pack_parquet_bytes(packed, work / "parquet", files)
    _pack_parquet_uris(packed, work / "uris", files)
    return packed


def rows_by_upstream_id(out: Path) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for _, table in iter_shards(out):
        for row in table.to_pylist():
            assert row["upstream_id"] not in rows, f"duplicated row {row['upstream_id']}"
            rows[row["upstream_id"]] = row
    return rows


@pytest.fixture(scope="session")
def decoded_run(ray_local, packed_corpus: PackedCorpus, tmp_path_factory) -> Callable[[str], tuple[Path, dict]]:
    """The demo job (reader + decode_image) over one packed input kind: (output dir, manifest); run once."""
    runs: dict[str, tuple[Path, dict]] = {}

    def run(kind: str) -> tuple[Path, dict]:
        if kind not in runs:
            out = tmp_path_factory.mktemp(f"run-{kind}") / "out"
            job = load_job(JOBS_DIR / "demo.yaml", [f"input={packed_corpus.inputs[kind]}", f"output={out}",
                                                    "reader.shard_rows=7", *packed_corpus.overrides[kind]])
            runs[kind] = out, run_job(job, progress=False)
        return runs[kind]

    return run
