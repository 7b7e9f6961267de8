"""Reader kind `image_shards`: the accepted images of an upstream `image_sample` shard directory.

Turns the output of an image job (e.g. `out/demo/images` of the demo) into rows of another schema
(`caption` by default) so that a downstream job starts from curated images. Items are `<shard file>#<row id>`
of accepted rows only, listed in shard order, so the listing is deterministic and a rerun skips done shards.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from data_engine.readers import Reader, ReaderConfig, register_reader, row_id
from data_engine.schemas import CAPTION, IMAGE_FIELDS, ShardSchema
from data_engine.shards import read_shard, shard_paths

_CARRIED = ("license",) + tuple(f.name for f in IMAGE_FIELDS)


class ImageShardsConfig(ReaderConfig):
    kind: Literal["image_shards"] = "image_shards"
    source_dataset: str = "upstream"  # provenance of the new rows; the upstream row id becomes upstream_id


@register_reader
class ImageShardsReader(Reader):
    kind = "image_shards"
    Config = ImageShardsConfig
    schema: ShardSchema = CAPTION

    def list_items(self, input_uri: str) -> list[str]:
        root = Path(input_uri.removeprefix("file://"))
        items = []
        for path in shard_paths(root):
            table = read_shard(path, columns=["id", "reject_reason"])
            accepted = table.filter(pc.is_null(table.column("reject_reason")))
            items.extend(f"{path.name}#{upstream}" for upstream in accepted.column("id").to_pylist())
        return items

    def read_items(self, input_uri: str, items: Sequence[str]) -> pa.Table:
        root = Path(input_uri.removeprefix("file://"))
        wanted: dict[str, list[str]] = {}
        for item in items:
            file_name, _, upstream = item.partition("#")
            wanted.setdefault(file_name, []).append(upstream)
        parts = []
        for file_name, ids in wanted.items():
            table = read_shard(root / file_name)
            parts.append(table.filter(pc.is_in(table.column("id"), pa.array(ids))).select(["id", *_CARRIED]))
        upstream_rows = pa.concat_tables(parts)
        by_id = {row["id"]: row for row in upstream_rows.to_pylist()}
        columns: dict[str, list] = {f.name: [] for f in self.schema.fields}
        for item in items:
            upstream = item.partition("#")[2]
            source = by_id.get(upstream)
            row = dict.fromkeys(columns)
            row.update(id=row_id(self.config.source_dataset, upstream), source_dataset=self.config.source_dataset,
                       upstream_id=upstream, license=self.config.license)
            if source is None:  # the upstream shard changed after listing
                row.update(reject_reason="upstream_row_missing", reject_stage="read", reject_detail=item)
            else:
                row.update({name: source[name] for name in _CARRIED})
            for name in columns:
                columns[name].append(row[name])
        return pa.table(columns, schema=self.schema.arrow())
