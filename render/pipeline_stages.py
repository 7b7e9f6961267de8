"""Job wiring of render/: asset readers and the render stages (registered through data_engine.stages).

Readers list assets (procedural keys or files under the input directory) into rows of the job's schema
carrying only provenance; the stages render them. A render stage is an actor-pool stage: its `setup()`
starts one render worker process, reused for every row the actor processes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import pyarrow as pa
from pydantic import Field

from data_engine.readers import InputError, Reader, ReaderConfig, register_reader, row_id
from data_engine.editing.triplet import EDIT_TRIPLET
from data_engine.schemas import IMAGE_REF, MULTIVIEW_SAMPLE, ShardSchema
from data_engine.stage import REJECT_COLUMN, REJECT_DETAIL_COLUMN, Resources, Stage, StageConfig, register_stage
from render.assets import FORMAT_BY_SUFFIX
from render.client import RenderDeviceUnavailable, RenderWorker, RenderWorkerError, render_devices, render_python
from render.multiview import MultiviewSettings, render_multiview_sample
from render.preprocess import AssetRejected, asset_for_item, prepare_asset
from render.procedural import GENERATORS, procedural_item_key
from render.scene import RenderSettings
from render.spatial_edit import SpatialEditSettings, render_edit_triplet

PROCEDURAL_INPUT = "procedural"


class AssetSourceConfig(ReaderConfig):
    """`input: procedural` generates `count` assets cycling through `categories`; any other input is a
    directory of asset files (glTF/GLB/OBJ/PLY/.blend)."""

    categories: tuple[str, ...] = tuple(GENERATORS)
    count: int = Field(default=8, gt=0)
    first_seed: int = Field(default=0, ge=0)


class MultiviewAssetsConfig(AssetSourceConfig):
    kind: Literal["multiview_assets"] = "multiview_assets"


class EditAssetsConfig(AssetSourceConfig):
    kind: Literal["edit_assets"] = "edit_assets"


class AssetReader(Reader):
    schema: ClassVar[ShardSchema]

    @classmethod
    def generates_input(cls, input_uri: str) -> bool:
        return input_uri == PROCEDURAL_INPUT

    def list_items(self, input_uri: str) -> list[str]:
        config = self.config
        if input_uri == PROCEDURAL_INPUT:
            unknown = sorted(set(config.categories) - set(GENERATORS))
            if unknown:
                raise InputError(f"reader.categories: unknown {unknown}; known: {', '.join(GENERATORS)}")
            return sorted(procedural_item_key(config.categories[i % len(config.categories)], config.first_seed + i)
                          for i in range(config.count))
        root = Path(input_uri.removeprefix("file://"))
        if not root.is_dir():
            raise InputError(f"input {input_uri!r}: neither {PROCEDURAL_INPUT!r} nor a directory of assets")
        return sorted(Path(directory, name).relative_to(root).as_posix()
                      for directory, _, files in os.walk(root) for name in files
                      if Path(name).suffix.lower() in FORMAT_BY_SUFFIX)

    def read_items(self, input_uri: str, items: Sequence[str]) -> pa.Table:
        rows = [{**dict.fromkeys(f.name for f in self.schema.fields),
                 "id": row_id(self.config.source_dataset, item), "source_dataset": self.config.source_dataset,
                 "upstream_id": item, "license": self.config.license} for item in items]
        return pa.Table.from_pylist(rows, schema=self.schema.arrow())


@register_reader
class MultiviewAssetReader(AssetReader):
    kind = "multiview_assets"
    Config = MultiviewAssetsConfig
    schema = MULTIVIEW_SAMPLE


@register_reader
class EditAssetReader(AssetReader):
    kind = "edit_assets"
    Config = EditAssetsConfig
    schema = EDIT_TRIPLET


def row_seed(seed: int, row_id_value: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{row_id_value}".encode()).digest()[:8], "big")


ASSET_CATEGORY = pa.field("asset_category", pa.string())  # what the asset is meant to be (recognisability)


class RenderStageConfig(StageConfig):
    asset_root: str | None = None  # where file assets named by upstream_id live (None: procedural only)
    target_extent: float | None = Field(default=None, gt=0)  # scale assets so the largest side is this (m)
    align_footprint: bool = True  # turn file assets so their footprint is axis-aligned (preprocess.py)
    seed: int = 0
    request_timeout_s: float = Field(default=300.0, gt=0)


class RenderStage(Stage):
    """Shared actor plumbing: one render worker per actor; per-row asset preparation and rejections."""

    uses_model = True
    default_resources = Resources(num_cpus=1, batch_size=4, concurrency=1)

    def preflight(self) -> None:
        render_python()  # raises RenderEnvMissing with the command that builds the environment

    def setup(self) -> None:
        settings = self.render_settings()
        if settings.device == "GPU":
            _require_ray_gpu(self.name)
        self.worker = RenderWorker()
        self.worker.start()
        try:
            render_devices(self.worker, settings)  # a GPU configured where there is none fails here, in one line
        except RenderDeviceUnavailable:
            self.worker.close()
            raise

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        results = [self._process_one(upstream_id, rid) for upstream_id, rid in
                   zip(batch.column("upstream_id").to_pylist(), batch.column("id").to_pylist())]
        return {name: [result.get(name) for result in results] for name in self.result_columns()}

    def _process_one(self, upstream_id: str, rid: str) -> dict[str, Any]:
        try:
            asset = asset_for_item(upstream_id, self.config.asset_root)
            prepared = prepare_asset(asset, self.worker, target_extent=self.config.target_extent,
                                     align_footprint=self.config.align_footprint)
            return {ASSET_CATEGORY.name: asset.category, **self.render_row(prepared, row_seed(self.config.seed, rid))}
        except AssetRejected as rejection:
            return {REJECT_COLUMN: rejection.reason, REJECT_DETAIL_COLUMN: str(rejection)}
        except RenderWorkerError as failure:  # the worker could not load or render this asset
            return {REJECT_COLUMN: "render_failed", REJECT_DETAIL_COLUMN: str(failure)[:500]}

    def render_settings(self) -> RenderSettings:
        raise NotImplementedError

    def render_row(self, prepared: Any, seed: int) -> dict[str, Any]:
        raise NotImplementedError


def _require_ray_gpu(stage_name: str) -> None:
    """Under Ray, a GPU render stage must hold a GPU: otherwise Ray may place it on any node."""
    import ray

    if ray.is_initialized() and not ray.get_gpu_ids():
        raise RenderDeviceUnavailable(f"{stage_name}: render.device GPU but this worker holds no GPU; set "
                                      f"resources.num_gpus (e.g. 1) so Ray places the stage on GPU nodes")


class RenderMultiviewConfig(RenderStageConfig):
    multiview: MultiviewSettings = MultiviewSettings()


@register_stage
class RenderMultiviewStage(RenderStage):
    op = "render_multiview"
    Config = RenderMultiviewConfig

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (ASSET_CATEGORY,
                pa.field("masks", pa.list_(IMAGE_REF)),  # PNG, 255 where the subject is
                pa.field("depths", pa.list_(IMAGE_REF)),  # 16-bit PNG, millimetres on the subject, 0 elsewhere
                pa.field("rejected_cameras", pa.string()),  # JSON: camera candidates refused, with reasons
                pa.field("reprojection_error_px", pa.list_(pa.float32())),  # per view, render/checks.py
                pa.field("silhouette_iou", pa.list_(pa.float32())))

    def replaced_columns(self) -> tuple[str, ...]:
        return ("views", "cameras", "main_view_index", "collage", "structured_caption", "dense_caption")

    def render_settings(self) -> RenderSettings:
        return self.config.multiview.render

    def render_row(self, prepared: Any, seed: int) -> dict[str, Any]:
        return render_multiview_sample(self.worker, prepared, seed, self.config.multiview)


class RenderSpatialEditConfig(RenderStageConfig):
    spatial_edit: SpatialEditSettings = SpatialEditSettings()


@register_stage
class RenderSpatialEditStage(RenderStage):
    op = "render_spatial_edit"
    Config = RenderSpatialEditConfig

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (ASSET_CATEGORY, pa.field("source_mask", IMAGE_REF), pa.field("target_mask", IMAGE_REF),
                pa.field("edit_operation", pa.string()),  # "<branch>:<operation>", for balancing
                pa.field("subject_symmetry", pa.string()),  # none / 2-fold / 4-fold / continuous, render/symmetry.py
                pa.field("subject_thin_share", pa.float32()))  # of the source silhouette in thin parts

    def replaced_columns(self) -> tuple[str, ...]:
        return ("source_image", "reference_images", "instruction", "target_image", "metadata")

    def render_settings(self) -> RenderSettings:
        return self.config.spatial_edit.render

    def render_row(self, prepared: Any, seed: int) -> dict[str, Any]:
        return render_edit_triplet(self.worker, prepared, seed, self.config.spatial_edit)
