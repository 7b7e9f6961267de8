from __future__ import annotations

import pyarrow as pa
import pytest

from data_engine.paths import UnsafePathError, resolve_media_uri
from data_engine.schemas import IMAGE_SAMPLE, SchemaError, conform_table, get_schema, schema_names, validate_table


def test_media_uri_resolves_inside_root(tmp_path):
    (tmp_path / "a").mkdir()
    assert resolve_media_uri("a/b.jpg", tmp_path) == (tmp_path / "a" / "b.jpg").resolve()
    assert resolve_media_uri(f"file://{tmp_path}/a/b.jpg", tmp_path) == (tmp_path / "a" / "b.jpg").resolve()


@pytest.mark.parametrize("uri", ["../etc/passwd", "a/../../x", "/etc/passwd", "file:///etc/passwd", "", "a\x00b"])
def test_media_uri_escapes_are_rejected(tmp_path, uri):
    with pytest.raises(UnsafePathError):
        resolve_media_uri(uri, tmp_path)


def test_symlink_out_of_root_is_rejected(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to("/etc")
    with pytest.raises(UnsafePathError, match="outside"):
        resolve_media_uri("link/passwd", root)


def test_every_schema_has_provenance_and_decision_columns():
    for name in schema_names():  # those a subpackage owns (edit_triplet) too
        names = get_schema(name).arrow().names
        for column in ("id", "source_dataset", "upstream_id", "license", "reject_reason", "reject_stage"):
            assert column in names, (name, column)


def test_conform_names_the_bad_column():
    schema = IMAGE_SAMPLE.arrow((pa.field("score", pa.float32()),))
    table = pa.table({name: pa.nulls(1, schema.field(name).type) for name in schema.names})
    with pytest.raises(SchemaError, match="'id' has 1 nulls"):
        conform_table(table, schema, where="t")
    with pytest.raises(SchemaError, match="missing columns \\['score'\\]"):
        conform_table(table.drop_columns(["score"]), schema, where="t")
    with pytest.raises(SchemaError, match="undeclared columns \\['extra'\\]"):
        conform_table(table.append_column("extra", pa.array([1])), schema, where="t")
    with pytest.raises(SchemaError, match="redefine base columns"):
        IMAGE_SAMPLE.arrow((pa.field("width", pa.int64()),))


def test_validate_reads_schema_metadata():
    schema = IMAGE_SAMPLE.arrow()
    table = pa.table({name: pa.nulls(0, schema.field(name).type) for name in schema.names}, schema=schema)
    assert validate_table(table, where="t") is IMAGE_SAMPLE
    with pytest.raises(SchemaError, match="no joyai.schema metadata"):
        validate_table(table.replace_schema_metadata({}), where="t")
