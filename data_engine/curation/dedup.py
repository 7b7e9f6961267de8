"""Global deduplication: exact (MD5) and SemDeDup-style near duplicates, decided over every shard at once.

Duplicates can sit in any two shards, so the `dedup` stage decides globally (`Stage.decide_globally`):
`data_engine.redecide` runs `mark_duplicates` over the rows that reach the stage under the decisions in force,
after the job (the stage's `finalize_output`) and again after every threshold change, from stored columns
only, so a photo is never left marked as the duplicate of a copy that new thresholds reject:
1. the candidates: id, md5, width, height, the stage's `phash` as +-1 bits and the quality scores named by
   `keep_by`;
2. order them by what to keep (`keep_order`): the best quality score first, comparing the `keep_by` scores in
   turn (aesthetic score, MUSIQ and CLIP-IQA higher, NIQE lower; a score the row lacks, not computed or NaN,
   ranks after every row that has it), then most pixels, then smallest id (deterministic, independent of
   shard order and of how many workers ran the job);
3. exact: every row whose MD5 an earlier row has is `duplicate_of` that row (similarity 1);
4. near (SemDeDup, Abbas et al. 2023): k-means over the remaining embeddings into clusters of about
   `cluster_size`, then within each cluster, in keep order, a row whose cosine similarity to a kept row is
   at least `near_duplicate_similarity` (compared in float32, the type the similarity is stored in) is
   `duplicate_of` the most similar kept row;
5. redecide writes the `duplicate_*` columns into every shard and applies the stage's decide().
The dedup stage must be the job's last stage, so no later decision can drop a row that was kept here.
`python -m data_engine.curation.dedup OUTPUT_DIR` reruns the decision over an output (the job does it).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from data_engine.job import JobConfigError, parse_job_config
from data_engine.ops.perceptual_hash import hash_vectors
from data_engine.redecide import redecide
from data_engine.shards import MANIFEST_NAME, ShardDirError, read_manifest

# The quality scores a keeper can be chosen by, and whether a higher value is better.
QualityScore = Literal["aesthetic_score", "musiq", "clipiqa", "niqe"]
HIGHER_IS_BETTER: dict[str, bool] = {"aesthetic_score": True, "musiq": True, "clipiqa": True, "niqe": False}
DUPLICATE_COLUMNS = ("duplicate_of", "duplicate_kind", "duplicate_similarity")


@dataclass(frozen=True)
class Duplicate:
    of: str
    kind: str  # "exact" | "near"
    similarity: float


def keep_order(ids: Sequence[str], pixels: Sequence[int],
               quality: Sequence[Sequence[float | None]] | None = None,
               higher_is_better: Sequence[bool] = ()) -> list[int]:
    """Row indices in the order rows are kept: best quality first (`quality[i]`: row i's scores, compared in
    turn, each in its direction; a missing or NaN score ranks last), then most pixels, then smallest id."""
    def rank(value: float | None, higher: bool) -> tuple[int, float]:
        if value is None or math.isnan(value):
            return (1, 0.0)
        return (0, -value if higher else value)

    quality = quality or [()] * len(ids)
    return sorted(range(len(ids)), key=lambda i: (tuple(rank(value, higher) for value, higher
                                                        in zip(quality[i], higher_is_better)),
                                                  -pixels[i], ids[i]))


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
                if similarity[position, best] >= np.float32(threshold):
                    found[members[position]] = Duplicate(ids[members[best]], "near", float(similarity[position, best]))
                    continue
            kept.append(position)
    return found


def _clusters(unit: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    if n_clusters <= 1:
        return np.zeros(len(unit), dtype=np.int64)
    from sklearn.cluster import KMeans  # imported here: about a second, and only large inputs need it

    return KMeans(n_clusters=n_clusters, n_init=1, random_state=seed).fit_predict(unit)


def mark_duplicates(candidates: pa.Table, *, keep_by: Sequence[str], threshold: float,
                    cluster_size: int) -> dict[str, list[Any]]:
    """The `duplicate_*` columns for the candidate rows (see the module docstring)."""
    rows = candidates.to_pylist()
    ids = [row["id"] for row in rows]
    scores = [name for name in keep_by if name in candidates.column_names]  # scores the job does not compute: none
    quality = [[row[name] for name in scores] for row in rows]
    order = keep_order(ids, [row["width"] * row["height"] for row in rows], quality,
                       [HIGHER_IS_BETTER[name] for name in scores])
    found = exact_duplicates(ids, [row["md5"] for row in rows], order)
    remaining = [i for i in order if i not in found]
    vectors = hash_vectors([row["phash"] for row in rows]) if rows else np.zeros((0, 64), np.float32)
    found |= near_duplicates(ids, vectors, remaining, threshold=threshold, cluster_size=cluster_size)
    marks = [found.get(index) for index in range(len(rows))]
    return {"duplicate_of": [m.of if m else None for m in marks],
            "duplicate_kind": [m.kind if m else None for m in marks],
            "duplicate_similarity": [m.similarity if m else None for m in marks]}


def dedup_output(shard_dir: Path, stage_name: str = "dedup") -> dict[str, Any]:
    """Decide duplicates in a finished job output under its current thresholds; returns the new manifest."""
    manifest = read_manifest(shard_dir)
    job = parse_job_config(manifest["config"], source=str(shard_dir / MANIFEST_NAME))
    names = [spec.name for spec in job.stages]
    if stage_name not in names:
        raise JobConfigError(f"{shard_dir}: job {job.name} has no stage named {stage_name!r}; stages: {names}")
    if names[-1] != stage_name:
        raise JobConfigError(f"{shard_dir}: dedup stage {stage_name!r} must be the job's last stage, not {names[-1]!r}")
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
