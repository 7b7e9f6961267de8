"""Annotation batches: shard rows out as Label Studio tasks (with hidden sentinels), annotations back in.

A batch directory holds:
- `tasks.json`: Label Studio's import format, `[{"data": {"image": <data URI>, "task_key": <opaque>}}]`, in a
  shuffled order. Sentinels look exactly like real items: same keys, an opaque key from a per-batch secret;
- `label_config.xml`: the labeling configuration generated from the rubric;
- `batch.parquet`: the private key (never shown to annotators): task key -> kind (`item` | `sentinel`), the
  row id and shard file of an item, the known scores of a sentinel;
- `batch.json`: batch id, source shard directory, counts;
- after import, `annotations.parquet`: one row per submitted annotation (task key, kind, row id, annotator,
  the three scores, the weighted score, lead time, creation time), joinable to the shard rows by `row_id`.

Sentinels: `round(size * sentinel_fraction)` of the `size` tasks (50 of 1,000), drawn from a sentinel pool
(Parquet: `id`, `image_bytes` and one known score per rubric dimension).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from data_engine.annotation.rubric import DIMENSION_NAMES, IMAGE_FIELD, SCORE_LEVELS, label_config, weighted_score
from data_engine.shards import read_shard, shard_paths

TASKS_FILE, KEY_FILE, BATCH_FILE, CONFIG_FILE = "tasks.json", "batch.parquet", "batch.json", "label_config.xml"
ANNOTATIONS_FILE = "annotations.parquet"
TASK_KEY = "task_key"
DEFAULT_SENTINEL_FRACTION = 0.05

KEY_SCHEMA = pa.schema([("task_key", pa.string()), ("kind", pa.string()), ("row_id", pa.string()),
                        ("shard", pa.string())] + [(name, pa.int8()) for name in DIMENSION_NAMES])
ANNOTATION_SCHEMA = pa.schema(
    [("task_key", pa.string()), ("kind", pa.string()), ("row_id", pa.string()), ("annotation_id", pa.int64()),
     ("annotator", pa.string())] + [(name, pa.int8()) for name in DIMENSION_NAMES]
    + [("weighted_score", pa.float64()), ("lead_time_s", pa.float64()), ("created_at", pa.string())])


class AnnotationError(ValueError):
    """Bad input to the annotation workflow; the message names the file and the offending entry."""


def sentinel_count(size: int, fraction: float = DEFAULT_SENTINEL_FRACTION) -> int:
    return round(size * fraction)


def image_data_uri(data: bytes, max_side: int) -> str:
    """The image as annotators see it: downscaled to `max_side` and embedded as a JPEG data URI."""
    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGB")
        image.thumbnail((max_side, max_side))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _accepted_rows(shard_dir: Path) -> list[tuple[str, str, bytes]]:
    rows = []
    for path in shard_paths(shard_dir):
        table = read_shard(path, columns=["id", "image_bytes", "reject_reason"])
        table = table.filter(pc.is_null(table.column("reject_reason")))
        rows += [(path.name, row_id, image) for row_id, image in
                 zip(table.column("id").to_pylist(), table.column("image_bytes").to_pylist()) if image]
    return rows


def _sentinel_pool(path: Path) -> list[dict[str, Any]]:
    table = pq.read_table(path)
    missing = [c for c in ("id", "image_bytes", *DIMENSION_NAMES) if c not in table.column_names]
    if missing:
        raise AnnotationError(f"{path}: sentinel pool lacks columns {missing}")
    rows = table.to_pylist()
    for row in rows:
        for name in DIMENSION_NAMES:
            if row[name] not in SCORE_LEVELS:
                raise AnnotationError(f"{path}: sentinel {row['id']}: {name} = {row[name]!r}, not one of {SCORE_LEVELS}")
    return rows


def export_batch(shard_dir: Path, sentinel_pool: Path, out: Path, *, batch_id: str, size: int,
                 sentinel_fraction: float = DEFAULT_SENTINEL_FRACTION, seed: int = 0,
                 image_max_side: int = 1024) -> dict[str, Any]:
    """Write a batch of `size` tasks (sentinels included) to `out`; returns batch.json's content."""
    n_sentinels = sentinel_count(size, sentinel_fraction)
    n_items = size - n_sentinels
    rows = _accepted_rows(shard_dir)
    if len(rows) < n_items:
        raise AnnotationError(f"{shard_dir}: {len(rows)} accepted rows with images, a batch of {size} needs "
                              f"{n_items} (plus {n_sentinels} sentinels)")
    pool = _sentinel_pool(sentinel_pool)
    if len(pool) < n_sentinels:
        raise AnnotationError(f"{sentinel_pool}: {len(pool)} sentinels, the batch needs {n_sentinels}")
    rng = random.Random(f"{batch_id}\x00{seed}")
    secret = secrets.token_hex(16)  # task keys cannot be traced back to rows or sentinels without batch.parquet

    def task_key(kind: str, source_id: str) -> str:
        return hashlib.sha256(f"{secret}\x00{kind}\x00{source_id}".encode()).hexdigest()[:20]

    entries = []
    for shard, row_id, image in rng.sample(rows, n_items):
        entries.append(({"task_key": task_key("item", row_id), "kind": "item", "row_id": row_id, "shard": shard}
                        | dict.fromkeys(DIMENSION_NAMES), image))
    for sentinel in rng.sample(pool, n_sentinels):
        entries.append(({"task_key": task_key("sentinel", str(sentinel["id"])), "kind": "sentinel",
                         "row_id": str(sentinel["id"]), "shard": None}
                        | {name: sentinel[name] for name in DIMENSION_NAMES}, sentinel["image_bytes"]))
    rng.shuffle(entries)
    out.mkdir(parents=True, exist_ok=True)
    tasks = [{"data": {IMAGE_FIELD: image_data_uri(image, image_max_side), TASK_KEY: key["task_key"]}}
             for key, image in entries]
    (out / TASKS_FILE).write_text(json.dumps(tasks))
    (out / CONFIG_FILE).write_text(label_config())
    pq.write_table(pa.Table.from_pylist([key for key, _ in entries], schema=KEY_SCHEMA), out / KEY_FILE)
    summary = {"batch_id": batch_id, "shard_dir": str(shard_dir), "sentinel_pool": str(sentinel_pool),
               "size": size, "items": n_items, "sentinels": n_sentinels, "seed": seed,
               "created": datetime.now(timezone.utc).isoformat()}
    (out / BATCH_FILE).write_text(json.dumps(summary, indent=2))
    return summary


