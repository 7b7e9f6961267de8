"""Semantic dedup (SemDeDup): the clustered search finds the groups an exact all-pairs search finds, the dedup
stage runs it after MD5 and pHash with the tiny CLIP image tower, keeps the best quality score, redecides from
stored embeddings, and says `not_run` (never an invented duplicate) without a model."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pytest

from data_engine.curation import dedup
from data_engine.curation.dedup import cluster_duplicates, greedy_duplicates, keep_order, near_duplicates
from data_engine.model_refs import tiny_model_path
from data_engine.redecide import redecide
from data_engine.stage_runner import apply_stage
from data_engine.stages.dedup import DedupConfig, DedupStage
from data_engine.stages.image_embedding import ImageEmbeddingConfig, ImageEmbeddingModelError, ImageEmbeddingStage
from tests.curation.images import png_bytes, stage_input
from tests.curation.test_redecide import DECODED, NO_BORDER, outcomes, write_output

THRESHOLD = 0.95  # semantic_eps 0.05


def planted_groups(seed: int = 0, topics: int = 12, per_topic: int = 40, copies: int = 3):
    """Unit rows around topic centres (cosine about 0.6 inside a topic) and, for every fifth row, `copies`
    near copies (cosine about 0.99 to it, about 0.98 to each other): the duplicate groups by construction."""
    rng = np.random.default_rng(seed)
    dim = 64
    centres = rng.standard_normal((topics, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors, groups = [], []
    for topic in range(topics):
        for _ in range(per_topic):
            base = centres[topic] + 0.8 * rng.standard_normal(dim) / np.sqrt(dim)
            group = [len(vectors)]
            vectors.append(base)
            if len(vectors) % 5 == 0:
                for _ in range(copies):
                    group.append(len(vectors))
                    vectors.append(base + 0.12 * rng.standard_normal(dim) / np.sqrt(dim))
            groups.append(frozenset(group))
    vectors = np.asarray(vectors, np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), {g for g in groups if len(g) > 1}


def all_pairs_reference(unit: np.ndarray, order: list[int], threshold: float) -> dict[int, int]:
    """Independent exact search: the full similarity matrix, rows scanned in keep order, each compared with
    every row kept before it."""
    similarity = (unit.astype(np.float64) @ unit.astype(np.float64).T).astype(np.float32)
    kept: list[int] = []
    found = {}
    for row in order:
        if kept:
            best = kept[int(np.argmax(similarity[row, kept]))]
            if similarity[row, best] >= np.float32(threshold):
                found[row] = best
                continue
        kept.append(row)
    return found


def groups_of(found: dict[int, int]) -> set[frozenset]:
    members: dict[int, set[int]] = {}
    for row, keeper in found.items():
        members.setdefault(keeper, {keeper}).add(row)
    return {frozenset(group) for group in members.values()}


@pytest.mark.parametrize("cluster_size", [100_000, 60])  # one cluster; about 10 k-means clusters
def test_semdedup_finds_the_groups_of_an_exact_all_pairs_search(cluster_size):
    unit, planted = planted_groups()
    rng = np.random.default_rng(1)
    ids = [f"r{i:04d}" for i in range(len(unit))]
    quality = [[float(q)] for q in rng.random(len(unit))]
    order = keep_order(ids, [1] * len(ids), quality, [True])
    reference = all_pairs_reference(unit, order, THRESHOLD)
    assert groups_of(reference) == planted  # the construction's groups, so the check has something to find
    found = near_duplicates(ids, unit, order, threshold=THRESHOLD, cluster_size=cluster_size, kind="semantic")
    assert {row: ids.index(d.of) for row, d in found.items()} == reference
    assert {d.kind for d in found.values()} == {"semantic"}
    for row, duplicate in found.items():  # the kept copy of each group is its best quality score
        group = next(g for g in planted if row in g)
        assert ids.index(duplicate.of) == max(group, key=lambda member: quality[member][0])
        assert duplicate.similarity == pytest.approx(float(unit[row] @ unit[ids.index(duplicate.of)]), abs=1e-5)


@pytest.mark.parametrize("block", [1, 7, 64, 10_000])
def test_blocked_greedy_pass_is_exact_for_any_block_size(block):
    unit, _ = planted_groups(seed=2, topics=4, per_topic=30)
    order = list(np.random.default_rng(3).permutation(len(unit)))
    duplicate_of, _ = greedy_duplicates(unit[order], THRESHOLD, block=block)
    found = {order[p]: order[k] for p, k in enumerate(duplicate_of) if k >= 0}
    assert found == all_pairs_reference(unit, order, THRESHOLD)



@pytest.mark.parametrize("gram_rows", [4096, 50])  # one similarity matrix; above it, the blocked pass
def test_cluster_pass_matches_the_exact_search(gram_rows, monkeypatch):
    monkeypatch.setattr(dedup, "_GRAM_ROWS", gram_rows)
    unit, _ = planted_groups(seed=4, topics=3, per_topic=30)
    order = list(np.random.default_rng(5).permutation(len(unit)))
    duplicate_of, similarity = cluster_duplicates(unit[order], THRESHOLD)
    found = {order[p]: order[k] for p, k in enumerate(duplicate_of) if k >= 0}
    assert found == all_pairs_reference(unit, order, THRESHOLD)
    for position in np.flatnonzero(duplicate_of >= 0):
        pair = unit[order[position]] @ unit[order[duplicate_of[position]]]
        assert similarity[position] == pytest.approx(float(pair), abs=1e-5)


@pytest.mark.parametrize("greedy_pass", [cluster_duplicates, greedy_duplicates])
def test_greedy_passes_compare_with_kept_rows_only_and_ties_go_to_the_earlier_row(greedy_pass):
    """By hand, in 2-D, threshold cos 27 degrees: 25 and -25 (50 apart) kept; 0 is 25 from both, a tie the
    earlier wins; 40 is a duplicate of 25; 55 matches only 40, which is not kept, so 55 is kept."""
    degrees = np.radians([25.0, -25.0, 0.0, 40.0, 55.0])
    unit = np.stack([np.cos(degrees), np.sin(degrees)], axis=1).astype(np.float32)
    duplicate_of, _ = greedy_pass(unit, float(np.cos(np.radians(27.0))))
    assert duplicate_of.tolist() == [-1, -1, 0, 0, -1]


def candidates(embeddings, *, phashes=None, md5s=None, vlm=None) -> pa.Table:
    n = len(embeddings)
    return pa.table({
        "id": [f"r{i}" for i in range(n)], "md5": md5s or [f"m{i}" for i in range(n)],
        "width": [100] * n, "height": [100] * n,
        "phash": phashes or [f"{int(np.random.default_rng(i).integers(0, 2**63)):016x}" for i in range(n)],  # far apart
        "image_embedding": pa.array(embeddings, pa.list_(pa.float32())),
        "vlm_aesthetic_score": pa.array(vlm or [None] * n, pa.float32())})


def test_semantic_pass_comes_after_md5_and_phash_and_keeps_the_best_score():
    unit, planted = planted_groups(seed=4, topics=2, per_topic=5, copies=1)
    assert planted == {frozenset({4, 5}), frozenset({9, 10})}
    embeddings = [list(map(float, row)) for row in unit]
    md5s = [f"m{i}" for i in range(len(unit))]
    md5s[1] = md5s[0]  # an exact pair with dissimilar embeddings (the MD5 pass, not the semantic one)
    vlm = [50.0] * len(unit)
    vlm[5] = 90.0  # the copy scores better: it is kept, the original is its semantic duplicate
    vlm[9] = 80.0
    columns = DedupStage(DedupConfig()).decide_globally(candidates(embeddings, md5s=md5s, vlm=vlm))
    marks = {f"r{i}": (kind, of) for i, (kind, of) in enumerate(zip(columns["duplicate_kind"], columns["duplicate_of"]))
             if kind}
    assert marks == {"r1": ("exact", "r0"), "r4": ("semantic", "r5"), "r10": ("semantic", "r9")}
    assert set(columns["semantic_dedup"]) == {"run"}


def test_without_embeddings_semantic_dedup_is_not_run(caplog):
    unit, _ = planted_groups(seed=4, topics=2, per_topic=5, copies=1)
    table = candidates([None] * len(unit))
    with caplog.at_level(logging.WARNING):
        columns = DedupStage(DedupConfig()).decide_globally(table)
    assert "semantic dedup not run" in caplog.text
    assert set(columns["semantic_dedup"]) == {"not_run"}
    assert "semantic" not in set(columns["duplicate_kind"])


@pytest.fixture(scope="module")
def clip_dir():
    return tiny_model_path("clip_image")


def test_tiny_clip_embeds_through_the_configured_path_and_a_resized_copy_is_a_semantic_duplicate(clip_dir, photos):
    import cv2

    china, flower = photos["china"], photos["flower"]
    images = [china, flower, cv2.resize(china, (china.shape[1] * 3 // 4, china.shape[0] * 3 // 4))]
    stage = ImageEmbeddingStage(ImageEmbeddingConfig(model_path=str(clip_dir)))
    stage.setup()
    out, _ = apply_stage(stage, stage_input(image_bytes=[png_bytes(im) for im in images]), batch_size=3)
    embeddings = np.asarray(out.column("image_embedding").to_pylist(), np.float32)
    assert out.column("image_embedding_status").to_pylist() == ["scored"] * 3
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    similarity = embeddings @ embeddings.T
    # A random tower maps every photo near one direction, but the resized copy still nearer than the other photo.
    assert similarity[0, 2] > similarity[0, 1]
    eps = 1.0 - float(similarity[0, 2] + similarity[0, 1]) / 2
    table = candidates([list(map(float, e)) for e in embeddings], phashes=["0" * 16, "f" * 16, "0f" * 8],
                       vlm=[40.0, 50.0, 60.0])
    columns = DedupStage(DedupConfig(semantic_eps=eps)).decide_globally(table)
    assert columns["duplicate_kind"] == [("semantic"), None, None] and columns["duplicate_of"][0] == "r2"


def test_embedding_stage_without_a_model_invents_nothing(photos, caplog, tmp_path):
    stage = ImageEmbeddingStage(ImageEmbeddingConfig())
    with caplog.at_level(logging.WARNING):
        stage.setup()
    assert "no model_path configured" in caplog.text
    out, _ = apply_stage(stage, stage_input(image_bytes=[png_bytes(photos["china"])]), batch_size=1)
    assert out.column("image_embedding").to_pylist() == [None]
    assert out.column("image_embedding_status").to_pylist() == ["not_scored"]
    with pytest.raises(ImageEmbeddingModelError, match="config.json"):
        ImageEmbeddingStage(ImageEmbeddingConfig(model_path=str(tmp_path))).setup()


SEMANTIC_JOB = {"name": "curate_test", "input": "in", "output": "out", "schema": "image_sample",
                "stages": [{"op": "decode_image", "config": {"min_side": 128}},
                           {"op": "aesthetic", "config": {"min_score": 4.6}},
                           {"op": "embed_images", "config": {"model_path": "/models/clip"}},
                           {"op": "dedup", "config": {"semantic_eps": 0.05}}]}


def test_redecide_reruns_the_semantic_decision_from_stored_embeddings(tmp_path):
    angle = np.deg2rad([0.0, 12.0, 40.0])  # cosines to the first: 0.978, 0.766
    embedding = [[float(np.cos(a)), float(np.sin(a)), 0.0] for a in angle]
    base = {"width": 400, "height": 300, **DECODED, **NO_BORDER, "aesthetic_status": "scored",
            "image_embedding_status": "scored", "semantic_dedup": "run"}
    job_rows = [
        base | {"id": "best", "aesthetic_score": 6.0, "image_embedding": embedding[0], "md5": "a", "phash": "0" * 16},
        base | {"id": "close", "aesthetic_score": 5.0, "image_embedding": embedding[1], "md5": "b", "phash": "f" * 16,
                "duplicate_of": "best", "duplicate_kind": "semantic", "duplicate_similarity": float(np.cos(angle[1])),
                "reject_reason": "semantic_duplicate", "reject_stage": "dedup"},
        base | {"id": "far", "aesthetic_score": 5.5, "image_embedding": embedding[2], "md5": "c", "phash": "0f" * 8},
    ]
    out = write_output(tmp_path / "out", job_rows, SEMANTIC_JOB)
    redecide(out, {})
    assert outcomes(out) == {"best": (None, None, None), "close": ("dedup", "semantic_duplicate", "best"),
                             "far": (None, None, None)}
    redecide(out, {"dedup": {"semantic_eps": 0.3}})  # cos 0.766 >= 0.7: "far" joins the group of "best"
    assert outcomes(out)["far"] == ("dedup", "semantic_duplicate", "best")
    redecide(out, {"aesthetic": {"min_score": 5.8}})  # the copies are rejected first: "best" has no duplicate left
    assert outcomes(out) == {"best": (None, None, None), "close": ("aesthetic", "low_aesthetic", None),
                             "far": ("aesthetic", "low_aesthetic", None)}
    redecide(out, {"aesthetic": {"min_score": 4.6}, "dedup": {"semantic_eps": 0.01}})  # cos 0.978 < 0.99
    assert outcomes(out) == {"best": (None, None, None), "close": (None, None, None), "far": (None, None, None)}
