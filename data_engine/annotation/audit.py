"""Audits of an annotated batch and the append-only ledger of their decisions.

An item of a batch is accepted when the mean weighted score of its annotations is at least
`accept_threshold`. An audit samples `fraction` (5%) of the accepted items of the previous batch into a
new batch for auditors (no sentinels: the auditors are the reference); once its annotations are imported,
an audited item whose audit score falls below the threshold is a low-quality pass. When the low-quality pass
rate exceeds `max_low_quality_rate` (5%) the audited batch is returned for re-annotation, otherwise it passes.

The ledger is a directory of Parquet files, one per decision, created exclusively and never rewritten; a
batch's status is its latest entry. By default it sits beside the batch directories (`<batches>/ledger`).
"""

from __future__ import annotations

import json
import math
import os
import random
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from data_engine.annotation.batch import (BATCH_FILE, CONFIG_FILE, KEY_FILE, KEY_SCHEMA, TASKS_FILE, AnnotationError,
                                          read_annotations, read_batch_key)

DEFAULT_ACCEPT_THRESHOLD = 3.0
DEFAULT_AUDIT_FRACTION = 0.05
DEFAULT_MAX_LOW_QUALITY_RATE = 0.05
LEDGER_SCHEMA = pa.schema([("batch_id", pa.string()), ("audit_batch_id", pa.string()), ("audited", pa.int32()),
                           ("low_quality_passes", pa.int32()), ("low_quality_rate", pa.float64()),
                           ("max_low_quality_rate", pa.float64()), ("status", pa.string()),
                           ("decided_at", pa.string())])


def default_ledger(batch_dir: Path) -> Path:
    return batch_dir.parent / "ledger"


def item_scores(annotations: list[dict[str, Any]]) -> dict[str, float]:
    """Mean weighted score per real item (row id); sentinels are left out."""
    by_row: dict[str, list[float]] = defaultdict(list)
    for annotation in annotations:
        if annotation["kind"] == "item":
            by_row[annotation["row_id"]].append(annotation["weighted_score"])
    return {row_id: sum(scores) / len(scores) for row_id, scores in by_row.items()}


def accepted_items(batch_dir: Path, accept_threshold: float = DEFAULT_ACCEPT_THRESHOLD) -> list[str]:
    return sorted(row_id for row_id, score in item_scores(read_annotations(batch_dir)).items()
                  if score >= accept_threshold)


def audit_sample_size(accepted: int, fraction: float = DEFAULT_AUDIT_FRACTION) -> int:
    return min(accepted, max(1, math.ceil(accepted * fraction))) if accepted else 0


def export_audit(batch_dir: Path, out: Path, *, audit_batch_id: str, fraction: float = DEFAULT_AUDIT_FRACTION,
                 accept_threshold: float = DEFAULT_ACCEPT_THRESHOLD, seed: int = 0) -> dict[str, Any]:
    """An audit batch of the accepted items of `batch_dir`: the same tasks (image, task key), a subset."""
    accepted = accepted_items(batch_dir, accept_threshold)
    chosen = set(random.Random(f"{audit_batch_id}\x00{seed}").sample(accepted, audit_sample_size(len(accepted), fraction)))
    key = read_batch_key(batch_dir)
    tasks = [task for task in json.loads((batch_dir / TASKS_FILE).read_text())
             if key[task["data"]["task_key"]]["kind"] == "item" and key[task["data"]["task_key"]]["row_id"] in chosen]
    out.mkdir(parents=True, exist_ok=True)
    (out / TASKS_FILE).write_text(json.dumps(tasks))
    (out / CONFIG_FILE).write_text((batch_dir / CONFIG_FILE).read_text())
    pq.write_table(pa.Table.from_pylist([key[t["data"]["task_key"]] for t in tasks], schema=KEY_SCHEMA), out / KEY_FILE)
    source = json.loads((batch_dir / BATCH_FILE).read_text())
    summary = {"batch_id": audit_batch_id, "audit_of": source["batch_id"], "shard_dir": source["shard_dir"],
               "size": len(tasks), "items": len(tasks), "sentinels": 0, "accepted_in_audited_batch": len(accepted),
               "accept_threshold": accept_threshold, "seed": seed, "created": datetime.now(timezone.utc).isoformat()}
    (out / BATCH_FILE).write_text(json.dumps(summary, indent=2))
    return summary


def audit_status(audited: int, low_quality_passes: int, max_rate: float = DEFAULT_MAX_LOW_QUALITY_RATE) -> str:
    """`returned` when the low-quality pass rate exceeds `max_rate`, else `passed`."""
    return "returned" if audited and low_quality_passes / audited > max_rate else "passed"


def decide_audit(audit_dir: Path, ledger_dir: Path, *, max_rate: float = DEFAULT_MAX_LOW_QUALITY_RATE) -> dict[str, Any]:
    """Score the imported audit annotations, append the decision to the ledger and return it."""
    summary = json.loads((audit_dir / BATCH_FILE).read_text())
    if "audit_of" not in summary:
        raise AnnotationError(f"{audit_dir}: not an audit batch (made by `audit`)")
    scores = item_scores(read_annotations(audit_dir))
    if not scores:
        raise AnnotationError(f"{audit_dir}: no audit annotations imported")
    low = sum(score < summary["accept_threshold"] for score in scores.values())
    entry = {"batch_id": summary["audit_of"], "audit_batch_id": summary["batch_id"], "audited": len(scores),
             "low_quality_passes": low, "low_quality_rate": low / len(scores), "max_low_quality_rate": max_rate,
             "status": audit_status(len(scores), low, max_rate), "decided_at": datetime.now(timezone.utc).isoformat()}
    append_ledger(ledger_dir, entry)
    return entry


def append_ledger(ledger_dir: Path, entry: dict[str, Any]) -> Path:
    """Write one entry as a new file; an existing file is never opened for writing."""
    ledger_dir.mkdir(parents=True, exist_ok=True)
    sequence = len(list(ledger_dir.glob("entry-*.parquet")))
    while True:
        path = ledger_dir / f"entry-{sequence:08d}.parquet"
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            sequence += 1
            continue
        with os.fdopen(descriptor, "wb") as handle:
            pq.write_table(pa.Table.from_pylist([entry], schema=LEDGER_SCHEMA), handle)
        return path


def read_ledger(ledger_dir: Path) -> list[dict[str, Any]]:
    return [row for path in sorted(ledger_dir.glob("entry-*.parquet")) for row in pq.read_table(path).to_pylist()]


def batch_status(ledger_dir: Path, batch_id: str) -> str | None:
    entries = [entry for entry in read_ledger(ledger_dir) if entry["batch_id"] == batch_id]
    return entries[-1]["status"] if entries else None

