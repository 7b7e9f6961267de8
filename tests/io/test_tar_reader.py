"""The tar reader on hand-made archives: WebDataset grouping, hostile and broken members, one pass per tar."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from data_engine.io.tar_reader import TarConfig, TarReader, sample_key
from data_engine.readers import InputError, row_id
from tests.io.conftest import add_member, write_webdataset_tar

JPEG, PNG = b"\xff\xd8\xff" + b"j" * 700, b"\x89PNG\r\n\x1a\n" + b"p" * 300


def reasons(table) -> dict[str, str | None]:
    return dict(zip(table.column("upstream_id").to_pylist(), table.column("reject_reason").to_pylist()))


def test_webdataset_keys_split_at_the_first_dot_of_the_file_name():
    assert sample_key("a/b.c/x.seg.PNG") == ("a/b.c/x", "seg.png")
    assert sample_key("README") == ("README", "")


def test_samples_take_the_preferred_image_field_and_ignore_other_fields(tmp_path):
    with tarfile.open(tmp_path / "s.tar", "w") as tar:
        for name, data in (("k1.json", b"{}"), ("k1.png", PNG), ("k1.jpg", JPEG), ("k1.seg.png", b"mask"),
                           ("dir/k2.PNG", PNG), ("dir/k2.txt", b"caption")):
            add_member(tar, name, data)
    reader = TarReader(TarConfig(image_fields=("jpg", "png"), source_dataset="web"))
    items = reader.list_items(str(tmp_path / "s.tar"))
    assert items == ["s.tar#dir/k2", "s.tar#k1"]
    table = reader.read_items(str(tmp_path / "s.tar"), items)
    assert table.column("image_bytes").to_pylist() == [PNG, JPEG]
    assert table.column("id").to_pylist() == [row_id("web", "s.tar#dir/k2"), row_id("web", "s.tar#k1")]
    assert table.schema.metadata[b"joyai.schema"] == b"image_sample"


def test_broken_archives_become_rows_and_keep_what_is_readable(tmp_path):
    write_webdataset_tar(tmp_path / "whole.tar", {"a": ("jpg", JPEG), "big": ("jpg", JPEG * 3)})
    whole = (tmp_path / "whole.tar").read_bytes()
    (tmp_path / "cut_in_member.tar").write_bytes(whole[:512 + 300])  # header of a.jpg, then part of its data
    corrupt = bytearray(whole)
    # a.jpg: header + 2 data blocks; a.json: header + 1 data block; big.jpg's header starts at block 5
    corrupt[5 * 512 + 100:5 * 512 + 110] = b"\x01" * 10
    (tmp_path / "bad_header.tar").write_bytes(bytes(corrupt))
    (tmp_path / "empty.tar").write_bytes(b"")
    write_webdataset_tar(tmp_path / "zipped.tgz", {"z": ("png", PNG)}, "w:gz")
    (tmp_path / "cut.tar.gz").write_bytes((tmp_path / "zipped.tgz").read_bytes()[:40])
    reader = TarReader(TarConfig(max_member_bytes=1000))
    items = reader.list_items(str(tmp_path))
    table = reader.read_items(str(tmp_path), items)
    got = reasons(table)
    details = dict(zip(got, table.column("reject_detail").to_pylist()))
    assert got == {
        "bad_header.tar#": "unreadable_tar", "bad_header.tar#a": None,
        "cut.tar.gz#": "unreadable_tar",
        "cut_in_member.tar#": "unreadable_tar", "cut_in_member.tar#a": "unreadable_member",
        "empty.tar#": "unreadable_tar",
        "whole.tar#a": None, "whole.tar#big": "member_too_large",
        "zipped.tgz#z": None,
    }
    assert "header at byte 2560" in details["bad_header.tar#"]
    assert all("\n" not in (detail or "") for detail in details.values())


def test_hostile_members_are_never_read(tmp_path):
    with tarfile.open(tmp_path / "h.tar", "w") as tar:
        add_member(tar, "../../etc/cron.d/x.jpg", JPEG)
        add_member(tar, "/abs.jpg", JPEG)
        add_member(tar, "sym.jpg", kind=tarfile.SYMTYPE, linkname="/etc/shadow")
        add_member(tar, "hard.png", kind=tarfile.LNKTYPE, linkname="/abs.jpg")
        add_member(tar, "blk.jpg", kind=tarfile.BLKTYPE)
        add_member(tar, "sub", kind=tarfile.DIRTYPE)
    reader = TarReader(TarConfig())
    table = reader.read_items(str(tmp_path), reader.list_items(str(tmp_path)))
    assert reasons(table) == {"h.tar#../../etc/cron.d/x": "unsafe_member_name", "h.tar#/abs": "unsafe_member_name",
                              "h.tar#sym": "link_member", "h.tar#hard": "link_member", "h.tar#blk": "special_member"}
    assert table.column("image_bytes").null_count == table.num_rows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.tar"]  # nothing extracted


def test_a_tar_linked_from_outside_the_input_is_refused(tmp_path):
    write_webdataset_tar(tmp_path / "elsewhere.tar", {"a": ("jpg", JPEG)})
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "link.tar").symlink_to(tmp_path / "elsewhere.tar")
    reader = TarReader(TarConfig())
    assert reasons(reader.read_items(str(tmp_path / "in"), reader.list_items(str(tmp_path / "in")))) == {
        "link.tar#": "outside_input_root"}


def test_listing_is_sorted_reads_no_member_data_and_a_shard_opens_each_tar_once(tmp_path, monkeypatch):
    for index in (2, 0, 1):
        write_webdataset_tar(tmp_path / f"shard-{index}.tar", {f"k{j:02d}": ("jpg", JPEG) for j in (5, 1, 3)})
    reader = TarReader(TarConfig())
    extracted, opened = [], []
    real_extractfile, real_open = tarfile.TarFile.extractfile, tarfile.open
    monkeypatch.setattr(tarfile.TarFile, "extractfile",
                        lambda self, member: extracted.append(member.name) or real_extractfile(self, member))
    monkeypatch.setattr(tarfile, "open", lambda *args, fileobj, **kw: opened.append(Path(fileobj.name).name)
                        or real_open(*args, fileobj=fileobj, **kw))
    items = reader.list_items(str(tmp_path))
    assert items == [f"shard-{i}.tar#k{j:02d}" for i in range(3) for j in (1, 3, 5)]
    assert extracted == [] and opened == ["shard-0.tar", "shard-1.tar", "shard-2.tar"]
    opened.clear()
    shard = items[2:7]
    table = reader.read_items(str(tmp_path), shard)
    assert table.column("upstream_id").to_pylist() == shard and table.column("reject_reason").null_count == 5
    assert opened == ["shard-0.tar", "shard-1.tar", "shard-2.tar"]
    assert sorted(extracted) == sorted(f"{item.split('#')[1]}.jpg" for item in shard)


def test_input_must_be_a_directory_or_a_tar(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"PK")
    with pytest.raises(InputError, match="x.zip"):
        TarReader(TarConfig()).list_items(str(tmp_path / "x.zip"))
    with pytest.raises(InputError, match="no such file"):
        TarReader(TarConfig()).list_items(str(tmp_path / "missing"))
