"""Taxonomy loading (generic TSV and WordNet), blockwise top-K retrieval, adaptive diversity sampling, and
the rebalance job end to end: captions -> embeddings -> tags (real MiniLM, real WordNet) -> decisions."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from data_engine.executor import run_job
from data_engine.readers import row_id
from data_engine.rebalance.tagging import diversity_sample, top_k_tags
from data_engine.rebalance.taxonomy import TaxonomyError, load_taxonomy, wordnet_noun_nodes, write_taxonomy
from data_engine.schemas import CAPTION
from data_engine.shards import atomic_write_json, iter_shards, write_shard
from pipelines.jobfile import JOBS_DIR, load_job

DOG = "02084071"  # WordNet noun synset "dog, domestic dog, Canis familiaris"
# root -> {animal -> {dog -> {terrier, hound}, cat -> {lion}}, tool -> {hammer}}
TREE = [("root", "", "root", "", ""), ("animal", "root", "animal", "", ""), ("tool", "root", "tool", "", ""),
        ("dog", "animal", "dog", "", ""), ("cat", "animal", "cat", "", ""), ("terrier", "dog", "terrier", "", ""),
        ("hound", "dog", "hound", "", ""), ("lion", "cat", "lion", "big cat", "a large cat"),
        ("hammer", "tool", "hammer", "", "")]


def write_tsv(path: Path, rows) -> Path:
    path.write_text("id\tparent\tname\taliases\tgloss\n" + "".join("\t".join(r) + "\n" for r in rows))
    return path


def test_tsv_taxonomy_leaves_depths_and_texts(tmp_path: Path) -> None:
    taxonomy = load_taxonomy(write_tsv(tmp_path / "t.tsv", reversed(TREE)))  # children before parents is fine
    leaves = {taxonomy.ids[i] for i in taxonomy.leaves}
    assert leaves == {"terrier", "hound", "lion", "hammer"}
    assert taxonomy.depth[taxonomy.ids.index("terrier")] == 3
    assert "lion, big cat: a large cat" in taxonomy.leaf_texts()


@pytest.mark.parametrize("rows, message", [
    ([("a", "missing", "a", "", "")], "parent 'missing' of 'a' is not a node"),
    ([("a", "b", "a", "", ""), ("b", "a", "b", "", "")], "cycle"),
    ([("a", "", "a", "")], ":2: expected 5 tab-separated fields"),
])
def test_malformed_taxonomies_name_the_problem(tmp_path: Path, rows, message: str) -> None:
    with pytest.raises(TaxonomyError, match=message):
        load_taxonomy(write_tsv(tmp_path / "bad.tsv", rows))


def test_wordnet_subtree_is_a_real_hierarchy(tmp_path: Path) -> None:
    write_taxonomy(tmp_path / "dog.tsv", wordnet_noun_nodes(root=DOG))
    taxonomy = load_taxonomy(tmp_path / "dog.tsv")
    names = set(taxonomy.names)
    assert {"dog", "terrier", "dalmatian", "poodle", "liver-spotted dalmatian"} <= names and "cat" not in names
    assert taxonomy.names[int(np.flatnonzero(taxonomy.depth == 0)[0])] == "dog"
    assert len(taxonomy.leaves) > 100


def test_blockwise_top_k_equals_the_full_computation() -> None:
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((7, 16)).astype(np.float32)
    tags = rng.standard_normal((1003, 16)).astype(np.float32)
    index, scores = top_k_tags(queries, tags, k=50, block=97)
    full = queries @ tags.T
    expected = np.argsort(-full, axis=1)[:, :50]
    np.testing.assert_array_equal(index, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(full, expected, axis=1), rtol=1e-5)


def test_blockwise_top_k_is_exact_when_late_blocks_hold_the_winners() -> None:
    # Tags sorted by ascending similarity to query 0: every block beats all earlier ones for that row, far
    # more winners than the reduced per-block selection expects, so that row must be selected again in full.
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((5, 16)).astype(np.float32)
    tags = rng.standard_normal((2000, 16)).astype(np.float32)
    tags = tags[np.argsort(tags @ queries[0])]
    index, scores = top_k_tags(queries, tags, k=50, block=100)
    full = queries @ tags.T
    expected = np.argsort(-full, axis=1)[:, :50]
    np.testing.assert_array_equal(index, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(full, expected, axis=1), rtol=1e-5)


def test_diversity_sampling_keeps_the_best_child_per_subtree(tmp_path: Path) -> None:
    taxonomy = load_taxonomy(write_tsv(tmp_path / "t.tsv", TREE))
    position = {taxonomy.ids[n]: i for i, n in enumerate(taxonomy.leaves)}
    leaves = np.array([position[t] for t in ("terrier", "hound", "lion", "hammer")])
    scores = np.array([0.9, 0.8, 0.7, 0.1], dtype=np.float32)

    def pick(target: int) -> list[str]:
        return [taxonomy.ids[n] for n in diversity_sample(taxonomy, leaves, scores, target)[0]]

    assert pick(2) == ["terrier", "hammer"]  # depth 1 (animal | tool): best leaf of each
    assert pick(3) == ["terrier", "lion", "hammer"]  # depth 2 (dog | cat | tool)
    assert pick(4) == ["terrier", "hound", "lion", "hammer"]
    assert pick(9) == ["terrier", "hound", "lion", "hammer"]  # fewer leaves than the target: all of them


def test_diversity_sampling_matches_a_walk_up_the_tree_on_random_trees(tmp_path: Path) -> None:
    """Against a second implementation written from the definition: walk each leaf up through its parents,
    try depths from the root down, keep the first leaf met per subtree in score order."""
    rng = np.random.default_rng(4)
    for tree in range(3):
        rows = [("n0", "", "n0", "", "")] + [(f"n{i}", f"n{int(rng.integers(0, i))}", f"n{i}", "", "")
                                             for i in range(1, 400)]
        taxonomy = load_taxonomy(write_tsv(tmp_path / f"t{tree}.tsv", rows))
        parent = {i: int(p) for i, p in enumerate(taxonomy.parents)}

        def ancestor(node: int, depth: int) -> int:
            while taxonomy.depth[node] > depth:
                node = parent[node]
            return node

        for target in (1, 3, 10, 60):
            positions = rng.choice(len(taxonomy.leaves), size=min(80, len(taxonomy.leaves)), replace=False)
            scores = rng.random(len(positions)).astype(np.float32)
            scores[5] = scores[6]  # a tie keeps the earlier of the two
            nodes = [int(taxonomy.leaves[p]) for p in positions]
            for depth in range(max(taxonomy.depth[n] for n in nodes) + 1):
                groups = [ancestor(n, depth) for n in nodes]
                if len(set(groups)) >= target:
                    break
            expected, seen = [], set()
            for i in sorted(range(len(nodes)), key=lambda i: -scores[i]):
                if groups[i] not in seen:
                    seen.add(groups[i])
                    expected.append(nodes[i])
            got, kept = diversity_sample(taxonomy, positions, scores, target)
            assert got.tolist() == expected[:target]
            assert kept.tolist() == [float(scores[nodes.index(n)]) for n in expected[:target]]


CAPTIONS = ["A spotted Dalmatian runs across a park.", "Two Dalmatian puppies with black spots sleep on a rug.",
            "A Dalmatian dog with spots sits by a fire truck.", "A white poodle with a curly coat at a grooming salon.",
            "A Siberian husky pulls a sled through the snow."]


def test_rebalance_job_tags_with_minilm_and_decides(ray_local, tmp_path: Path) -> None:
    captions_dir = tmp_path / "captions"
    captions_dir.mkdir()
    rows = [{"id": row_id("t", str(i)), "source_dataset": "t", "upstream_id": str(i), "license": "CC0",
             "captions": [("long/en", text)]} for i, text in enumerate(CAPTIONS)]
    rows.append({"id": row_id("t", "x"), "source_dataset": "t", "upstream_id": "x", "license": "CC0",
                 "captions": [("short/zh", "一只狗。")]})  # no English caption: nothing to embed
    write_shard(captions_dir, 0, pa.Table.from_pylist(rows, schema=CAPTION.arrow()), [])
    atomic_write_json(captions_dir / "_manifest.json", {"job": "synthetic", "schema": {"name": "caption"}})
    out = tmp_path / "rebalanced"
    job = load_job(JOBS_DIR / "rebalance.yaml", [f"input={captions_dir}", f"output={out}",
                                                 f"stages.tag_captions.config.taxonomy=wordnet:{DOG}",
                                                 f"stages.tag_captions.config.cache_dir={tmp_path / 'cache'}",
                                                 "stages.tag_captions.config.target_tags=3",
                                                 "stages.rebalance.config.tail_threshold=2",
                                                 "stages.rebalance.config.seed=1"])
    result = run_job(job, progress=False)  # embed, tag, then the global rebalance step: one job does it all
    assert result["rejects"] == {"embed_captions:no_caption_to_embed": 1}
    table = next(iter_shards(out))[1]
    tag_names = table.column("tag_names").to_pylist()
    # Tags are leaves: WordNet's only dalmatian leaf is the liver-spotted one; poodles have three leaves.
    assert all("liver-spotted dalmatian" in names for names in tag_names[:3]), tag_names
    assert "poodle" in tag_names[3][0] and tag_names[4][0] == "Siberian husky" and len(tag_names[0]) == 3
    assert list(Path(tmp_path / "cache").glob("tags-*.npy"))  # tag embeddings cached by content hash

    rebalanced = next(iter_shards(out))[1].to_pylist()
    counts = Counter(tag for r in rebalanced for tag in r["tags"] or [])
    assert counts["02110532"] == 3  # liver-spotted dalmatian, on the three dalmatian captions
    for row in rebalanced[:5]:  # each sample's category is its rarest tag (ties: smaller id)
        assert row["rebalance_category"] == min(row["tags"], key=lambda tag: (counts[tag], tag))
        assert row["rebalance_category_count"] == counts[row["rebalance_category"]]
        assert row["rebalance_keep_probability"] == pytest.approx(1.0) and row["reject_reason"] is None
    assert rebalanced[5]["rebalance_category"] is None and rebalanced[5]["reject_reason"] == "no_caption_to_embed"
    report = json.loads((out / "rebalance_report.json").read_text())
    assert report["before"]["samples"] == 5 and (out / "category_frequency.svg").read_text().startswith("<svg")
    assert result["rows_written"] == 6
