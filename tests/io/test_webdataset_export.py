"""WebDataset export of decoded shards, read back through the tar reader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import pytest

from data_engine.io.tar_reader import TarConfig, TarReader
from data_engine.io.webdataset_export import EXPORT_MANIFEST, ExportError, export_webdataset
from tests.conftest import REPO
from tests.io.conftest import rows_by_upstream_id


@pytest.fixture(scope="module")
def decoded(decoded_run):
    out, _ = decoded_run("tar")
    return out, rows_by_upstream_id(out)


def test_export_round_trips_through_the_tar_reader(decoded, tmp_path):
    shards, rows = decoded
    accepted = {row["id"]: row for row in rows.values() if row["reject_reason"] is None}
    manifest = export_webdataset(shards, tmp_path / "wds", samples_per_tar=4)
    assert manifest["samples"] == len(accepted) and all(t["samples"] <= 4 for t in manifest["tars"])
    assert manifest["left_out"] == {"rejected": len(rows) - len(accepted)}
    reader = TarReader(TarConfig())
    items = reader.list_items(str(tmp_path / "wds"))
    table = reader.read_items(str(tmp_path / "wds"), items)
    assert table.column("reject_reason").null_count == table.num_rows == len(accepted)
    for item, data in zip(items, table.column("image_bytes").to_pylist()):
        row_id = item.split("#")[1]
        assert data == accepted[row_id]["image_bytes"]
    with tarfile.open(tmp_path / "wds" / manifest["tars"][0]["file"]) as tar:
        first = tar.getnames()[0]
        sidecar = json.load(tar.extractfile(first.rsplit(".", 1)[0] + ".json"))
    row = accepted[first.split(".")[0]]
    assert first.endswith({"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}[row["image_format"]])
    for column in ("id", "upstream_id", "source_dataset", "license", "sha256", "width", "brightness", "sharpness"):
        assert sidecar[column] == pytest.approx(row[column]), column
    assert "image_bytes" not in sidecar and "reject_reason" not in sidecar


def test_export_is_deterministic_and_resumes_without_rewriting_complete_tars(decoded, tmp_path):
    shards, _ = decoded
    first = export_webdataset(shards, tmp_path / "a", samples_per_tar=5)
    names = [t["file"] for t in first["tars"]]
    mtimes = {name: (tmp_path / "a" / name).stat().st_mtime_ns for name in names}
    (tmp_path / "a" / names[-1]).unlink()
    (tmp_path / "a" / EXPORT_MANIFEST).unlink()
    (tmp_path / "a" / ".tmp-shard-000009.tar.dead").write_bytes(b"left by a killed run")
    assert export_webdataset(shards, tmp_path / "a", samples_per_tar=5) == first
    assert sorted(p.name for p in (tmp_path / "a").glob("*.tar")) == names
    assert all((tmp_path / "a" / n).stat().st_mtime_ns == mtimes[n] for n in names[:-1])
    assert not list((tmp_path / "a").glob(".tmp-*"))
    export_webdataset(shards, tmp_path / "b", samples_per_tar=5)
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in names)
    with pytest.raises(ExportError, match="samples_per_tar"):
        export_webdataset(shards, tmp_path / "a", samples_per_tar=6)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "someone_elses.tar").write_bytes(b"")
    with pytest.raises(ExportError, match="not empty"):
        export_webdataset(shards, tmp_path / "c", samples_per_tar=5)


def test_cli_exports_and_reports_bad_input_in_one_line(decoded, tmp_path):
    shards, _ = decoded
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "data_engine.io.webdataset_export"]
    done = subprocess.run([*command, str(shards), str(tmp_path / "wds")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "samples in" in done.stdout and (tmp_path / "wds" / EXPORT_MANIFEST).is_file()
    failed = subprocess.run([*command, str(tmp_path / "nothing"), str(tmp_path / "x")], capture_output=True,
                            text=True, env=env, timeout=120)
    assert failed.returncode == 2 and failed.stderr.count("\n") == 1 and "no manifest" in failed.stderr
