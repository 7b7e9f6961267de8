"""edit_sources: each adapter's round trip, from the layout a source ships in through the reader to triplet
rows and back: the images are the same bytes, the instruction the source's, the labels and the edit area
the ones written down here by hand for each fixture row; bad rows are rejects with their reasons."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from tests.editing.edit_fixtures import (box_mask, write_external, write_spatial_edit_shard, write_text_edit_shard,
                      write_video_pair_shard)
from PIL import Image

from data_engine.editing.adapters import EditSourcesConfig, EditSourcesReader
from data_engine.editing.triplet import EDIT_TRIPLET, edit_area
from data_engine.readers import InputError
from data_engine.schemas import validate_table


def read_all(root: Path, sources: list[dict]) -> list[dict]:
    reader = EditSourcesReader(EditSourcesConfig(sources=sources, seed=0, chinese_fraction=0.5))
    items = reader.list_items(str(root))
    table = reader.read_items(str(root), items)
    assert table.schema.equals(EDIT_TRIPLET.arrow(), check_metadata=True)
    # what a job writes is read back as an edit_triplet shard
    validate_table(pa.Table.from_pylist(table.to_pylist(), schema=EDIT_TRIPLET.arrow()), where="round trip")
    return table.to_pylist()


def labels(row: dict) -> tuple:
    return (row["task_category"], row["granularity"], row["input_condition"], row["language"], row["domain"],
            row["source_kind"])


def test_spatial_edit_round_trip(tmp_path: Path) -> None:
    upstream = write_spatial_edit_shard(tmp_path / "render" / "spatial_edit")
    rows = read_all(tmp_path, [{"adapter": "spatial_edit", "path": "render/spatial_edit"}])
    assert len(rows) == 3  # the upstream reject is not read
    translate, yaw, odd = ({r["upstream_id"]: r for r in rows}[upstream[n]["id"]] for n in (0, 1, 3))
    assert translate["source_image"]["bytes"] == upstream[0]["source_image"]["bytes"]
    assert translate["target_image"]["bytes"] == upstream[0]["target_image"]["bytes"]
    assert translate["instruction"] == upstream[0]["instruction"]
    assert labels(translate) == ("object_move", "object", "text_visual_cue", "en", "render_3d", "spatial_render")
    assert translate["edit_region"] == [50, 20, 70, 40]  # the inclusive box, right/bottom made exclusive
    area = edit_area(translate, (64, 96))
    assert np.array_equal(area, (box_mask((10, 20, 30, 40)) > 0) | (box_mask((50, 20, 70, 40)) > 0))
    assert json.loads(translate["metadata"])["edit_operation"] == "object:translate"
    assert yaw["instruction"] == upstream[1]["instruction"]
    assert labels(yaw) == ("viewpoint", "global", "text", "zh", "render_3d", "spatial_render")
    assert yaw["edit_region"] is None and yaw["edit_mask"] is None
    assert odd["reject_reason"] == "unknown_label" and "sideways" in odd["reject_detail"]
    assert odd["reject_stage"] == "read"


def test_text_edit_round_trip(tmp_path: Path) -> None:
    upstream = write_text_edit_shard(tmp_path / "text_render" / "edits")
    [row] = read_all(tmp_path, [{"adapter": "text_edit", "path": "text_render/edits"}])
    assert row["source_image"]["sha256"] == upstream[0]["source_image"]["sha256"]
    assert row["target_image"]["bytes"] == upstream[0]["target_image"]["bytes"]
    assert row["instruction"] == 'Replace "OPEN" with "CLOSED"'
    assert labels(row) == ("text", "region", "text", "en", "graphic_design", "text_render")
    assert row["edit_region"] == [28, 8, 62, 22]
    assert json.loads(row["metadata"])["new_text"] == "CLOSED" and "blueprint" not in json.loads(row["metadata"])
    assert row["upstream_id"] == upstream[0]["id"] and row["license"] == "CC0"


def test_video_pair_round_trip(tmp_path: Path) -> None:
    upstream = write_video_pair_shard(tmp_path / "video_pairs")
    rows = {json.loads(r["metadata"])["pair_id"]: r for r in
            read_all(tmp_path, [{"adapter": "video_pairs", "path": "video_pairs", "domain": "illustration"}])}
    assert set(rows) == {"v0-s0-p0", "v0-s1-p0", "v0-s2-p0"}  # the scene-change reject is not read
    for source in upstream[:3]:
        row = rows[source["pair_id"]]
        assert row["source_image"]["bytes"] == source["source_image"]
        assert row["target_image"]["bytes"] == source["target_image"]
        assert row["instruction"] == (source["instruction_zh"] if row["language"] == "zh" else source["instruction"])
        assert json.loads(row["metadata"])["source_timestamp_s"] == source["source_timestamp_s"]
        assert row["source_kind"] == "video" and row["domain"] == "illustration" and row["input_condition"] == "text"
    assert rows["v0-s1-p0"]["language"] == "en"  # no Chinese instruction to draw
    assert [rows[p]["task_category"] for p in ("v0-s0-p0", "v0-s1-p0", "v0-s2-p0")] == ["object_move", "add", "remove"]
    # the language draw is by row: another fraction moves rows, the same one does not
    config = EditSourcesConfig(sources=[{"adapter": "video_pairs", "path": "video_pairs"}], chinese_fraction=1.0)
    reader = EditSourcesReader(config)
    every = reader.read_items(str(tmp_path), reader.list_items(str(tmp_path))).to_pylist()
    assert sorted(r["language"] for r in every) == ["en", "zh", "zh"]


@pytest.mark.parametrize("layout, directory", [("instructpix2pix", "ip2p"), ("magicbrush", "magicbrush"),
                                                ("ultraedit", "ultraedit"), ("omniedit", "omniedit")])
def test_external_layout_round_trip(tmp_path: Path, layout: str, directory: str) -> None:
    shipped = write_external(tmp_path / "external")[layout]
    rows = read_all(tmp_path, [{"adapter": "external", "path": f"external/{directory}", "layout": layout,
                                "license": "CC-BY-4.0"}])
    assert len(rows) == len(shipped) and all(r["license"] == "CC-BY-4.0" for r in rows)
    expected = {  # per shipped row: (task, granularity) or the reject reason, labelled by hand
        "instructpix2pix": [("style", "global"), "empty_instruction"],
        "magicbrush": [("add", "region"), "bad_image_path"],
        "ultraedit": [("attribute", "object")],
        "omniedit": [("background", "global")]}[layout]
    root = tmp_path / "external" / directory
    for row, shipped_row, want in zip(rows, shipped, expected):
        if isinstance(want, str):
            assert row["reject_reason"] == want and row["reject_stage"] == "read"
            continue
        assert row["reject_reason"] is None
        assert (row["task_category"], row["granularity"]) == want
        assert (row["language"], row["domain"], row["source_kind"]) == ("en", "photo", "external")
        source_field = {"instructpix2pix": "original_image", "magicbrush": "source_img", "ultraedit": "source_image",
                        "omniedit": "src_img"}[layout]
        value = shipped_row[source_field]
        expected_bytes = value["bytes"] if isinstance(value, dict) else (root / value).read_bytes()
        assert row["source_image"]["bytes"] == expected_bytes
        instruction = {"instructpix2pix": "edit_prompt", "magicbrush": "instruction", "ultraedit": "edit_prompt",
                       "omniedit": "edited_prompt_list"}[layout]
        wanted = shipped_row[instruction]
        assert row["instruction"] == (wanted[0] if isinstance(wanted, list) else wanted)
    if layout == "magicbrush":
        mask = np.asarray(Image.open(io.BytesIO(rows[0]["edit_mask"]["bytes"])))
        assert np.array_equal(mask > 0, box_mask((56, 6, 94, 34)) > 0)
        assert rows[0]["upstream_id"] == "242679/1"
    if layout == "omniedit":
        assert json.loads(rows[0]["metadata"])["o_score"] == 8.5 and rows[0]["upstream_id"] == "oe-001"


def test_missing_source_is_an_error_unless_optional(tmp_path: Path) -> None:
    write_text_edit_shard(tmp_path / "edits")
    with pytest.raises(InputError, match="video_pairs"):
        EditSourcesReader(EditSourcesConfig(sources=[{"adapter": "video_pairs", "path": "nowhere"}])).list_items(
            str(tmp_path))
    optional = EditSourcesConfig(sources=[{"adapter": "video_pairs", "path": "nowhere", "required": False},
                                          {"adapter": "text_edit", "path": "edits"}])
    assert len(EditSourcesReader(optional).list_items(str(tmp_path))) == 1
    with pytest.raises(ValueError, match="layout"):
        EditSourcesConfig(sources=[{"adapter": "external", "path": "x"}])
