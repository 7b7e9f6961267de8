"""Global deduplication: exact (MD5), perceptual (pHash) and semantic (SemDeDup) duplicates, decided over every
shard at once.

Duplicates can sit in any two shards, so the `dedup` stage decides globally (`Stage.decide_globally`):
`data_engine.redecide` runs `mark_duplicates` over the rows that reach the stage under the decisions in force,
after the job (the stage's `finalize_output`) and again after every threshold change, from stored columns
only, so a photo is never left marked as the duplicate of a copy that new thresholds reject:
1. the candidates: id, md5, width, height, the stage's `phash` as +-1 bits, the `image_embedding` of the
   embed_images stage where the job computed one, and the quality scores named by `keep_by`;
2. order them by what to keep (`keep_order`): the best quality score first, comparing the `keep_by` scores in
   turn (aesthetic scores, MUSIQ and CLIP-IQA higher, NIQE lower; a score the row lacks, not computed or NaN,
   ranks after every row that has it), then most pixels, then smallest id (deterministic, independent of
   shard order and of how many workers ran the job);
3. exact: every row whose MD5 an earlier row has is `duplicate_of` that row (similarity 1);
4. near: the pass of 5. over the pHash bit vectors of the remaining rows, threshold
   `near_duplicate_similarity`, clusters of about `cluster_size`;
5. semantic (SemDeDup, Abbas et al. 2023) over the image embeddings of the rows still remaining: k-means into
   clusters of about `semantic_cluster_size`, then within each cluster, in keep order, a row whose cosine
   similarity to a kept row is at least 1 - `semantic_eps` (compared in float32, the type the similarity is
   stored in) is `duplicate_of` the most similar kept row (`greedy_duplicates`, exact inside a cluster; a
   pair the clustering splits is missed, which `benchmarks/semdedup.py` measures against all pairs). Rows
   without an embedding (no model configured) say `semantic_dedup=not_run`, the others `run`;
6. redecide writes the `duplicate_*` columns into every shard and applies the stage's decide().
The dedup stage must be the job's last stage, so no later decision can drop a row that was kept here.
`python -m data_engine.curation.dedup OUTPUT_DIR` reruns the decision over an output (the job does it).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_engine.job import JobConfigError, parse_job_config
from data_engine.ops.perceptual_hash import hash_vectors
from data_engine.redecide import redecide
from data_engine.shards import MANIFEST_NAME, ShardDirError, read_manifest

_log = logging.getLogger(__name__)

# The quality scores a keeper can be chosen by, and whether a higher value is better.
QualityScore = Literal["aesthetic_score", "vlm_aesthetic_score", "musiq", "clipiqa", "niqe"]
HIGHER_IS_BETTER: dict[str, bool] = {"aesthetic_score": True, "vlm_aesthetic_score": True, "musiq": True,
                                     "clipiqa": True, "niqe": False}
DUPLICATE_COLUMNS = ("duplicate_of", "duplicate_kind", "duplicate_similarity")
EMBEDDING_COLUMN = "image_embedding"  # written by the embed_images stage
SEMANTIC_STATUS_COLUMN = "semantic_dedup"  # "run" / "not_run" per candidate row


@dataclass(frozen=True)
class Duplicate:
    of: str
    kind: str  # "exact" | "near" | "semantic"
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


def greedy_duplicates(unit: np.ndarray, threshold: float, block: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """The exact greedy pass over unit rows given in keep order: a row is a duplicate when its cosine similarity
    to the most similar earlier *kept* row is at least `threshold` (compared in float32). Returns, per row, the
    index of that kept row (-1: the row is kept) and the similarity. Blocked: each block of rows meets every row
    kept before it in one matrix product; only the rows with a match inside their own block are then settled
    one by one, in order, since whether that match is kept depends on the rows before it."""
    unit = np.ascontiguousarray(unit, dtype=np.float32)
    limit = np.float32(threshold)
    duplicate_of = np.full(len(unit), -1, np.int64)
    similarity = np.zeros(len(unit), np.float32)
    kept_rows = np.empty_like(unit)  # the kept vectors, in keep order
    kept_index = np.empty(len(unit), np.int64)
    n_kept = 0
    for start in range(0, len(unit), block):
        rows = unit[start:start + block]
        best = np.full(len(rows), -1, np.int64)
        best_similarity = np.full(len(rows), -np.inf, np.float32)
        if n_kept:
            earlier = rows @ kept_rows[:n_kept].T
            top = earlier.argmax(axis=1)
            best, best_similarity = kept_index[top], earlier[np.arange(len(rows)), top]
        within = rows @ rows.T
        kept = best_similarity < limit  # final for every row without a match earlier in its block
        for position in np.flatnonzero(np.tril(within >= limit, -1).any(axis=1)):
            earlier_kept = np.flatnonzero(kept[:position])
            if len(earlier_kept):
                top = earlier_kept[within[position, earlier_kept].argmax()]
                if within[position, top] > best_similarity[position]:  # ties: the earlier kept row, as a scan
                    best[position], best_similarity[position] = start + top, within[position, top]
            kept[position] = best_similarity[position] < limit
        duplicates = np.flatnonzero(~kept)
        duplicate_of[start + duplicates] = best[duplicates]
        similarity[start + duplicates] = best_similarity[duplicates]
        block_kept = np.flatnonzero(kept)
        kept_rows[n_kept:n_kept + len(block_kept)] = rows[block_kept]
        kept_index[n_kept:n_kept + len(block_kept)] = start + block_kept
        n_kept += len(block_kept)
    return duplicate_of, similarity


def near_duplicates(ids: list[str], vectors: np.ndarray, order: list[int], *, threshold: float,
                    cluster_size: int, kind: str = "near", seed: int = 0) -> dict[int, Duplicate]:
    """SemDeDup over the rows of `vectors` in `order` (normalised here): k-means into clusters of about
    `cluster_size`, then the exact greedy pass inside each cluster (`cluster_duplicates`)."""
    if not order:
        return {}
    rows = np.asarray(vectors, dtype=np.float32)[order]
    rows /= np.maximum(np.sqrt(np.einsum("ij,ij->i", rows, rows))[:, None], np.float32(1e-12))
    labels = cluster_labels(rows, math.ceil(len(order) / cluster_size), seed)
    by_cluster = np.argsort(labels, kind="stable")  # positions in keep order, grouped by cluster
    found: dict[int, Duplicate] = {}
    for members in np.split(by_cluster, np.flatnonzero(np.diff(labels[by_cluster])) + 1):
        duplicate_of, similarity = cluster_duplicates(rows[members], threshold)
        for position in np.flatnonzero(duplicate_of >= 0):
            keeper = order[members[duplicate_of[position]]]
            found[order[members[position]]] = Duplicate(ids[keeper], kind, float(similarity[position]))
    return found


# A cluster up to this many rows gets its whole similarity matrix at once (64 MiB of float32); a larger one
# (a `cluster_size` set above it) the blocked pass.
_GRAM_ROWS = 4096


def cluster_duplicates(unit: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The greedy pass of `greedy_duplicates` (same result) over one cluster's unit rows in keep order: one
    matrix product gives every pair; only the rows with an earlier row at the threshold are then settled in
    order, each against its few matches (a match is the keeper iff it is kept: any kept row at the threshold
    is more similar than every row below it)."""
    if len(unit) > _GRAM_ROWS:
        return greedy_duplicates(unit, threshold)
    similarity = unit @ unit.T
    later, earlier = np.divmod(np.flatnonzero(similarity >= np.float32(threshold)), len(unit))  # later ascends
    below_diagonal = earlier < later
    later, earlier = later[below_diagonal], earlier[below_diagonal]
    duplicate_of = np.full(len(unit), -1, np.int64)
    best_similarity = np.zeros(len(unit), np.float32)
    kept = np.ones(len(unit), bool)
    starts = np.flatnonzero(np.diff(later, prepend=-1))
    for row, matches in zip(later[starts].tolist(), np.split(earlier, starts[1:])):
        keepers = matches[kept[matches]]  # earlier rows are settled: `later` ascends
        if len(keepers):
            top = keepers[similarity[row, keepers].argmax()]  # ties: the earlier row, as a scan
            duplicate_of[row], best_similarity[row], kept[row] = top, similarity[row, top], False
    return duplicate_of, best_similarity


