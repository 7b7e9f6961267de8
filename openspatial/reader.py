"""The `spatial_scenes` reader: scenes -> object-frame index -> QA-conversation rows (many rows per scene).

Input forms:
- `procedural://N?seed=S`: N procedural scenes of stream S (the embedded default; no files needed);
- a directory: every sub-directory holding a canonical `scene.json` is one item; or, with `adapter` set, a
  dataset root in that dataset's own layout (`openspatial.adapters`);
- the output directory of a `lift_video` job (`lifted_object` shards): every sequence with accepted objects is
  one lifted scene (`openspatial.video_reader.LiftedScenes`).
A scene that fails validation yields one rejected row whose detail names the file and the field; a scene with
too few frames for some sub-tasks (multi-view ones need two) yields one `too_few_frames` row naming them beside
its QA rows.

Every row carries `split`: `eval` for the scenes whose id hashes below `eval_fraction` (`scene_split`), `train`
for the others, so a model is evaluated on scenes it never trained on (`trainer eval` reads `eval` rows only).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Literal

import pyarrow as pa
from pydantic import Field

from data_engine.readers import (InputError, Reader, ReaderConfig, list_input_files, procedural_item, procedural_items,
                                 register_reader, row_id)
from data_engine.schemas import QA_CONVERSATION
from openspatial.adapters import ADAPTERS, ScanConfig
from openspatial.frame_index import IndexConfig, build_object_frame_index
from openspatial.procedural import ProceduralConfig, generate_scene
from openspatial.qa.rows import sample_images, sample_messages, sample_metadata, scene_split
from openspatial.qa.tasks import QAConfig, generate_scene_qa, unavailable_tasks
from openspatial.scene import SCENE_FILE, Scene, SceneFormatError, load_scene
from openspatial.sequences import SequenceError
from openspatial.video_reader import LiftedScenes, is_lifted_objects_dir

LIFTED_ITEM_PREFIX = "lifted:"


class SpatialScenesConfig(ReaderConfig, ScanConfig):
    """The reader's own fields; `max_frames`, `structural_classes` and `min_box_extent_m` (ScanConfig) go to
    the dataset adapters."""

    kind: Literal["spatial_scenes"] = "spatial_scenes"
    shard_rows: int = Field(default=4, gt=0)  # scenes per shard (each yields tens of QA rows)
    source_dataset: str = "openspatial_procedural"
    license: str = "generated"
    procedural: ProceduralConfig = ProceduralConfig()
    index: IndexConfig = IndexConfig()
    qa: QAConfig = QAConfig()
    jpeg_quality: int = Field(default=90, ge=1, le=100)
    adapter: Literal["canonical", "scannet", "arkitscenes", "matterport3d", "scannetpp", "hypersim"] = "canonical"
    eval_fraction: float = Field(default=0.1, ge=0, le=1)  # share of scenes (by id hash) held out for evaluation


@register_reader
class SpatialScenesReader(Reader):
    kind = "spatial_scenes"
    Config = SpatialScenesConfig
    schema = QA_CONVERSATION
    input_schemes = ("procedural",)

    _lifted: LiftedScenes | None = None  # read once per worker when the input is a lift_video output

    def list_items(self, input_uri: str) -> list[str]:
        generated = procedural_items(input_uri)
        if generated is not None:
            return generated
        root = self.location(input_uri)
        if not root.is_local:
            raise InputError(f"input {input_uri!r}: spatial_scenes reads local scene directories only")
        if self.config.adapter != "canonical":
            if not root.is_dir():
                raise InputError(f"input {root}: not a directory")
            return ADAPTERS[self.config.adapter].list_scenes(root.local_path)
        if is_lifted_objects_dir(root):
            return [LIFTED_ITEM_PREFIX + sequence for sequence in LiftedScenes(root).sequences()]
        scene_files = list_input_files(root, lambda name: PurePosixPath(name).name == SCENE_FILE)
        return sorted(PurePosixPath(name).parent.as_posix() for name in scene_files)

    def _scene(self, input_uri: str, item: str) -> Scene:
        generated = procedural_item(item)
        if generated:
            return generate_scene(*generated, self.config.procedural)
        if item.startswith(LIFTED_ITEM_PREFIX):
            if self._lifted is None:
                self._lifted = LiftedScenes(self.location(input_uri))
            return self._lifted.scene(item.removeprefix(LIFTED_ITEM_PREFIX))
        root = Path(input_uri.removeprefix("file://"))
        if self.config.adapter != "canonical":
            return ADAPTERS[self.config.adapter].load_scene(root, item, self.config)
        return load_scene(root / item)

    def read_items(self, input_uri: str, items: Sequence[str]) -> pa.Table:
        rows = []
        for item in items:
            try:
                scene = self._scene(input_uri, item)
            except SceneFormatError as exc:
                rows.append(self._row(f"{item}#invalid", None, reject=("invalid_scene", str(exc))))
                continue
            except SequenceError as exc:  # a lifted scene's frames can no longer be read
                rows.append(self._row(f"{item}#invalid", None, reject=(exc.reason, str(exc))))
                continue
            index = build_object_frame_index(scene, self.config.index)
            skipped = unavailable_tasks(index, self.config.qa)
            if skipped:  # one row per scene says which sub-tasks it cannot feed, and why
                rows.append(self._row(f"{item}#unavailable_tasks", None, reject=(
                    "too_few_frames", "; ".join(f"{task}: {why}" for task, why in skipped.items()))))
            seed = int.from_bytes(row_id("seed", item)[:8].encode(), "little")
            samples = list(generate_scene_qa(index, self.config.qa, seed))
            for number, sample in enumerate(samples):
                rows.append(self._row(f"{item}#{sample.task}#{number}", sample.task, scene=scene, sample=sample))
            if not samples:  # the scene still shows up in the output, with why it gave nothing
                rows.append(self._row(f"{item}#no_qa", None, reject=(
                    "no_qa", f"{len(scene.objects)} objects, {len(scene.frames)} frames: no QA task applies")))
        return pa.Table.from_pylist(rows, schema=self.schema.arrow())

    def _row(self, upstream_id: str, task: str | None, *, scene=None, sample=None, reject=None) -> dict:
        source = scene.source_dataset if scene and scene.source_dataset != "unknown" else self.config.source_dataset
        license_ = scene.license if scene and scene.license != "unknown" else self.config.license
        row = {"id": row_id(source, upstream_id), "source_dataset": source, "upstream_id": upstream_id,
               "license": license_, "images": [], "messages": [], "task": task, "metadata": None,
               "split": scene_split(scene.scene_id, self.config.eval_fraction) if scene else None,
               "reject_reason": None, "reject_stage": None, "reject_detail": None}
        if reject:
            row.update(reject_reason=reject[0], reject_stage="read", reject_detail=reject[1])
        else:
            row.update(images=sample_images(scene, sample, self.config.jpeg_quality), messages=sample_messages(sample),
                       metadata=sample_metadata(scene, sample))
        return row
