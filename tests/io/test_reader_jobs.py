"""run_job with each reader kind through decode_image on local Ray, checked against the packed ground truth."""

from __future__ import annotations

import pytest

from tests.io.conftest import THRESHOLD_REASONS, rows_by_upstream_id

KINDS = ("image_folder", "tar", "parquet_bytes", "parquet_uris")


@pytest.mark.parametrize("kind", KINDS)
def test_every_item_is_one_row_with_its_expected_outcome(kind, packed_corpus, decoded_run):
    out, manifest = decoded_run(kind)
    rows = rows_by_upstream_id(out)
    expected = packed_corpus.expected[kind]
    assert set(rows) == set(expected)
    for upstream_id, (step, outcome) in expected.items():
        row = rows[upstream_id]
        if step == "read":
            assert (row["reject_stage"], row["reject_reason"]) == ("read", outcome), upstream_id
            assert row["image_bytes"] is None and row["reject_detail"], upstream_id
        elif outcome == "ok":
            assert row["reject_reason"] in THRESHOLD_REASONS, (upstream_id, row["reject_reason"], row["reject_detail"])
            assert row["width"] > 0 and len(row["sha256"]) == 64
        else:
            assert (row["reject_stage"], row["reject_reason"]) == ("decode_image", outcome), upstream_id
    read_rejects = sum(1 for step, _ in expected.values() if step == "read")
    assert manifest["rows_in"] == manifest["rows_written"] == len(expected)
    assert sum(n for key, n in manifest["rejects"].items() if key.startswith("read:")) == read_rejects


@pytest.mark.parametrize("kind", KINDS[1:])
def test_same_images_give_the_same_rows_as_the_folder_reader(kind, packed_corpus, decoded_run):
    """Bytes travel unchanged through every reader: same hashes, sizes, scores and decisions per corpus file."""
    folder = rows_by_upstream_id(decoded_run("image_folder")[0])
    rows = rows_by_upstream_id(decoded_run(kind)[0])
    compared = ("sha256", "width", "height", "image_bytes", "brightness", "sharpness", "reject_reason")
    for upstream_id, corpus_path in packed_corpus.corpus_path[kind].items():
        assert {c: rows[upstream_id][c] for c in compared} == {c: folder[corpus_path][c] for c in compared}, upstream_id


def test_parquet_uri_rows_keep_the_reference(packed_corpus, decoded_run):
    rows = rows_by_upstream_id(decoded_run("parquet_uris")[0])
    assert rows["uris.parquet#0"]["image_uri"] == packed_corpus.corpus_path["parquet_uris"]["uris.parquet#0"]
    assert all(row["image_uri"] for row in rows.values())