# k-means is fitted on at most this many rows per cluster (faiss caps it at 256), then every row is assigned
# to its nearest centre: the fit costs the same for 10^5 or 10^8 rows. Lloyd iterations stop early once no
# sampled row changes cluster (the centres then stay where they are).
_KMEANS_ROWS_PER_CLUSTER = 128
_KMEANS_ITERATIONS = 10


def cluster_labels(unit: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """Spherical k-means (cosine, as SemDeDup clusters): centres from `seed`, Lloyd iterations on a sample, then
    each row to the centre it is most similar to."""
    if n_clusters <= 1:
        return np.zeros(len(unit), dtype=np.int64)
    rng = np.random.default_rng(seed)
    sample = unit
    if len(unit) > n_clusters * _KMEANS_ROWS_PER_CLUSTER:
        sample = unit[np.sort(rng.choice(len(unit), n_clusters * _KMEANS_ROWS_PER_CLUSTER, replace=False))]
    centres = sample[rng.choice(len(sample), n_clusters, replace=False)]
    labels = None
    for _ in range(_KMEANS_ITERATIONS):
        previous, labels = labels, (sample @ centres.T).argmax(axis=1)
        if previous is not None and np.array_equal(previous, labels):
            break
        sums = (labels == np.arange(n_clusters)[:, None]).astype(np.float32) @ sample  # per-centre row sums
        empty = ~np.any(sums, axis=1)
        sums[empty] = centres[empty]  # a centre that lost every row stays where it was
        centres = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), np.float32(1e-12))
    return (unit @ centres.T).argmax(axis=1)


