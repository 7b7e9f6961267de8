"""The parts of `make bench-peers` (benchmarks/peers/) that decide what is compared: the corpus's duplicates,
the threshold translation into Data-Juicer's operators and the decision comparison (the interleaving is the
harness's, tested in test_bench_harness.py). The timed runs need the peer environments and are not tests."""

from __future__ import annotations

import hashlib

import pyarrow as pa
from PIL import Image

from benchmarks.peers import data_juicer
from benchmarks.peers.corpus import write_peer_corpus
from data_engine.job import StageSpec


def test_peer_corpus_copies_are_what_the_labels_say(tmp_path):
    files = write_peer_corpus(tmp_path, 20, copy_fraction=0.5, seed=3)
    images = tmp_path / "images"
    assert len(files) == 20 and len({entry["file"] for entry in files}) == 20
    kinds = [entry["kind"] for entry in files]
    assert kinds.count("exact_copy") == 5 and kinds.count("reencoded_copy") == 5
    digest = {entry["file"]: hashlib.md5((images / entry["file"]).read_bytes()).hexdigest() for entry in files}
    for entry in files:
        if entry["kind"] == "exact_copy":
            assert digest[entry["file"]] == digest[entry["copy_of"]]
        elif entry["kind"] == "reencoded_copy":
            assert digest[entry["file"]] != digest[entry["copy_of"]]
            sizes = {Image.open(images / name).size for name in (entry["file"], entry["copy_of"])}
            assert len(sizes) == 1
    uniques = [digest[entry["file"]] for entry in files if entry["kind"] == "unique"]
    assert len(set(uniques)) == len(uniques)
    assert write_peer_corpus(tmp_path, 20, copy_fraction=0.5, seed=3) == files  # reused, not redrawn


def _dj_keeps(config: dict, width: int, height: int, size: int) -> bool:
    """Data-Juicer's keep rules for its three filters, as its operators document them (inclusive ranges)."""
    ops = {name: args for op in config["process"] for name, args in op.items()}
    shape, ratio, file_size = ops["image_shape_filter"], ops["image_aspect_ratio_filter"], ops["image_size_filter"]
    return (width >= shape["min_width"] and height >= shape["min_height"]
            and ratio["min_ratio"] <= width / height <= ratio["max_ratio"] and size <= int(file_size["max_size"]))


def test_data_juicer_config_keeps_exactly_what_our_decode_stage_keeps(tmp_path):
    job = data_juicer.our_job(tmp_path, tmp_path / "out", cores=2, images=100)
    decode = next(stage for stage in job["stages"] if stage["op"] == "decode_image")
    stage = StageSpec(op="decode_image", config=decode["config"]).build()
    config = data_juicer.dj_config(tmp_path / "data.jsonl", tmp_path / "out.jsonl", cores=2)
    sides = [100, 127, 128, 129, 130, 200, 320, 322, 323, 324, 800]
    cases = [(w, h) for w in sides for h in sides]
    scores = pa.table({"width": [w for w, _ in cases], "height": [h for _, h in cases],
                       "brightness": pa.array([128.0] * len(cases), pa.float32())})
    ours = [reason is None for reason in stage.decide(scores)]
    assert ours == [_dj_keeps(config, w, h, 0) for w, h in cases]
    assert any(ours) and not all(ours)
    limit = decode["config"]["max_file_bytes"]
    assert _dj_keeps(config, 200, 200, limit) and not _dj_keeps(config, 200, 200, limit + 1)
    assert [stage["op"] for stage in job["stages"]] == ["decode_image", "dedup"]


def test_compare_lists_each_file_the_two_systems_decide_differently():
    files = [{"file": "a.jpg", "kind": "unique", "copy_of": None},
             {"file": "b.jpg", "kind": "reencoded_copy", "copy_of": "a.jpg"},
             {"file": "c.jpg", "kind": "unique", "copy_of": None},
             {"file": "d.jpg", "kind": "exact_copy", "copy_of": "c.jpg"}]
    ours = {"a.jpg": None, "b.jpg": "near_duplicate", "c.jpg": None, "d.jpg": "exact_duplicate"}
    result = data_juicer.compare(files, ours, {"a.jpg", "b.jpg", "c.jpg"})
    assert (result["kept_ours"], result["kept_data_juicer"], result["decided_differently"]) == (2, 3, 1)
    assert result["differences"] == {"reencoded_copy: ours near_duplicate, Data-Juicer kept": 1}
    assert result["difference_examples"]["reencoded_copy: ours near_duplicate, Data-Juicer kept"] == [
        "b.jpg (copy of a.jpg)"]

