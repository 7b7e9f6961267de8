"""The spatial_qa job end to end on the session's local Ray: procedural and canonical-file inputs."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_engine.executor import run_job
from openspatial.procedural import ProceduralConfig, generate_scene
from openspatial.qa.tasks import TASKS
from openspatial.scene import save_scene
from pipelines.jobfile import JOBS_DIR, load_job
from tests.openspatial.test_adapters import FIXTURE_WRITERS

SMALL = ["reader.procedural.width=128", "reader.procedural.height=96", "reader.procedural.frames=4",
         "reader.index.min_visible_pixels=40", "reader.qa.min_visible_pixels=40", "reader.shard_rows=2"]


def _rows(out):
    return [row for path in sorted(out.glob("part-*.parquet")) for row in pq.read_table(path).to_pylist()]


def test_procedural_job_writes_qa_conversations(ray_local, tmp_path):
    out = tmp_path / "qa"
    job = load_job(JOBS_DIR / "spatial_qa.yaml", ["input=procedural://3?seed=1", f"output={out}", *SMALL])
    manifest = run_job(job, progress=False)
    rows = _rows(out)
    assert manifest["schema"]["name"] == "qa_conversation" and manifest["rows_written"] == len(rows) > 20
    assert len(manifest["shards"]) == 2 and manifest["rows_accepted"] == len(rows)
    assert len({r["task"] for r in rows}) >= 15
    for row in rows:
        user, assistant = row["messages"]
        image_parts = [p for p in user["content"] if p["type"] == "image"]
        assert [p["image_index"] for p in image_parts] == list(range(len(row["images"])))
        assert user["content"][-1]["text"] and assistant["content"][0]["text"]
        image = Image.open(io.BytesIO(row["images"][0]["bytes"]))
        assert image.size == (128, 96) and image.format == "JPEG"
        metadata = json.loads(row["metadata"])
        assert metadata["scene_id"].startswith("procedural-1-") and metadata["language"] in ("en", "zh")
    # A rerun finds every shard complete and rewrites nothing.
    again = run_job(job, progress=False)
    assert again["timings"]["shards_run"] == 0 and again["rows_written"] == len(rows)


def test_canonical_scene_directory_input(ray_local, tmp_path):
    scenes = tmp_path / "scenes"
    save_scene(generate_scene(4, 0, ProceduralConfig(width=128, height=96, frames=4)), scenes / "room_a")
    (scenes / "room_b").mkdir()
    (scenes / "room_b" / "scene.json").write_text("{\"format\": \"openspatial.scene/1\"}")
    out = tmp_path / "qa"
    manifest = run_job(load_job(JOBS_DIR / "spatial_qa.yaml", [f"input={scenes}", f"output={out}", *SMALL]),
                       progress=False)
    rows = _rows(out)
    rejected = [r for r in rows if r["reject_reason"]]
    assert manifest["rejects"] == {"read:invalid_scene": 1}
    assert rejected[0]["reject_detail"].endswith("room_b/scene.json: objects: missing")
    assert sum(not r["reject_reason"] for r in rows) > 5


def test_job_covers_every_sub_task(ray_local, tmp_path):
    # Eight scenes: since a quarter of procedural scenes film steeply (camera labels near vertical), six with
    # seed 0 no longer hold a bird's-eye question.
    out = tmp_path / "qa"
    overrides = ["input=procedural://8?seed=0", f"output={out}", "reader.procedural.width=160",
                 "reader.procedural.height=120", "reader.index.min_visible_pixels=40",
                 "reader.qa.min_visible_pixels=40"]
    run_job(load_job(JOBS_DIR / "spatial_qa.yaml", overrides), progress=False)
    assert {row["task"] for row in _rows(out)} == set(TASKS)


@pytest.mark.parametrize("adapter", ["scannet", "arkitscenes", "scannetpp", "matterport3d", "hypersim"])
def test_job_reads_each_adapter_fixture(ray_local, tmp_path, adapter):
    """`make spatial-qa` with reader.adapter set: a dataset root in its own layout becomes QA shards."""
    root = FIXTURE_WRITERS[adapter](tmp_path / "dataset")
    out = tmp_path / "qa"
    overrides = [f"input={root}", f"output={out}", f"reader.adapter={adapter}", f"reader.source_dataset={adapter}",
                 "reader.index.min_visible_pixels=30", "reader.qa.min_visible_pixels=30"]
    manifest = run_job(load_job(JOBS_DIR / "spatial_qa.yaml", overrides), progress=False)
    rows = _rows(out)
    assert manifest["rows_accepted"] == len(rows) >= 10 and not manifest["rejects"]
    assert {row["source_dataset"] for row in rows} == {adapter}
    # Two objects in two frames: the single-view measurements and the cross-view tasks that need only two.
    assert {"distance", "depth", "object_size", "grounding_3d", "correspondence", "camera_motion"} <= {
        row["task"] for row in rows}
