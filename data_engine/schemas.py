"""Shard schemas: the written contract between stages, defined once.

Every schema starts with the provenance and decision columns that all derived shards carry. A job's output
schema is its base schema plus the columns its stages declare (scores, captions, ...); `validate_table`
checks a table against that on write and on read.

Image conventions: `image_bytes` holds encoded JPEG/PNG/WebP (or is null when `image_uri` points at large
media); `md5`/`sha256` are of the original source file so exact duplicates are found across re-encodes.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import pyarrow as pa


class SchemaError(ValueError):
    """A table does not match the schema it claims; the message names the column."""


@dataclass(frozen=True)
class ShardSchema:
    name: str
    version: int
    fields: tuple[pa.Field, ...]

    def arrow(self, extra_fields: tuple[pa.Field, ...] = ()) -> pa.Schema:
        base_names = {f.name for f in self.fields}
        clashes = [f.name for f in extra_fields if f.name in base_names]
        if clashes:
            raise SchemaError(f"schema {self.name}: stage columns {clashes} redefine base columns")
        return pa.schema(
            list(self.fields) + list(extra_fields),
            metadata={b"joyai.schema": self.name.encode(), b"joyai.schema_version": str(self.version).encode()},
        )


PROVENANCE_FIELDS = (
    pa.field("id", pa.string(), nullable=False),
    pa.field("source_dataset", pa.string(), nullable=False),
    pa.field("upstream_id", pa.string(), nullable=False),
    pa.field("license", pa.string(), nullable=False),
)
# reject_reason is null for accepted rows (a short stable code for histograms); reject_stage names the stage
# that set it; reject_detail says what exactly went wrong (an exception message, a measured value).
DECISION_FIELDS = (
    pa.field("reject_reason", pa.string()),
    pa.field("reject_stage", pa.string()),
    pa.field("reject_detail", pa.string()),
)
IMAGE_FIELDS = (
    pa.field("image_bytes", pa.binary()),
    pa.field("image_uri", pa.string()),
    pa.field("image_format", pa.string()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("md5", pa.string()),
    pa.field("sha256", pa.string()),
)

# Chat messages compatible with Qwen-VL SFT: content is a list of parts, images referenced by index into
# the row's `images` list.
MESSAGE_PART = pa.struct([("type", pa.string()), ("text", pa.string()), ("image_index", pa.int32())])
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.list_(MESSAGE_PART))])
IMAGE_REF = pa.struct(
    [("bytes", pa.binary()), ("uri", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
     ("sha256", pa.string())]
)

IMAGE_SAMPLE = ShardSchema("image_sample", 1, PROVENANCE_FIELDS + IMAGE_FIELDS + DECISION_FIELDS)

CAPTION = ShardSchema(
    "caption",
    1,
    PROVENANCE_FIELDS
    + IMAGE_FIELDS
    + (
        pa.field("captions", pa.map_(pa.string(), pa.string())),  # "<type>/<lang>" -> text
        pa.field("caption_sampling", pa.string()),  # JSON: probabilities over type and language
    )
    + DECISION_FIELDS,
)

QA_CONVERSATION = ShardSchema(
    "qa_conversation",
    2,
    PROVENANCE_FIELDS
    + (
        pa.field("images", pa.list_(IMAGE_REF)),
        pa.field("messages", pa.list_(MESSAGE)),
        pa.field("task", pa.string()),
        pa.field("metadata", pa.string()),  # JSON
        # "train" or "eval", from a hash of the scene id (held-out scenes); null: not split (general-domain rows)
        pa.field("split", pa.string()),
    )
    + DECISION_FIELDS,
)

MULTIVIEW_SAMPLE = ShardSchema(
    "multiview_sample",
    1,
    PROVENANCE_FIELDS
    + (
        pa.field("views", pa.list_(IMAGE_REF)),
        pa.field("cameras", pa.string()),  # JSON: per-view intrinsics and camera-to-world poses
        pa.field("main_view_index", pa.int32()),
        pa.field("collage", IMAGE_REF),
        pa.field("structured_caption", pa.string()),  # JSON with the five Table 6 fields
        pa.field("dense_caption", pa.string()),
    )
    + DECISION_FIELDS,
)

# One row per object track lifted from an RGB-D sequence (openspatial lifting), accepted or rejected with its
# reason; a sequence that cannot be lifted at all is one row without a track. Accepted rows of one `scene_id`
# are that sequence's lifted scene: its objects, and through `observations` the per-frame masks they came from.
OBB = pa.struct([("center", pa.list_(pa.float64())), ("extents", pa.list_(pa.float64())),
                 ("rotation", pa.list_(pa.float64()))])  # rotation row-major 3x3; conventions.OrientedBox
TRACK_OBSERVATION = pa.struct([("frame_id", pa.string()), ("instance_id", pa.int32()), ("mask_iou", pa.float64())])
LIFTED_OBJECT = ShardSchema(
    "lifted_object",
    1,
    PROVENANCE_FIELDS
    + (
        pa.field("scene_id", pa.string()),
        pa.field("sequence", pa.string()),  # the reader's item key: where the frames are read again
        pa.field("track_id", pa.int32()),
        pa.field("category", pa.string()),
        pa.field("box", OBB),
        pa.field("observations", pa.list_(TRACK_OBSERVATION)),  # per frame: its own instance id, projected-box IoU
        pa.field("consistent_views", pa.int32()),
    )
    + DECISION_FIELDS,
)

# One row per candidate frame pair of one shot of a video (data_engine/editing): both frames as PNG bytes at
# their stored size, where they come from, and the scores the pair stages decide on. A video that cannot be
# read, and a sampled frame dropped as blurred, are rows too (no pair_id), rejected with their reason.
VIDEO_PAIR = ShardSchema(
    "video_pair",
    1,
    PROVENANCE_FIELDS
    + (
        pa.field("video_id", pa.string()),  # the reader's item key: the video's path under the input
        pa.field("shot_id", pa.int32()),  # 0-based shot of the video
        pa.field("pair_id", pa.string()),  # "<video_id>#<source frame>-<target frame>"
        pa.field("source_frame_index", pa.int32()),  # decode order
        pa.field("target_frame_index", pa.int32()),
        pa.field("source_timestamp_s", pa.float64()),
        pa.field("target_timestamp_s", pa.float64()),
        pa.field("source_image", pa.binary()),  # PNG
        pa.field("target_image", pa.binary()),  # PNG
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("source_sharpness", pa.float32()),  # variance of the Laplacian at the stored size
        pa.field("target_sharpness", pa.float32()),
        pa.field("sharpness_threshold", pa.float32()),  # the video's own blur threshold
        pa.field("change_score", pa.float32()),  # fraction of pixels that changed (data_engine.editing.pairs)
    )
    + DECISION_FIELDS,
)

SCHEMAS: dict[str, ShardSchema] = {
    s.name: s
    for s in (IMAGE_SAMPLE, CAPTION, QA_CONVERSATION, MULTIVIEW_SAMPLE, LIFTED_OBJECT, VIDEO_PAIR)
}
# Schemas a subpackage owns beside its typed helpers, registered when that module is imported (on first use
# here: the module imports this one for the shared fields, so it cannot be imported at the top).
SCHEMA_MODULES: dict[str, str] = {"edit_triplet": "data_engine.editing.triplet"}


def register_schema(schema: ShardSchema) -> ShardSchema:
    if SCHEMAS.get(schema.name, schema) is not schema:
        raise SchemaError(f"schema {schema.name!r} defined twice")
    SCHEMAS[schema.name] = schema
    return schema


def schema_names() -> list[str]:
    return sorted(set(SCHEMAS) | set(SCHEMA_MODULES))


def get_schema(name: str) -> ShardSchema:
    if name not in SCHEMAS and name in SCHEMA_MODULES:
        importlib.import_module(SCHEMA_MODULES[name])
    try:
        return SCHEMAS[name]
    except KeyError:
        raise SchemaError(f"unknown schema {name!r}; known: {', '.join(schema_names())}") from None


def conform_table(table: pa.Table, schema: pa.Schema, *, where: str) -> pa.Table:
    """Return `table` with exactly `schema`'s columns in order and types; raise naming the bad column."""
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise SchemaError(f"{where}: missing columns {missing}")
    extra = [n for n in table.column_names if n not in schema.names]
    if extra:
        raise SchemaError(f"{where}: undeclared columns {extra}")
    columns = []
    for field in schema:
        column = table.column(field.name)
        if not column.type.equals(field.type):
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaError(f"{where}: column {field.name!r} has type {column.type}, expected {field.type}") from exc
        if not field.nullable and column.null_count:
            raise SchemaError(f"{where}: column {field.name!r} has {column.null_count} nulls but is required")
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def validate_table(table: pa.Table, *, where: str) -> ShardSchema:
    """Check a table read from a shard against the schema named in its metadata."""
    metadata = table.schema.metadata or {}
    name = metadata.get(b"joyai.schema")
    if name is None:
        raise SchemaError(f"{where}: no joyai.schema metadata; not a shard written by this project")
    shard_schema = get_schema(name.decode())
    version = int(metadata.get(b"joyai.schema_version", b"0"))
    if version != shard_schema.version:
        raise SchemaError(f"{where}: schema {shard_schema.name} version {version}, this code reads {shard_schema.version}")
    for field in shard_schema.fields:
        if field.name not in table.schema.names:
            raise SchemaError(f"{where}: missing column {field.name!r} of schema {shard_schema.name}")
        actual = table.schema.field(field.name).type
        if not actual.equals(field.type):
            raise SchemaError(f"{where}: column {field.name!r} has type {actual}, schema says {field.type}")
    return shard_schema