def embedding_matrix(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The rows of a list<float32> column as a float32 matrix (zeros where null) and which rows have one."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    present = pc.is_valid(column).to_numpy(zero_copy_only=False)
    if not present.any():
        return np.zeros((len(column), 0), np.float32), present
    values = pc.list_flatten(column.filter(pa.array(present))).to_numpy(zero_copy_only=False).astype(np.float32)
    matrix = np.zeros((len(column), len(values) // int(present.sum())), np.float32)
    matrix[present] = values.reshape(int(present.sum()), -1)
    return matrix, present


def mark_duplicates(candidates: pa.Table, *, keep_by: Sequence[str], threshold: float, cluster_size: int,
                    semantic_eps: float, semantic_cluster_size: int) -> dict[str, list[Any]]:
    """The `duplicate_*` and `semantic_dedup` columns for the candidate rows (see the module docstring)."""
    rows = candidates.drop_columns([c for c in (EMBEDDING_COLUMN,) if c in candidates.column_names]).to_pylist()
    ids = [row["id"] for row in rows]
    scores = [name for name in keep_by if name in candidates.column_names]  # scores the job does not compute: none
    quality = [[row[name] for name in scores] for row in rows]
    order = keep_order(ids, [row["width"] * row["height"] for row in rows], quality,
                       [HIGHER_IS_BETTER[name] for name in scores])
    found = exact_duplicates(ids, [row["md5"] for row in rows], order)
    remaining = [i for i in order if i not in found]
    vectors = hash_vectors([row["phash"] for row in rows]) if rows else np.zeros((0, 64), np.float32)
    found |= near_duplicates(ids, vectors, remaining, threshold=threshold, cluster_size=cluster_size)
    embeddings, embedded = (embedding_matrix(candidates.column(EMBEDDING_COLUMN))
                            if EMBEDDING_COLUMN in candidates.column_names else (None, np.zeros(len(rows), bool)))
    if len(rows) and not embedded.all():
        _log.warning("dedup: %d of %d rows have no image embedding (no embed_images stage with a model_path "
                     "before dedup): semantic dedup not run for them", int((~embedded).sum()), len(rows))
    if embeddings is not None and embedded.any():
        remaining = [i for i in order if i not in found and embedded[i]]
        found |= near_duplicates(ids, embeddings, remaining, threshold=1.0 - semantic_eps,
                                 cluster_size=semantic_cluster_size, kind="semantic")
    marks = [found.get(index) for index in range(len(rows))]
    return {"duplicate_of": [m.of if m else None for m in marks],
            "duplicate_kind": [m.kind if m else None for m in marks],
            "duplicate_similarity": [m.similarity if m else None for m in marks],
            SEMANTIC_STATUS_COLUMN: ["run" if seen else "not_run" for seen in embedded.tolist()]}


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
