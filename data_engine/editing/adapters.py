"""Adapters: every edit source written as the one triplet format (`data_engine/editing/triplet.py`).

The reader kind `edit_sources` reads several sources in one job (so curation and balancing see them all),
each named by its adapter and a path (relative to the job's `input`, or absolute):
- `spatial_edit`: the spatial-edit render shards (`pipelines/jobs/spatial_edit.yaml`); object edits are
  `object_move` with the union of the subject's source and target masks as the edit mask (and, for a
  translation, the drawn target box as the region: a visual cue), camera edits are global `viewpoint` edits;
- `text_edit`: the text-edit pairs (`pipelines/jobs/text_edit.yaml`): `text`, the changed block's box as region;
- `video_pairs`: the video-pair shards (`pipelines/jobs/video_pairs.yaml`): PNG frames, the English and Chinese
  instructions (one per row, drawn by `chinese_fraction` from the row id), `change_type` as the task;
- `external`: edit datasets as they ship, Parquet (images as Hugging Face `{bytes, path}` structs) or JSONL
  (images as paths relative to the file), in one of `EXTERNAL_LAYOUTS` (InstructPix2Pix, MagicBrush,
  UltraEdit, OmniEdit column names, from their dataset cards).
Shard sources contribute their accepted rows (`include_rejected` for every row). A row that cannot become a
triplet (no instruction, an image that does not decode, a label outside the vocabulary) is a row with that
reason, rejected at `read`. Items are `<source index>:<file>#<row key>`, sorted per source, so a rerun lists
the same shards.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, model_validator

from data_engine.readers import InputError, Reader, ReaderConfig, register_reader, row_id
from data_engine.rebalance.sampling import uniform
from data_engine.shards import ShardDirError, open_parquet, read_shard, shard_paths
from data_engine.storage import Location

from data_engine.editing.triplet import EDIT_TRIPLET, Domain, TripletError, labels_from, triplet_columns

_log = logging.getLogger(__name__)
AdapterName = Literal["spatial_edit", "text_edit", "video_pairs", "external"]
ExternalLayoutName = Literal["instructpix2pix", "magicbrush", "ultraedit", "omniedit"]
_SHARD_ADAPTERS = ("spatial_edit", "text_edit", "video_pairs")
_GLOBAL_TASKS = frozenset({"viewpoint", "style", "global", "background"})


@dataclass(frozen=True)
class ExternalLayout:
    """Where a public edit dataset keeps each part of a triplet (column names from its dataset card)."""
    source: str
    target: str
    instruction: str  # a string column, or a list of strings (the first is used)
    key: tuple[str, ...]  # columns that identify a row (the row number when empty)
    mask: str | None = None
    task: str | None = None  # a column naming the edit task, where the dataset has one
    kept: tuple[str, ...] = ()  # further columns kept in the metadata (captions, the dataset's own scores)


EXTERNAL_LAYOUTS: dict[str, ExternalLayout] = {
    # timbrooks/instructpix2pix-clip-filtered
    "instructpix2pix": ExternalLayout("original_image", "edited_image", "edit_prompt", (),
                                      kept=("original_prompt", "edited_prompt")),
    # osunlp/MagicBrush: white mask pixels are the region the edit may change
    "magicbrush": ExternalLayout("source_img", "target_img", "instruction", ("img_id", "turn_index"), mask="mask_img"),
    # BleachNick/UltraEdit (mask_image is null in its free-form splits)
    "ultraedit": ExternalLayout("source_image", "edited_image", "edit_prompt", ("idx",), mask="mask_image",
                                kept=("source_caption", "target_caption", "edit_object", "clip_sim_dir", "ssim")),
    # TIGER-Lab/OmniEdit-Filtered-1.2M
    "omniedit": ExternalLayout("src_img", "edited_img", "edited_prompt_list", ("omni_edit_id",), task="task",
                               kept=("sc_score_1", "sc_score_2", "pq_score", "o_score")),
}

# Task words of the sources that name one (video change types, OmniEdit's tasks) -> our task category; the
# first entry whose word the name contains wins, so "background_swap" is background, not replace.
_TASK_WORDS = (("background", "background"), ("style", "style"), ("text", "text"), ("view", "viewpoint"),
               ("camera", "viewpoint"), ("add", "add"), ("remov", "remove"), ("delet", "remove"),
               ("swap", "replace"), ("replac", "replace"), ("attribute", "attribute"), ("color", "attribute"),
               ("colour", "attribute"), ("action", "action"), ("pose", "action"), ("motion", "action"),
               ("move", "object_move"), ("position", "object_move"), ("env", "global"), ("light", "global"),
               ("weather", "global"))
# The first words of an English instruction -> task category, for sources that name no task.
_INSTRUCTION_WORDS = (("add ", "add"), ("put ", "add"), ("insert ", "add"), ("place ", "add"),
                      ("remove ", "remove"), ("delete ", "remove"), ("erase ", "remove"), ("get rid", "remove"),
                      ("replace ", "replace"), ("swap ", "replace"), ("change the background", "background"),
                      ("make it ", "style"), ("turn it into", "style"), ("make the", "attribute"),
                      ("change the colo", "attribute"), ("move ", "object_move"))


def task_from_name(name: str | None) -> str:
    name = (name or "").lower()
    return next((task for word, task in _TASK_WORDS if word in name), "other")


def task_from_instruction(instruction: str) -> str:
    text = instruction.strip().lower()
    return next((task for words, task in _INSTRUCTION_WORDS if text.startswith(words)), "other")


class EditSource(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    adapter: AdapterName
    path: str  # relative to the job's input, or absolute
    source_dataset: str | None = None  # provenance of the rows; default: the adapter (external: the layout)
    license: str | None = None  # default: the upstream row's (shards) or "unknown" (external)
    layout: ExternalLayoutName | None = None  # external only
    domain: Domain | None = None  # external and video: the domain of the images (default photo)
    required: bool = True  # false: a missing path is skipped with a warning (a source not built in this run)
    include_rejected: bool = False  # shard sources: read rejected rows too

    @model_validator(mode="after")
    def _layout_for_external(self) -> EditSource:
        if (self.adapter == "external") != (self.layout is not None):
            raise ValueError("layout: required for adapter external, and only there")
        return self

    @property
    def dataset(self) -> str:
        return self.source_dataset or (self.layout if self.adapter == "external" else self.adapter) or self.adapter


class EditSourcesConfig(ReaderConfig):
    kind: Literal["edit_sources"] = "edit_sources"  # type: ignore[assignment]
    sources: tuple[EditSource, ...] = Field(min_length=1)
    chinese_fraction: float = Field(default=0.5, ge=0, le=1)  # video pairs: rows whose instruction is the ZH one
    seed: int = 0


# ---------------------------------------------------------------- one adapter per source kind


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _mask_union(masks: Sequence[dict[str, Any] | None]) -> bytes | None:
    arrays = [np.asarray(Image.open(io.BytesIO(m["bytes"])).convert("L")) > 0 for m in masks if m]
    if not arrays:
        return None
    buffer = io.BytesIO()
    Image.fromarray(np.logical_or.reduce(arrays).astype(np.uint8) * 255, "L").save(buffer, format="PNG")
    return buffer.getvalue()


def adapt_spatial_edit(row: dict[str, Any], source: EditSource, config: EditSourcesConfig) -> dict[str, Any]:
    metadata = json.loads(row["metadata"] or "{}")
    branch, _, operation = (row.get("edit_operation") or "").partition(":")
    if branch not in ("object", "camera"):
        raise TripletError("unknown_label", f"edit_operation {row.get('edit_operation')!r} is not object:* or camera:*")
    is_object = branch == "object"
    region = None
    if is_object and operation == "translate" and metadata.get("target_region_xyxy"):
        x0, y0, x1, y1 = metadata["target_region_xyxy"]  # inclusive pixel bounds of the drawn box
        region = [x0, y0, x1 + 1, y1 + 1]
    labels = labels_from({"task_category": "object_move" if is_object else "viewpoint",
                          "granularity": "object" if is_object else "global",
                          "input_condition": "text_visual_cue" if region else "text",
                          "language": metadata.get("language"), "domain": "render_3d", "source_kind": "spatial_render"})
    return triplet_columns(
        source_image=row["source_image"]["bytes"], target_image=row["target_image"]["bytes"],
        instruction=row["instruction"], labels=labels, edit_region=region,
        edit_mask=_mask_union([row.get("source_mask"), row.get("target_mask")]) if is_object else None,
        metadata=_json({**metadata, "edit_operation": row.get("edit_operation")}))


def adapt_text_edit(row: dict[str, Any], source: EditSource, config: EditSourcesConfig) -> dict[str, Any]:
    metadata = json.loads(row["metadata"] or "{}")
    labels = labels_from({"task_category": "text", "granularity": "region", "input_condition": "text",
                          "language": metadata.get("language"), "domain": "graphic_design",
                          "source_kind": "text_render"})
    return triplet_columns(source_image=row["source_image"]["bytes"], target_image=row["target_image"]["bytes"],
                           instruction=row["instruction"], labels=labels, edit_region=metadata.get("changed_region"),
                           metadata=_json({key: value for key, value in metadata.items() if key != "blueprint"}))


VIDEO_PAIR_REQUIRED = ("source_image", "target_image", "instruction")
VIDEO_PAIR_KEPT = ("pair_id", "video_id", "shot_id", "source_timestamp_s", "target_timestamp_s", "change_score",
                   "change_type", "confidence", "source_caption", "target_caption", "instruction", "instruction_zh")


def adapt_video_pair(row: dict[str, Any], source: EditSource, config: EditSourcesConfig) -> dict[str, Any]:
    english, chinese = row.get("instruction"), row.get("instruction_zh")
    wants_chinese = uniform(config.seed, str(row.get("pair_id") or row["id"])) < config.chinese_fraction
    language, instruction = ("zh", chinese) if (wants_chinese and chinese) or not english else ("en", english)
    task = task_from_name(row.get("change_type"))
    labels = labels_from({"task_category": task, "granularity": "global" if task in _GLOBAL_TASKS else "object",
                          "input_condition": "text", "language": language, "domain": source.domain or "photo",
                          "source_kind": "video"})
    return triplet_columns(source_image=row.get("source_image") or b"", target_image=row.get("target_image") or b"",
                           instruction=instruction, labels=labels,
                           metadata=_json({name: row.get(name) for name in VIDEO_PAIR_KEPT}))


def _external_image(value: Any, base: Location, what: str) -> bytes | None:
    """Image bytes of a Hugging Face image value ({bytes, path}), raw bytes, or a path relative to the file."""
    if value is None:
        return None
    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"]
        value = value.get("path")
        if not value:
            return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if not isinstance(value, str) or value.startswith("/") or ".." in value.split("/"):
        raise TripletError("bad_image_path", f"{what}: {value!r} is not a path inside the dataset directory")
    try:
        return (base / value).read_bytes()
    except OSError as exc:
        raise TripletError("missing_image", f"{what}: {value} ({exc})") from None


def _binary_mask(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as mask:
        pixels = np.asarray(mask.convert("L")) >= 128
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8) * 255, "L").save(buffer, format="PNG")
    return buffer.getvalue()


def adapt_external(row: dict[str, Any], source: EditSource, base: Location) -> dict[str, Any]:
    layout = EXTERNAL_LAYOUTS[source.layout or ""]
    instruction = row.get(layout.instruction)
    if isinstance(instruction, list):
        instruction = next((text for text in instruction if text and text.strip()), None)
    mask = _external_image(row.get(layout.mask), base, layout.mask) if layout.mask else None
    named_task = row.get(layout.task) if layout.task else None
    task = task_from_name(named_task) if named_task else task_from_instruction(instruction or "")
    labels = labels_from({"task_category": task,
                          "granularity": "region" if mask else "global" if task in _GLOBAL_TASKS else "object",
                          "input_condition": "text", "language": "en", "domain": source.domain or "photo",
                          "source_kind": "external"})
    source_image = _external_image(row.get(layout.source), base, layout.source)
    target_image = _external_image(row.get(layout.target), base, layout.target)
    if source_image is None or target_image is None:
        raise TripletError("missing_image", f"no {layout.source if source_image is None else layout.target}")
    return triplet_columns(source_image=source_image, target_image=target_image, instruction=instruction,
                           labels=labels, edit_mask=_binary_mask(mask) if mask else None,
                           metadata=_json({"layout": source.layout, "task": named_task,
                                           **{name: row.get(name) for name in layout.key + layout.kept}}))


SHARD_ADAPTERS: dict[str, Callable[[dict[str, Any], EditSource, EditSourcesConfig], dict[str, Any]]] = {
    "spatial_edit": adapt_spatial_edit, "text_edit": adapt_text_edit, "video_pairs": adapt_video_pair}


# ---------------------------------------------------------------- the reader


def _external_rows(location: Location) -> list[dict[str, Any]]:
    if location.name.endswith(".jsonl"):
        lines = location.read_bytes().decode("utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    with location.open_input() as handle:
        return pq.read_table(handle).to_pylist()


def _shard_rows(location: Location, adapter: str) -> list[dict[str, Any]]:
    """The rows of one upstream shard: edit-triplet shards whole (checked against their schema), video-pair
    shards by the columns the video adapter reads (their schema is the video job's)."""
    if adapter != "video_pairs":
        return read_shard(location).to_pylist()
    with open_parquet(location) as parquet:
        present = set(parquet.schema_arrow.names)
    missing = [name for name in VIDEO_PAIR_REQUIRED if name not in present]
    if missing:
        raise ShardDirError(f"{location}: not video-pair shards (missing columns {missing})")
    wanted = ["id", "license", *VIDEO_PAIR_REQUIRED, *VIDEO_PAIR_KEPT]
    return read_shard(location, columns=[name for name in dict.fromkeys(wanted) if name in present]).to_pylist()


@register_reader
class EditSourcesReader(Reader):
    kind = "edit_sources"
    Config = EditSourcesConfig
    schema = EDIT_TRIPLET

    def source_location(self, input_uri: str, source: EditSource) -> Location:
        root = self.location(input_uri)
        return self.location(source.path) if source.path.startswith("/") or "://" in source.path \
            else root / source.path

    def list_items(self, input_uri: str) -> list[str]:
        items: list[str] = []
        for number, source in enumerate(self.config.sources):
            where = self.source_location(input_uri, source)
            if not where.exists():
                if source.required:
                    raise InputError(f"reader.sources[{number}] ({source.adapter}): {where} does not exist")
                _log.warning("edit source %s (%s) is not there; skipped", where, source.adapter)
                continue
            if source.adapter in _SHARD_ADAPTERS:
                for path in shard_paths(where):
                    table = read_shard(path, columns=["id", "reject_reason"])
                    if not source.include_rejected:
                        table = table.filter(pc.is_null(table.column("reject_reason")))
                    items.extend(f"{number}:{path.name}#{key}" for key in table.column("id").to_pylist())
                continue
            files = [where.name] if where.is_file() else sorted(
                name for name in where.walk_files() if name.endswith((".parquet", ".jsonl")))
            base = where.parent if where.is_file() else where
            for name in files:
                count = len(_external_rows(base / name))
                items.extend(f"{number}:{name}#{row:09d}" for row in range(count))
        return items

    def read_items(self, input_uri: str, items: Sequence[str]) -> pa.Table:
        by_file: dict[tuple[int, str], dict[str, dict[str, Any]]] = {}  # each file read once: row key -> row
        rows = []
        for item in items:
            prefix, _, key = item.partition("#")
            number, _, name = prefix.partition(":")
            source = self.config.sources[int(number)]
            where = self.source_location(input_uri, source)
            base = where.parent if where.is_file() else where
            if (int(number), name) not in by_file:
                by_file[int(number), name] = (
                    {r["id"]: r for r in _shard_rows(base / name, source.adapter)} if source.adapter in _SHARD_ADAPTERS
                    else {f"{n:09d}": r for n, r in enumerate(_external_rows(base / name))})
            rows.append(self._triplet_row(source, base / name, f"{name}#{key}", by_file[int(number), name].get(key)))
        return pa.Table.from_pylist(rows, schema=self.schema.arrow())

    def _triplet_row(self, source: EditSource, file: Location, key: str, upstream: dict[str, Any] | None
                     ) -> dict[str, Any]:
        is_shard = source.adapter in _SHARD_ADAPTERS
        upstream_id = upstream["id"] if is_shard and upstream else key
        if is_shard and upstream is None:
            upstream_id = key.partition("#")[2]
        external_key = None
        if not is_shard and upstream is not None:
            layout = EXTERNAL_LAYOUTS[source.layout or ""]
            if layout.key and all(upstream.get(name) is not None for name in layout.key):
                external_key = "/".join(str(upstream[name]) for name in layout.key)
        upstream_id = external_key or upstream_id
        license_ = source.license or ((upstream or {}).get("license") if is_shard else None) or self.config.license
        row: dict[str, Any] = {"id": row_id(source.dataset, upstream_id), "source_dataset": source.dataset,
                               "upstream_id": upstream_id, "license": license_}
        if upstream is None:
            return row | {"reject_reason": "upstream_row_missing", "reject_stage": "read", "reject_detail": str(file)}
        try:
            if is_shard:
                row |= SHARD_ADAPTERS[source.adapter](upstream, source, self.config)
            else:
                row |= adapt_external(upstream, source, file.parent)
        except TripletError as exc:
            row |= {"reject_reason": exc.reason, "reject_stage": "read", "reject_detail": f"{key}: {exc}"}
        return row