def read_batch_key(batch_dir: Path) -> dict[str, dict[str, Any]]:
    path = batch_dir / KEY_FILE
    if not path.is_file():
        raise AnnotationError(f"{batch_dir}: no {KEY_FILE}; not a batch written by `export`")
    return {row["task_key"]: row for row in pq.read_table(path).to_pylist()}


def _annotator(completed_by: Any, users: Mapping[int, str]) -> str:
    """Label Studio exports `completed_by` as a user id (or, in some formats, a user object)."""
    if isinstance(completed_by, dict):
        return str(completed_by.get("email") or completed_by.get("id"))
    return users.get(completed_by, f"user:{completed_by}")


def _scores(result: Sequence[Mapping[str, Any]], where: str) -> dict[str, int]:
    scores: dict[str, int] = {}
    for region in result:
        name = region.get("from_name")
        if name in DIMENSION_NAMES:
            choices = (region.get("value") or {}).get("choices") or []
            if len(choices) != 1 or not str(choices[0]).lstrip("-").isdigit():
                raise AnnotationError(f"{where}: {name}: expected one numeric choice, got {choices!r}")
            scores[name] = int(choices[0])
    missing = [name for name in DIMENSION_NAMES if name not in scores]
    if missing:
        raise AnnotationError(f"{where}: no score for {missing}")
    weighted_score(scores)  # every score one of the rubric's levels, or a one-line error
    return scores


def parse_export(export: Any, key: Mapping[str, Mapping[str, Any]], users: Mapping[int, str] | None = None,
                 *, source: str = "export") -> list[dict[str, Any]]:
    """Rows of ANNOTATION_SCHEMA from Label Studio's JSON export (a list of tasks with their annotations);
    cancelled (skipped) annotations are left out."""
    if not isinstance(export, list):
        raise AnnotationError(f"{source}: expected Label Studio's JSON export (a list of tasks)")
    rows = []
    for number, task in enumerate(export):
        task_key = ((task or {}).get("data") or {}).get(TASK_KEY) if isinstance(task, dict) else None
        if task_key not in key:
            raise AnnotationError(f"{source}: task {number} has task_key {task_key!r}, which is not in this batch")
        for annotation in task.get("annotations") or []:
            if annotation.get("was_cancelled"):
                continue
            where = f"{source}: task {task.get('id', number)} annotation {annotation.get('id')}"
            scores = _scores(annotation.get("result") or [], where)
            rows.append({"task_key": task_key, "kind": key[task_key]["kind"], "row_id": key[task_key]["row_id"],
                         "annotation_id": annotation.get("id"),
                         "annotator": _annotator(annotation.get("completed_by"), users or {}), **scores,
                         "weighted_score": weighted_score(scores),
                         "lead_time_s": annotation.get("lead_time"), "created_at": annotation.get("created_at")})
    return rows


def import_annotations(batch_dir: Path, export_path: Path, users_path: Path | None = None) -> pa.Table:
    """Read Label Studio's export into `annotations.parquet` of the batch; returns the table."""
    try:
        export = json.loads(export_path.read_text())
        users_listing = json.loads(users_path.read_text()) if users_path else []
    except (OSError, json.JSONDecodeError) as exc:
        raise AnnotationError(f"{export_path}: {exc}") from None
    users = {user["id"]: user.get("email") or user.get("username") for user in users_listing}
    rows = parse_export(export, read_batch_key(batch_dir), users, source=str(export_path))
    table = pa.Table.from_pylist(rows, schema=ANNOTATION_SCHEMA)
    pq.write_table(table, batch_dir / ANNOTATIONS_FILE)
    return table


def read_annotations(batch_dir: Path) -> list[dict[str, Any]]:
    path = batch_dir / ANNOTATIONS_FILE
    if not path.is_file():
        raise AnnotationError(f"{batch_dir}: no {ANNOTATIONS_FILE}; run `import` first")
    return pq.read_table(path).to_pylist()
