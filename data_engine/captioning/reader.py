"""Reader kind `image_shards`: the accepted images of an upstream `image_sample` shard directory.

Turns the output of an image job (e.g. `out/demo/curated_stage2_512p` of the demo) into rows of another schema
(`caption`) so that a downstream job starts from curated images; listing, reading and provenance are those
of every upstream reader (`data_engine/upstream.py`).
"""

from __future__ import annotations

from typing import Any

from data_engine.readers import register_reader
from data_engine.schemas import CAPTION, IMAGE_FIELDS, IMAGE_SAMPLE
from data_engine.upstream import UpstreamShardsReader

_CARRIED = ("license",) + tuple(f.name for f in IMAGE_FIELDS)


@register_reader
class ImageShardsReader(UpstreamShardsReader, kind="image_shards", schema=CAPTION, upstream_schema=IMAGE_SAMPLE):
    def carry(self, source: dict[str, Any]) -> dict[str, Any]:
        return {name: source[name] for name in _CARRIED}
