"""Builders for the annotation tests: shard directories of small images, sentinel pools, and Label Studio
exports in the format its JSON export writes."""

from __future__ import annotations

import io
import itertools
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from data_engine.annotation.rubric import DIMENSION_NAMES
from data_engine.readers import row_id
from data_engine.schemas import IMAGE_SAMPLE
from data_engine.shards import write_shard


def png(index: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (index % 251, index * 7 % 251, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def shard_dir(root: Path, rows: int, rejected: int = 0) -> Path:
    records = [{"id": row_id("t", str(i)), "source_dataset": "t", "upstream_id": str(i), "license": "CC0",
                "image_bytes": png(i), "reject_reason": "too_small" if i < rejected else None}
               for i in range(rows + rejected)]
    root.mkdir(parents=True)
    write_shard(root, 0, pa.Table.from_pylist(records, schema=IMAGE_SAMPLE.arrow()), [])
    return root


def sentinel_pool(path: Path, count: int) -> Path:
    levels = itertools.cycle([(5, 4, 3), (3, 3, 0), (0, 0, 0), (4, 3, 3)])
    rows = [{"id": f"sentinel-{i}", "image_bytes": png(1000 + i), **dict(zip(DIMENSION_NAMES, next(levels)))}
            for i in range(count)]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def ls_annotation(annotation_id: int, user: int, scores: tuple[int, int, int], lead_time: float = 4.0) -> dict[str, Any]:
    """One annotation as Label Studio's JSON export holds it."""
    return {"id": annotation_id, "completed_by": user, "was_cancelled": False, "lead_time": lead_time,
            "created_at": "2026-12-01T10:00:00Z",
            "result": [{"from_name": name, "to_name": "image", "type": "choices", "value": {"choices": [str(score)]}}
                       for name, score in zip(DIMENSION_NAMES, scores)]}
