"""Dedup building blocks: pHash robustness, deterministic keep order, SemDeDup clustering."""

from __future__ import annotations

import cv2
import numpy as np

from data_engine.curation.dedup import exact_duplicates, keep_order, near_duplicates
from data_engine.ops.perceptual_hash import hash_vectors, perceptual_hash


def test_phash_survives_resize_and_separates_photos(photos):
    china, flower = photos["china"], photos["flower"]
    vectors = hash_vectors([perceptual_hash(china), perceptual_hash(cv2.resize(china, (320, 213))),
                            perceptual_hash(flower)])
    assert vectors[0] @ vectors[1] / 64 > 0.9
    assert vectors[0] @ vectors[2] / 64 < 0.5


def test_keep_order_prefers_pixels_then_id():
    assert keep_order(["b", "a", "c"], [100, 100, 400]) == [2, 1, 0]


def test_exact_duplicates_point_at_the_first_kept():
    ids, md5s = ["x", "y", "z"], ["m1", "m2", "m1"]
    found = exact_duplicates(ids, md5s, keep_order(ids, [10, 10, 10]))
    assert {index: d.of for index, d in found.items()} == {2: "x"}


def test_near_duplicates_same_result_with_many_clusters_and_any_input_order():
    rng = np.random.default_rng(0)
    centres = rng.choice([-1.0, 1.0], size=(5, 64))
    noisy = np.repeat(centres, 2, axis=0)
    noisy[1::2, :2] *= -1  # each second copy differs in 2 of 64 bits: cosine 0.9375
    ids = [f"id{i}" for i in range(10)]

    def pairs(order_ids, vectors, cluster_size):
        order = keep_order(order_ids, [1] * len(order_ids))
        found = near_duplicates(order_ids, vectors, order, threshold=0.9, cluster_size=cluster_size)
        return {order_ids[i]: d.of for i, d in found.items()}

    expected = {f"id{i + 1}": f"id{i}" for i in range(0, 10, 2)}
    assert pairs(ids, noisy, cluster_size=100) == expected
    assert pairs(ids, noisy, cluster_size=2) == expected  # 5 k-means clusters
    permutation = rng.permutation(10)
    assert pairs([ids[i] for i in permutation], noisy[permutation], cluster_size=2) == expected
