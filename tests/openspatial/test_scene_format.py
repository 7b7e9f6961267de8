"""Canonical scene files: round trip, and bad files fail with the file and the field named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from openspatial.procedural import ProceduralConfig, generate_scene
from openspatial.reader import SpatialScenesConfig, SpatialScenesReader
from openspatial.scene import SCENE_FILE, SceneFormatError, load_scene, save_scene

SMALL = ProceduralConfig(width=64, height=48, frames=2)


@pytest.fixture(scope="module")
def saved_scene(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("scenes") / "good"
    save_scene(generate_scene(5, 0, SMALL), directory)
    return directory


def test_round_trip_keeps_geometry_depth_and_instances(saved_scene):
    original = generate_scene(5, 0, SMALL)
    loaded = load_scene(saved_scene)
    assert [o.category for o in loaded.objects] == [o.category for o in original.objects]
    for a, b in zip(loaded.objects, original.objects):
        np.testing.assert_allclose(a.box.corners(), b.box.corners(), atol=1e-9)
    for a, b in zip(loaded.frames, original.frames):
        np.testing.assert_allclose(a.pose, b.pose)
        np.testing.assert_array_equal(a.instances, b.instances)
        assert np.abs(a.depth - b.depth).max() <= 0.0005 + 1e-6  # millimetre PNG quantisation


def _broken_copy(saved_scene: Path, tmp_path: Path, edit) -> Path:
    target = tmp_path / "bad"
    shutil.copytree(saved_scene, target)
    data = json.loads((target / SCENE_FILE).read_text())
    edit(data)
    (target / SCENE_FILE).write_text(json.dumps(data))
    return target


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["objects"][0].pop("category"), "objects[0].category: missing"),
    (lambda d: d["objects"][0]["box"]["center"].__setitem__(1, float("nan")), "objects[0].box.center: contains NaN"),
    (lambda d: d["objects"][1]["box"]["extents"].__setitem__(2, 0.0), "objects[1].box.extents: every side must be > 0"),
    (lambda d: d["objects"][0]["box"].__setitem__("rotation", [[1, 0.2, 0], [0, 1, 0], [0, 0, 1]]),
     "objects[0].box.rotation: not a proper orthonormal rotation"),
    (lambda d: d["frames"][0].__setitem__("pose", [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]),
     "frames[0].pose: expected shape (4, 4)"),
    (lambda d: d["frames"][1].__setitem__("image", "missing.jpg"), "frames[1].image: cannot read image file"),
])
def test_bad_scene_names_file_and_field(saved_scene, tmp_path, edit, field):
    bad = _broken_copy(saved_scene, tmp_path, edit)
    with pytest.raises(SceneFormatError) as error:
        load_scene(bad)
    assert str(error.value).startswith(str(bad / SCENE_FILE) + ": " + field)


def test_reader_turns_a_bad_scene_into_one_rejected_row(saved_scene, tmp_path):
    root = tmp_path / "input"
    root.mkdir()
    shutil.copytree(saved_scene, root / "a_good")
    _broken_copy(saved_scene, root, lambda d: d["objects"][0]["box"]["extents"].__setitem__(0, -1.0)).rename(root / "b_bad")
    reader = SpatialScenesReader(SpatialScenesConfig(index={"min_visible_pixels": 20}, qa={"min_visible_pixels": 20}))
    items = reader.list_items(str(root))
    assert items == ["a_good", "b_bad"]
    table = reader.read_items(str(root), items)
    rejected = [r for r in table.to_pylist() if r["reject_reason"]]
    assert len(rejected) == 1 and rejected[0]["reject_reason"] == "invalid_scene"
    assert "b_bad/scene.json: objects[0].box.extents" in rejected[0]["reject_detail"]
    assert rejected[0]["id"] and rejected[0]["license"] and rejected[0]["source_dataset"]
    accepted = [r for r in table.to_pylist() if not r["reject_reason"]]
    assert accepted and all(r["images"] and r["messages"] for r in accepted)
