"""Seed readers of the text-rendering jobs: `procedural://N?seed=S` lists N items, one row each.

The rows hold provenance only (`upstream_id` = `procedural/<S>/<index>`); the stages derive everything from
it (`sample_text_blueprint` in the caption-schema job, `render_text_edit` in the edit-triplet job), so a
rerun reproduces every row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import pyarrow as pa
from pydantic import Field

from data_engine.readers import InputError, Reader, ReaderConfig, procedural_items, register_reader, row_id
from data_engine.editing.triplet import EDIT_TRIPLET
from data_engine.schemas import CAPTION

class TextSeedsConfig(ReaderConfig):
    kind: Literal["text_seeds"] = "text_seeds"
    shard_rows: int = Field(default=64, gt=0)
    source_dataset: str = "textrender_procedural"
    license: str = "generated"


class TextEditSeedsConfig(TextSeedsConfig):
    kind: Literal["text_edit_seeds"] = "text_edit_seeds"  # type: ignore[assignment]
    source_dataset: str = "textrender_edit_procedural"


class _SeedsReader(Reader):
    input_schemes = ("procedural",)

    def list_items(self, input_uri: str) -> list[str]:
        items = procedural_items(input_uri)
        if items is None:
            raise InputError(f"input {input_uri!r}: {self.kind} reads procedural://N or procedural://N?seed=S")
        return items

    def read_items(self, input_uri: str, items: Sequence[str]) -> pa.Table:
        rows = [{"id": row_id(self.config.source_dataset, item), "source_dataset": self.config.source_dataset,
                 "upstream_id": item, "license": self.config.license} for item in items]
        return pa.Table.from_pylist(rows, schema=self.schema.arrow())


@register_reader
class TextSeedsReader(_SeedsReader):
    kind = "text_seeds"
    Config = TextSeedsConfig
    schema = CAPTION


@register_reader
class TextEditSeedsReader(_SeedsReader):
    kind = "text_edit_seeds"
    Config = TextEditSeedsConfig
    schema = EDIT_TRIPLET
