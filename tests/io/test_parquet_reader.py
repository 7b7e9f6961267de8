"""The parquet_images reader: footer-only listing, row-group-selective reads, URIs confined to media_root."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_engine.io.parquet_reader import ParquetImagesConfig, ParquetImagesReader
from data_engine.job import JobConfigError
from pipelines.jobfile import JOBS_DIR, load_job


def reasons(table) -> dict[str, str | None]:
    return dict(zip(table.column("upstream_id").to_pylist(), table.column("reject_reason").to_pylist()))


@pytest.fixture()
def spied_reads(monkeypatch):
    """Which row groups and columns the reader asks Parquet for (a spy around the real reads)."""
    calls: list[tuple[str, list[int] | None, list[str] | None]] = []
    real_groups, real_read = pq.ParquetFile.read_row_groups, pq.ParquetFile.read

    def read_row_groups(self, row_groups, columns=None, **kwargs):
        calls.append(("row_groups", list(row_groups), columns))
        return real_groups(self, row_groups, columns=columns, **kwargs)

    def read(self, columns=None, **kwargs):
        calls.append(("all", None, columns))
        return real_read(self, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", read_row_groups)
    monkeypatch.setattr(pq.ParquetFile, "read", read)
    return calls


def test_listing_uses_row_counts_and_a_shard_reads_only_its_row_groups(tmp_path, spied_reads):
    images = [bytes([i]) * (i + 1) for i in range(10)]
    pq.write_table(pa.table({"img": images, "caption": [f"c{i}" for i in range(10)]}), tmp_path / "t.parquet",
                   row_group_size=3)
    reader = ParquetImagesReader(ParquetImagesConfig(bytes_column="img"))
    items = reader.list_items(str(tmp_path))
    assert items == [f"t.parquet#{i}" for i in range(10)] and spied_reads == []
    shard = ["t.parquet#4", "t.parquet#5", "t.parquet#9"]  # row groups 1 (rows 3-5) and 3 (row 9)
    table = reader.read_items(str(tmp_path), shard)
    assert table.column("image_bytes").to_pylist() == [images[4], images[5], images[9]]
    assert table.column("upstream_id").to_pylist() == shard
    assert spied_reads == [("row_groups", [1, 3], ["img"])]


def test_uris_resolve_only_under_the_media_root(tmp_path):
    media = tmp_path / "media"
    (media / "a").mkdir(parents=True)
    (media / "a" / "x.jpg").write_bytes(b"inside")
    (tmp_path / "secret.jpg").write_bytes(b"outside")
    (media / "escape.jpg").symlink_to(tmp_path / "secret.jpg")
    uris = ["a/x.jpg", f"file://{media}/a/x.jpg", "../secret.jpg", str(tmp_path / "secret.jpg"), "escape.jpg",
            "a/gone.jpg", "", None]
    pq.write_table(pa.table({"path": pa.array(uris, pa.string())}), tmp_path / "refs.parquet")
    reader = ParquetImagesReader(ParquetImagesConfig(uri_column="path", media_root=str(media)))
    table = reader.read_items(str(tmp_path / "refs.parquet"), reader.list_items(str(tmp_path / "refs.parquet")))
    assert list(reasons(table).values()) == [None, None, "unsafe_uri", "unsafe_uri", "unsafe_uri", "unreadable",
                                             "unsafe_uri", "missing_image"]
    assert table.column("image_bytes").to_pylist()[:2] == [b"inside", b"inside"]
    assert b"outside" not in table.column("image_bytes").to_pylist()
    assert table.column("image_uri").to_pylist()[:3] == uris[:3]


def test_unusable_files_become_one_row_each(tmp_path):
    pq.write_table(pa.table({"img": pa.array([1, 2])}), tmp_path / "ints.parquet")
    pq.write_table(pa.table({"other": [b"x"]}), tmp_path / "no_column.parquet")
    (tmp_path / "garbage.parquet").write_bytes(b"not parquet at all")
    reader = ParquetImagesReader(ParquetImagesConfig(bytes_column="img"))
    table = reader.read_items(str(tmp_path), reader.list_items(str(tmp_path)))
    assert reasons(table) == {"garbage.parquet#": "unreadable_parquet", "ints.parquet#": "bad_column_type",
                              "no_column.parquet#": "missing_column"}
    assert all("\n" not in detail for detail in table.column("reject_detail").to_pylist())


def test_rows_gone_since_listing_are_rows_with_a_reason(tmp_path):
    pq.write_table(pa.table({"img": [b"a", b"b"]}), tmp_path / "t.parquet")
    reader = ParquetImagesReader(ParquetImagesConfig(bytes_column="img"))
    table = reader.read_items(str(tmp_path), ["t.parquet#1", "t.parquet#7"])
    assert reasons(table) == {"t.parquet#1": None, "t.parquet#7": "row_missing"}


@pytest.mark.parametrize(("overrides", "message"), [
    ([], "set exactly one of bytes_column and uri_column"),
    (["reader.bytes_column=a", "reader.uri_column=b"], "set exactly one"),
    (["reader.uri_column=b"], "uri_column needs media_root"),
])
def test_job_config_names_the_missing_image_source(overrides, message):
    with pytest.raises(JobConfigError, match=message):
        load_job(JOBS_DIR / "demo.yaml", ["reader.kind=parquet_images", *overrides])
