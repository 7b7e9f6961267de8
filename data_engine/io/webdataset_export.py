"""Export the accepted images of a finished shard directory to WebDataset tar shards.

Each accepted row becomes two members, `<id>.<ext>` (the stored image bytes) and `<id>.json` (provenance,
size, hashes and every score column), in shard order, `samples_per_tar` samples per tar
(`shard-000000.tar`, ...). Each tar is written under a temporary name and renamed when complete, with fixed
member metadata, so the same shards always give byte-identical tars; a rerun into the same directory keeps the
tars that are complete and writes the rest. `_webdataset.json` (written last) lists the tars and what was
left out and why (rejected rows, rows without stored bytes).

CLI: `python -m data_engine.io.webdataset_export SHARD_DIR OUT_DIR [--samples-per-tar N]` (SHARD_DIR may be a
storage URI; the tars are written to a local OUT_DIR)
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import tarfile
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow.compute as pc

from data_engine.schemas import DECISION_FIELDS, SchemaError, get_schema
from data_engine.shards import ShardDirError, atomic_write_json, iter_shards, read_manifest
from data_engine.storage import Location, StorageError, as_location

EXPORT_MANIFEST = "_webdataset.json"
EXPORT_CLAIM = "_webdataset_job.json"
_TEMP_PREFIX = ".tmp-"
_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
_LEFT_OUT_OF_SIDECAR = {"image_bytes"} | {f.name for f in DECISION_FIELDS}


class ExportError(RuntimeError):
    """The export cannot start (shards without images, an output directory of another export)."""


def tar_name(index: int) -> str:
    return f"shard-{index:06d}.tar"


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    return info


def _json_value(value: Any) -> Any:
    """Sidecar values: NaN/inf have no JSON spelling (null), bytes are not metadata (dropped by the caller)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def sample_sidecar(row: dict[str, Any]) -> bytes:
    fields = {k: _json_value(v) for k, v in row.items()
              if k not in _LEFT_OUT_OF_SIDECAR and not isinstance(v, bytes)}
    return json.dumps(fields, sort_keys=True, ensure_ascii=False).encode()


class _TarSequence:
    """Fills tars of `samples_per_tar` samples in order; a tar already complete on disk is not rewritten."""

    def __init__(self, out_dir: Path, samples_per_tar: int) -> None:
        self.out_dir, self.samples_per_tar = out_dir, samples_per_tar
        self.index, self.count_in_tar = -1, samples_per_tar
        self.tar: tarfile.TarFile | None = None
        self.handle: BinaryIO | None = None
        self.temp: Path | None = None
        self.written: list[dict[str, Any]] = []

    def add(self, key: str, extension: str, image: bytes, sidecar: bytes) -> None:
        if self.count_in_tar == self.samples_per_tar:
            self._start_next()
        self.count_in_tar += 1
        self.written[-1]["samples"] += 1
        if self.tar is not None:
            for name, data in ((f"{key}.{extension}", image), (f"{key}.json", sidecar)):
                self.tar.addfile(_member(name, len(data)), io.BytesIO(data))

    def _start_next(self) -> None:
        self._finish_current()
        self.index, self.count_in_tar = self.index + 1, 0
        name = tar_name(self.index)
        self.written.append({"file": name, "samples": 0})
        if (self.out_dir / name).exists():
            return
        self.temp = self.out_dir / f"{_TEMP_PREFIX}{name}.{uuid.uuid4().hex}"
        self.handle = open(self.temp, "wb")
        self.tar = tarfile.open(fileobj=self.handle, mode="w", format=tarfile.PAX_FORMAT)

    def _finish_current(self) -> None:
        if self.tar is None:
            return
        self.tar.close()
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.temp, self.out_dir / tar_name(self.index))
        self.tar = self.handle = self.temp = None

    def close(self) -> list[dict[str, Any]]:
        self._finish_current()
        fd = os.open(self.out_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return self.written


def _claim(out_dir: Path, claim: dict[str, Any]) -> None:
    """One output directory per (source shards, tar size): refuse to mix tars of two exports."""
    path = out_dir / EXPORT_CLAIM
    if path.exists():
        existing = json.loads(path.read_text())
        if existing != claim:
            raise ExportError(f"{out_dir} holds an export of {existing}; this one is {claim}: use another OUT_DIR")
        return
    foreign = sorted(p.name for p in out_dir.iterdir() if not p.name.startswith(_TEMP_PREFIX))
    if foreign:
        raise ExportError(f"{out_dir} is not empty ({', '.join(foreign[:5])}); export into a new directory")
    atomic_write_json(path, claim)


def export_webdataset(shard_dir: str | Path | Location, out_dir: Path, *,
                      samples_per_tar: int = 1000) -> dict[str, Any]:
    """Write the accepted images of `shard_dir` (a directory or a storage URI) as WebDataset tars in the local
    directory `out_dir`; returns the export manifest."""
    shard_dir = as_location(shard_dir)
    if samples_per_tar <= 0:
        raise ExportError(f"samples_per_tar must be positive, got {samples_per_tar}")
    source = read_manifest(shard_dir)  # only a finished job's shards are exported
    schema = get_schema(source["schema"]["name"])
    if "image_bytes" not in {f.name for f in schema.fields}:
        raise ExportError(f"{shard_dir}: {schema.name} shards have no image_bytes column to export")
    out_dir.mkdir(parents=True, exist_ok=True)
    _claim(out_dir, {"source": str(shard_dir), "source_config_hash": source["config_hash"],
                     "samples_per_tar": samples_per_tar})
    for stale in out_dir.glob(f"{_TEMP_PREFIX}*"):
        stale.unlink()
    tars = _TarSequence(out_dir, samples_per_tar)
    left_out: Counter[str] = Counter()
    for _, table in iter_shards(shard_dir):
        accepted = table.filter(pc.is_null(table["reject_reason"]))
        left_out["rejected"] += table.num_rows - accepted.num_rows
        for row in accepted.to_pylist(maps_as_pydicts="strict"):
            image, image_format = row["image_bytes"], row.get("image_format")
            if image is None or image_format is None:
                left_out["no_stored_image"] += 1
                continue
            tars.add(row["id"], _EXTENSIONS.get(image_format, image_format.lower()), image, sample_sidecar(row))
    manifest = {"source": str(shard_dir), "source_job": source.get("job"),
                "source_config_hash": source["config_hash"], "samples_per_tar": samples_per_tar,
                "tars": tars.close(), "left_out": dict(sorted((k, v) for k, v in left_out.items() if v))}
    manifest["samples"] = sum(t["samples"] for t in manifest["tars"])
    atomic_write_json(out_dir / EXPORT_MANIFEST, manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export accepted images of a shard directory to WebDataset tars.")
    parser.add_argument("shard_dir", help="shard directory, or a storage URI (endpoint, allow-list: environment)")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--samples-per-tar", type=int, default=1000)
    args = parser.parse_args(argv)
    try:
        manifest = export_webdataset(args.shard_dir, args.out_dir, samples_per_tar=args.samples_per_tar)
    except (ShardDirError, SchemaError, ExportError, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    left_out = ", ".join(f"{k}={v}" for k, v in manifest["left_out"].items()) or "nothing"
    print(f"{manifest['samples']} samples in {len(manifest['tars'])} tars -> {args.out_dir}; left out: {left_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
