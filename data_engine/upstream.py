"""Readers over another job's output: the accepted rows of an upstream shard directory, as rows of this job.

A downstream job (captioning after curation, latent caching or rebalancing after captioning) starts from an
upstream job's committed shards (`data_engine.shards`). Items are `<shard file>#<row id>` of accepted rows
(every row with `include_rejected: true`, e.g. to caption what curation refused for an audit), in shard order, so the listing is deterministic and a rerun skips done shards; a read task opens each of
its shard files once. Every new row gets an id of its own from (`source_dataset`, upstream row id) and keeps
the upstream id as `upstream_id`; a row that vanished from the upstream shard after listing becomes a row
with reason `upstream_row_missing`.

A reader kind is a subclass that names its kind, the schema it emits and the schema it reads as class
keywords, and overrides `carry` when the two schemas differ (`image_shards` in
`data_engine/captioning/reader.py`; `caption_shards`, `edit_shards`, `multiview_collages` in
`trainer/latents.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from data_engine.readers import Reader, ReaderConfig, row_id
from data_engine.schemas import ShardSchema
from data_engine.shards import ShardDirError, read_shard, shard_paths
from data_engine.storage import Location

# Not carried: a new row gets ids of its own, and its decision is this job's (rejected upstream rows read with
# include_rejected start undecided).
_NOT_CARRIED = ("id", "source_dataset", "upstream_id", "reject_reason", "reject_stage", "reject_detail")


class UpstreamShardsConfig(ReaderConfig):
    source_dataset: str = "upstream"  # provenance of the new rows; the upstream row id becomes upstream_id
    # Read the upstream's rejected rows too; they start here as rows like any other (their upstream reason
    # stays in the upstream shards, found through upstream_id).
    include_rejected: bool = False


class UpstreamShardsReader(Reader):
    """Accepted upstream rows turned into rows of `schema` by `carry` (by default: every column but the ids)."""

    Config = UpstreamShardsConfig
    upstream_schema: ClassVar[ShardSchema]

    def __init_subclass__(cls, *, kind: str, schema: ShardSchema, upstream_schema: ShardSchema | None = None,
                          **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.kind, cls.schema, cls.upstream_schema = kind, schema, upstream_schema or schema

    def carry(self, source: dict[str, Any]) -> dict[str, Any]:
        """The output columns taken from one accepted upstream row; columns left out are null."""
        return {f.name: source[f.name] for f in self.schema.fields if f.name not in _NOT_CARRIED}

    def list_items(self, input_uri: str) -> list[str]:
        items = []
        for path in shard_paths(self.location(input_uri)):
            table = read_shard(path, columns=["id", "reject_reason"])
            if not self.config.include_rejected:
                table = table.filter(pc.is_null(table.column("reject_reason")))
            items.extend(f"{path.name}#{upstream}" for upstream in table.column("id").to_pylist())
        return items

    def read_items(self, input_uri: str, items: Sequence[str]) -> pa.Table:
        upstream_rows = self.read_upstream_rows(self.location(input_uri), items)
        rows = []
        for item in items:
            upstream = item.partition("#")[2]
            row = {"id": row_id(self.config.source_dataset, upstream), "source_dataset": self.config.source_dataset,
                   "upstream_id": upstream}
            source = upstream_rows.get(upstream)
            if source is None:  # the upstream shard changed after listing
                row.update(license=self.config.license, reject_reason="upstream_row_missing", reject_stage="read",
                           reject_detail=item)
            else:
                row.update(self.carry(source))
            rows.append(row)
        return pa.Table.from_pylist(rows, schema=self.schema.arrow())

    def read_upstream_rows(self, root: Location, items: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The items' upstream rows by id, each shard file read once and checked against `upstream_schema`."""
        wanted: dict[str, list[str]] = {}
        for item in items:
            file_name, _, upstream = item.partition("#")
            wanted.setdefault(file_name, []).append(upstream)
        by_id: dict[str, dict[str, Any]] = {}
        for file_name, ids in wanted.items():
            path = root / file_name
            table = read_shard(path)
            missing = [f.name for f in self.upstream_schema.fields if f.name not in table.column_names]
            if missing:
                raise ShardDirError(f"{path}: not {self.upstream_schema.name} shards (missing columns {missing})")
            selected = table.filter(pc.is_in(table.column("id"), pa.array(ids)))
            by_id.update((row["id"], row) for row in selected.to_pylist())
        return by_id

