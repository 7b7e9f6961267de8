"""The `rgbd_sequences` reader of the `lift_video` job: RGB-D sequences -> `lifted_object` rows (one per track).

Input forms (layouts in `openspatial.sequences`):
- `procedural://N?seed=S`: N procedural sequences through the configured noise model (the embedded default);
- a directory of sequences in the documented layout (`layout: documented`, every sub-directory holding a
  `sequence.json`) or in ScanNet's (`layout: scannet`, every scene directory with `instance-filt/` and `pose/`).
Every track becomes a row: accepted with its box, or rejected with the lifting's reason (`too_few_views`,
`too_few_points`, `cycle_inconsistent`, `duplicate_track`). A sequence that cannot be lifted (missing depth or
poses, NaN poses, frames of different sizes, unreadable files) is one rejected row with the reason of
`SequenceError`. The accepted rows of a sequence are its lifted scene; the `spatial_scenes` reader takes this
job's output directory as input and generates the QA from them (`openspatial.reader`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from data_engine.conventions import OrientedBox

from data_engine.readers import (InputError, Reader, ReaderConfig, list_input_files, procedural_items, register_reader,
                                 row_id)
from data_engine.schemas import LIFTED_OBJECT
from data_engine.shards import MANIFEST_NAME, iter_shards
from data_engine.storage import Location
from openspatial.noise import ObservationNoise
from openspatial.procedural import ProceduralConfig
from openspatial.sequences import SEQUENCE_FILE, SequenceError, list_scannet_sequences
from openspatial.scene import Scene
from openspatial.video import (LiftedObject, LiftedSequence, VideoLiftingConfig, lift_sequence, lifted_scene,
                               load_sequence)


class RgbdSequencesConfig(ReaderConfig):
    kind: Literal["rgbd_sequences"] = "rgbd_sequences"
    shard_rows: int = Field(default=4, gt=0)  # sequences per shard
    source_dataset: str = "openspatial_procedural"
    license: str = "generated"
    layout: Literal["documented", "scannet"] = "documented"
    max_frames: int = Field(default=12, ge=2)  # frames sampled evenly per ScanNet sequence
    procedural: ProceduralConfig = ProceduralConfig(frames=12, trajectory="room_scan")
    noise: ObservationNoise = ObservationNoise()  # procedural input only
    lifting: VideoLiftingConfig = VideoLiftingConfig()

    def load(self, input_uri: str, item: str):
        return load_sequence(input_uri, item, self.layout, self.max_frames, self.procedural, self.noise)


def lifted_rows(lifted: LiftedSequence, item: str, source_dataset: str, license_: str,
                min_view_iou: float) -> list[dict]:
    sequence = lifted.sequence
    rows = []
    for result in lifted.results:
        members = lifted.association.members[result.track_id]
        observations = [{"frame_id": sequence.frames[index].frame_id, "instance_id": instance_id,
                         "mask_iou": result.view_ious.get(index)} for index, instance_id in sorted(members.items())]
        box = None if result.box is None else {"center": result.box.center.tolist(),
                                               "extents": result.box.extents.tolist(),
                                               "rotation": result.box.rotation.ravel().tolist()}
        upstream_id = f"{item}#track{result.track_id}"
        rows.append({"id": row_id(source_dataset, upstream_id), "source_dataset": source_dataset,
                     "upstream_id": upstream_id, "license": license_, "scene_id": sequence.sequence_id,
                     "sequence": item, "track_id": result.track_id, "category": result.category, "box": box,
                     "observations": observations,
                     "consistent_views": sum(iou >= min_view_iou for iou in result.view_ious.values()),
                     "reject_reason": result.reject_reason, "reject_stage": "read" if result.reject_reason else None,
                     "reject_detail": result.reject_detail})
    return rows


@register_reader
class RgbdSequencesReader(Reader):
    kind = "rgbd_sequences"
    Config = RgbdSequencesConfig
    schema = LIFTED_OBJECT
    input_schemes = ("procedural",)

    def list_items(self, input_uri: str) -> list[str]:
        generated = procedural_items(input_uri)
        if generated is not None:
            return generated
        root = self.location(input_uri)
        if not root.is_local or not root.is_dir():
            raise InputError(f"input {input_uri!r}: rgbd_sequences reads a local directory of sequences")
        if self.config.layout == "scannet":
            items = list_scannet_sequences(root.local_path)
        else:
            items = sorted(PurePosixPath(name).parent.as_posix() for name in
                           list_input_files(root, lambda name: PurePosixPath(name).name == SEQUENCE_FILE))
        if not items:
            raise InputError(f"input {input_uri!r}: no sequences in the {self.config.layout} layout")
        return items

    def read_items(self, input_uri: str, items: Sequence[str]) -> pa.Table:
        rows = []
        for item in items:
            try:
                sequence = self.config.load(input_uri, item)
            except SequenceError as exc:
                upstream_id = f"{item}#sequence"
                rows.append({"id": row_id(self.config.source_dataset, upstream_id),
                             "source_dataset": self.config.source_dataset, "upstream_id": upstream_id,
                             "license": self.config.license, "sequence": item, "reject_reason": exc.reason,
                             "reject_stage": "read", "reject_detail": str(exc)})
                continue
            source = sequence.source_dataset if sequence.source_dataset != "unknown" else self.config.source_dataset
            license_ = sequence.license if sequence.license != "unknown" else self.config.license
            rows += lifted_rows(lift_sequence(sequence, self.config.lifting), item, source, license_,
                                self.config.lifting.lifting.min_view_iou)
        return pa.Table.from_pylist(rows, schema=self.schema.arrow())


def is_lifted_objects_dir(root: Location) -> bool:
    """Whether a job input is the output of a `lift_video` job (its manifest names the `lifted_object` schema)."""
    manifest = root / MANIFEST_NAME
    if not manifest.is_file():
        return False
    return json.loads(manifest.read_bytes()).get("schema", {}).get("name") == LIFTED_OBJECT.name


class LiftedScenes:
    """The lifted scenes of a `lift_video` output directory: its accepted rows grouped by sequence, with the
    frames read again from the upstream job's own input and reader config (recorded in its manifest)."""

    def __init__(self, root: Location) -> None:
        manifest = json.loads((root / MANIFEST_NAME).read_bytes())
        self.upstream_input = manifest["config"]["input"]
        self.upstream_reader = RgbdSequencesConfig.model_validate(manifest["config"]["reader"])
        self.objects: dict[str, list[LiftedObject]] = {}
        columns = ["sequence", "track_id", "category", "box", "observations", "reject_reason"]
        for _, table in iter_shards(root, columns):
            for row in table.filter(pc.is_null(table.column("reject_reason"))).to_pylist():
                box = OrientedBox(np.array(row["box"]["center"]), np.array(row["box"]["extents"]),
                                  np.array(row["box"]["rotation"]).reshape(3, 3))
                self.objects.setdefault(row["sequence"], []).append(LiftedObject(
                    row["track_id"], row["category"], box,
                    {o["frame_id"]: o["instance_id"] for o in row["observations"]}))

    def sequences(self) -> list[str]:
        return sorted(self.objects)

    def scene(self, sequence: str) -> Scene:
        loaded = self.upstream_reader.load(self.upstream_input, sequence)
        return lifted_scene(loaded, sorted(self.objects[sequence], key=lambda obj: obj.track_id))
