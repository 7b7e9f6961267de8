"""The one edit-triplet format (report 5.1.1): every edit source (video pairs, spatial renders, text renders,
expert models, external datasets) is written as these columns, so curation, refinement, balancing and the
trainer read one schema.

A row is a source image, optional reference images, an instruction and the target image, plus the labels
balancing works over (`BALANCE_AXES`: task category, granularity, input condition, language, domain), the
source kind, and, when the source knows it, where the edit happens: `edit_region` (a pixel box x0, y0, x1,
y1 in the source image, right and bottom exclusive) and/or `edit_mask` (a greyscale image of the source's
size, non-zero where the edit may change pixels). `metadata` keeps what the source says beyond that (JSON).
`language` is the language of `instruction`.

Rows an upstream writer (the spatial-edit renderer, the text-edit stage) makes before they pass through an
adapter may leave the labels empty; `data_engine/editing/adapters.py` fills them, and `TripletLabels`
validates them there.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, ValidationError

from data_engine.captioning.prompts import Language
from data_engine.schemas import DECISION_FIELDS, IMAGE_REF, PROVENANCE_FIELDS, ShardSchema, register_schema
import pyarrow as pa

SourceKind = Literal["video", "spatial_render", "text_render", "expert_model", "external"]
# What the edit does. `object_move`: translate / scale / rotate an object with the camera fixed; `viewpoint`:
# the camera moves around a static scene; `text`: rendered text replaced; `attribute`: colour, material, size
# of something that stays; `action`: a pose or motion change (video pairs); `global`: lighting, weather, season.
TaskCategory = Literal["add", "remove", "replace", "attribute", "text", "object_move", "viewpoint", "background",
                       "style", "action", "global", "other"]
# How much of the image the edit may change: a region (a box or mask), one whole object, or all of it.
Granularity = Literal["region", "object", "global"]
# What conditions the edit besides the source image: the instruction alone, a visual cue drawn on the source
# (the spatial edits' target box), or reference images.
InputCondition = Literal["text", "text_visual_cue", "text_reference"]
Domain = Literal["photo", "render_3d", "graphic_design", "illustration", "other"]

BALANCE_AXES = ("task_category", "granularity", "input_condition", "language", "domain")
AXIS_VALUES: dict[str, tuple[str, ...]] = {
    "task_category": get_args(TaskCategory), "granularity": get_args(Granularity),
    "input_condition": get_args(InputCondition), "language": get_args(Language), "domain": get_args(Domain)}

EDIT_TRIPLET = register_schema(ShardSchema(
    "edit_triplet",
    2,
    PROVENANCE_FIELDS
    + (
        pa.field("source_image", IMAGE_REF),
        pa.field("reference_images", pa.list_(IMAGE_REF)),
        pa.field("instruction", pa.string()),
        pa.field("target_image", IMAGE_REF),
        pa.field("language", pa.string()),  # of the instruction
        pa.field("task_category", pa.string()),
        pa.field("granularity", pa.string()),
        pa.field("input_condition", pa.string()),
        pa.field("domain", pa.string()),
        pa.field("source_kind", pa.string()),
        pa.field("edit_region", pa.list_(pa.int32())),  # x0, y0, x1, y1 in source pixels, x1 / y1 exclusive
        pa.field("edit_mask", IMAGE_REF),  # greyscale, the source's size, non-zero where the edit may act
        pa.field("metadata", pa.string()),  # JSON: what the source says beyond the columns
    )
    + DECISION_FIELDS,
))


class TripletError(ValueError):
    """A source row that cannot become a triplet; `reason` is the reject code, the message its detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class TripletLabels(BaseModel):
    """The labels every triplet carries, checked against the vocabularies above."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_category: TaskCategory
    granularity: Granularity
    input_condition: InputCondition
    language: Language
    domain: Domain
    source_kind: SourceKind


def image_ref(data: bytes, *, uri: str | None = None) -> dict[str, Any]:
    """An IMAGE_REF value of encoded image bytes: its size read from the header, its SHA-256;
    TripletError `undecodable_image` when the bytes are no image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise TripletError("undecodable_image", f"{len(data)} bytes that are no image ({exc})") from None
    return {"bytes": data, "uri": uri, "width": width, "height": height, "sha256": hashlib.sha256(data).hexdigest()}


def triplet_columns(*, source_image: bytes, target_image: bytes, instruction: str | None, labels: TripletLabels,
                    reference_images: Sequence[bytes] = (), edit_region: Sequence[int] | None = None,
                    edit_mask: bytes | None = None, metadata: str | None = None) -> dict[str, Any]:
    """The triplet columns of one row (everything but provenance and decision), checked: both images decode,
    the instruction says something, a region lies inside the source, a mask has the source's size."""
    if not instruction or not instruction.strip():
        raise TripletError("empty_instruction", "the source row has no instruction")
    source, target = image_ref(source_image), image_ref(target_image)
    if edit_region is not None:
        x0, y0, x1, y1 = (int(v) for v in edit_region)
        if not (0 <= x0 < x1 <= source["width"] and 0 <= y0 < y1 <= source["height"]):
            raise TripletError("bad_edit_region", f"region {list(edit_region)} is empty or outside the "
                                                  f"{source['width']}x{source['height']} source")
        edit_region = [x0, y0, x1, y1]
    mask = None
    if edit_mask is not None:
        mask = image_ref(edit_mask)
        if (mask["width"], mask["height"]) != (source["width"], source["height"]):
            raise TripletError("bad_edit_mask", f"mask {mask['width']}x{mask['height']} is not the source's "
                                                f"{source['width']}x{source['height']}")
    return {"source_image": source, "reference_images": [image_ref(data) for data in reference_images],
            "instruction": instruction.strip(), "target_image": target, "edit_region": edit_region,
            "edit_mask": mask, "metadata": metadata, **labels.model_dump()}


def labels_from(values: dict[str, Any]) -> TripletLabels:
    """TripletLabels from a mapping; TripletError `unknown_label` naming the field and the allowed values."""
    try:
        return TripletLabels.model_validate({name: values.get(name) for name in TripletLabels.model_fields})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise TripletError("unknown_label", f"{'.'.join(map(str, first['loc']))}: {first['msg']} "
                                            f"(got {first.get('input')!r})") from None


def decode_rgb(ref: dict[str, Any]) -> np.ndarray:
    """HxWx3 uint8 RGB of an IMAGE_REF value."""
    with Image.open(io.BytesIO(ref["bytes"])) as image:
        return np.asarray(image.convert("RGB"))


def edit_area(row: dict[str, Any], shape: tuple[int, int]) -> np.ndarray | None:
    """Where the edit may change pixels, as a boolean HxW array of `shape` (the source's (height, width)):
    the union of the mask and the region; None when the row knows neither."""
    region, mask_ref = row.get("edit_region"), row.get("edit_mask")
    if region is None and mask_ref is None:
        return None
    area = np.zeros(shape, dtype=bool)
    if region is not None:
        x0, y0, x1, y1 = region
        area[y0:y1, x0:x1] = True
    if mask_ref is not None:
        with Image.open(io.BytesIO(mask_ref["bytes"])) as mask:
            area |= np.asarray(mask.convert("L").resize((shape[1], shape[0]), Image.Resampling.NEAREST)) > 0
    return area
