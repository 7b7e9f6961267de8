"""Global deduplication over a finished job output: exact (MD5) and SemDeDup-style near duplicates.

Duplicates can sit in any two shards, so this runs after the job, over its output directory, as a pass:
1. read the `dedup` stage's candidate rows (accepted when the job finished, or already marked by an
   earlier pass) from every shard: id, md5, width, height and an embedding (the stage's `phash` as +-1
   bits);
2. order them by what to keep: most pixels first, then smallest id (deterministic, independent of shard
   order and of how many workers ran the job);
3. exact: every row whose MD5 an earlier row has is `duplicate_of` that row (similarity 1);
4. near (SemDeDup, Abbas et al. 2023): k-means over the remaining embeddings into clusters of about
   `cluster_size`, then within each cluster, in keep order, a row whose cosine similarity to a kept row is
   at least `near_duplicate_similarity` is `duplicate_of` the most similar kept row;
5. write the `duplicate_*` columns into every shard (atomic rewrite), then re-apply every stage's decisions
   with `data_engine.redecide`, which recounts the per-shard stats and rewrites the manifest.
An interrupted pass is finished by running it again: it recomputes the same duplicates from the same rows.
The dedup stage must be the job's last stage, so no later decision can drop a row that was kept here.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from data_engine.job import JobConfigError, parse_job_config
from data_engine.ops.perceptual_hash import hash_vectors
from data_engine.redecide import redecide
from data_engine.shards import (MANIFEST_NAME, ShardDirError, read_manifest, read_shard, read_shard_stats,
                                shard_paths, write_shard)

DUPLICATE_COLUMNS = ("duplicate_of", "duplicate_kind", "duplicate_similarity")


@dataclass(frozen=True)
class Duplicate:
    of: str
    kind: str  # "exact" | "near"
    similarity: float


def keep_order(ids: list[str], pixels: list[int]) -> list[int]:
    """Row indices in the order rows are kept: most pixels first, then smallest id."""
    return sorted(range(len(ids)), key=lambda i: (-pixels[i], ids[i]))


def exact_duplicates(ids: list[str], md5s: list[str], order: list[int]) -> dict[int, Duplicate]:
    first_with: dict[str, int] = {}
    found = {}
    for index in order:
        keeper = first_with.setdefault(md5s[index], index)
        if keeper != index:
            found[index] = Duplicate(ids[keeper], "exact", 1.0)
    return found


def near_duplicates(ids: list[str], vectors: np.ndarray, order: list[int], *, threshold: float,
                    cluster_size: int, seed: int = 0) -> dict[int, Duplicate]:
    """SemDeDup over unit-normalised `vectors` (rows of the candidates in `order`)."""
    if not order:
        return {}
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    labels = _clusters(unit[order], math.ceil(len(order) / cluster_size), seed)
    found: dict[int, Duplicate] = {}
    for label in np.unique(labels):
        members = [order[i] for i in np.flatnonzero(labels == label)]  # still in keep order
        similarity = unit[members] @ unit[members].T
        kept: list[int] = []
        for position in range(len(members)):
            if kept:
                best = kept[int(np.argmax(similarity[position, kept]))]
                if similarity[position, best] >= threshold:
                    found[members[position]] = Duplicate(ids[members[best]], "near", float(similarity[position, best]))
                    continue
            kept.append(position)
    return found


def _clusters(unit: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    if n_clusters <= 1:
        return np.zeros(len(unit), dtype=np.int64)
    from sklearn.cluster import KMeans  # imported here: about a second, and only large inputs need it

    return KMeans(n_clusters=n_clusters, n_init=1, random_state=seed).fit_predict(unit)


def dedup_output(shard_dir: Path, stage_name: str = "dedup") -> dict[str, Any]:
    """Mark duplicates in a finished job output (see the module docstring); returns the new manifest."""
    manifest = read_manifest(shard_dir)
    job = parse_job_config(manifest["config"], source=str(shard_dir / MANIFEST_NAME))
    names = [spec.name for spec in job.stages]
    if stage_name not in names:
        raise JobConfigError(f"{shard_dir}: job {job.name} has no stage named {stage_name!r}; stages: {names}")
    if names[-1] != stage_name:
        raise JobConfigError(f"{shard_dir}: dedup stage {stage_name!r} must be the job's last stage, not {names[-1]!r}")
    config = job.stages[-1].stage_config()

    columns = ["id", "md5", "width", "height", "phash", "reject_reason", "reject_stage"]
    rows = pa.concat_tables([read_shard(path, columns) for path in shard_paths(shard_dir)]).to_pylist()
    candidates = [r for r in rows if r["phash"] is not None and r["reject_stage"] in (None, stage_name)
                  and not (r["reject_reason"] or "").startswith("error:")]
    ids = [r["id"] for r in candidates]
    order = keep_order(ids, [r["width"] * r["height"] for r in candidates])
    found = exact_duplicates(ids, [r["md5"] for r in candidates], order)
    remaining = [i for i in order if i not in found]
    vectors = hash_vectors([r["phash"] for r in candidates]) if candidates else np.zeros((0, 64), np.float32)
    found |= near_duplicates(ids, vectors, remaining, threshold=config.near_duplicate_similarity,
                             cluster_size=config.cluster_size)
    by_id = {ids[index]: duplicate for index, duplicate in found.items()}

    for path in shard_paths(shard_dir):
        table = read_shard(path)
        marks = [by_id.get(row_id) for row_id in table.column("id").to_pylist()]
        values = {"duplicate_of": [m.of if m else None for m in marks],
                  "duplicate_kind": [m.kind if m else None for m in marks],
                  "duplicate_similarity": [m.similarity if m else None for m in marks]}
        for name, column in values.items():
            field = table.schema.field(name)
            table = table.set_column(table.column_names.index(name), field, pa.array(column, type=field.type))
        shard_id = int(path.name[5:10])
        write_shard(shard_dir, shard_id, table, read_shard_stats(shard_dir, shard_id)["stages"],
                    row_group_rows=job.row_group_rows)
    return redecide(shard_dir, {})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Mark exact and near duplicates in a finished job output.")
    parser.add_argument("shard_dir", type=Path)
    parser.add_argument("--stage", default="dedup", help="name of the dedup stage in the job (default: dedup)")
    args = parser.parse_args(argv)
    try:
        manifest = dedup_output(args.shard_dir, args.stage)
    except (JobConfigError, ShardDirError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    duplicates = {k: v for k, v in manifest["rejects"].items() if k.startswith(f"{args.stage}:")}
    print(json.dumps({"output": str(args.shard_dir), "rows_accepted": manifest["rows_accepted"],
                      "duplicates": duplicates}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
