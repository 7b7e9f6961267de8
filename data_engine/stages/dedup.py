"""dedup: per-row perceptual hash now, duplicate decisions over all shards (`data_engine.curation.dedup`).

Deduplication compares rows across all shards, which no per-shard stage can see, so this stage computes
the `phash` column per row and decides `duplicate_of` / `duplicate_kind` / `duplicate_similarity` /
`semantic_dedup` globally (`decide_globally`): after the job (`finalize_output`) and in every `redecide`, over
the rows the other filters keep, the keeper of each duplicate group being the row with the best quality score
(`keep_by`). The passes: MD5, pHash, then SemDeDup over the CLIP embeddings of an embed_images stage before
dedup (without one, or without its model, a warning and `semantic_dedup=not_run`). Rows keep their data; the
reason is `exact_duplicate`, `near_duplicate` or `semantic_duplicate`; `duplicate_of` holds the kept row's id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import pyarrow as pa
from pydantic import Field

from data_engine.curation.dedup import (DUPLICATE_COLUMNS, EMBEDDING_COLUMN, SEMANTIC_STATUS_COLUMN, QualityScore,
                                       dedup_output, mark_duplicates)
from data_engine.curation.pixels import working_rgb
from data_engine.ops.perceptual_hash import perceptual_hash
from data_engine.stage import Resources, Stage, StageConfig, register_stage, stored_threshold

_HASH_SIDE = 128  # decode size for the 32 x 32 hash thumbnail; JPEG DCT scaling makes it cheap


class DedupConfig(StageConfig):
    cluster_size: int = Field(default=5000, gt=1)  # pHash pass: target rows per k-means cluster
    semantic_cluster_size: int = Field(default=1000, gt=1)  # SemDeDup: target rows per k-means cluster
    # Thresholds (the global decision and decide(); redecide reruns both).
    near_duplicate_similarity: float = Field(default=0.85, gt=0, le=1)  # cosine of +-1 hash bits: 0.85 = at most 4 of 64 bits differ
    semantic_eps: float = Field(default=0.05, ge=0, lt=1)  # SemDeDup: embeddings with cosine >= 1 - eps are duplicates
    # Quality scores that choose the kept copy, compared in turn (scores the job does not compute are skipped).
    keep_by: tuple[QualityScore, ...] = ("aesthetic_score", "vlm_aesthetic_score", "musiq", "clipiqa", "niqe")


@register_stage
class DedupStage(Stage[DedupConfig]):
    op = "dedup"
    Config = DedupConfig
    default_resources = Resources(num_cpus=1, batch_size=64)
    decision_reasons = frozenset({"exact_duplicate", "near_duplicate", "semantic_duplicate"})
    threshold_fields = frozenset({"near_duplicate_similarity", "semantic_eps", "keep_by"})

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (pa.field("phash", pa.string()), pa.field("duplicate_of", pa.string()),
                pa.field("duplicate_kind", pa.string()), pa.field("duplicate_similarity", pa.float32()),
                pa.field(SEMANTIC_STATUS_COLUMN, pa.string()))

    def setup(self) -> None:
        cv2.setNumThreads(1)

    def finalize_output(self, out_dir: Path) -> None:
        dedup_output(out_dir, self.name)  # duplicates can sit in any two shards: decided over all of them

    def global_outputs(self) -> tuple[str, ...]:
        return (*DUPLICATE_COLUMNS, SEMANTIC_STATUS_COLUMN)

    def global_inputs(self) -> tuple[str, ...]:
        return ("md5", "width", "height", "phash", EMBEDDING_COLUMN, *self.config.keep_by)

    def decide_globally(self, candidates: pa.Table) -> Mapping[str, Sequence[Any]]:
        return mark_duplicates(candidates, keep_by=self.config.keep_by, threshold=self.config.near_duplicate_similarity,
                               cluster_size=self.config.cluster_size, semantic_eps=self.config.semantic_eps,
                               semantic_cluster_size=self.config.semantic_cluster_size)

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        return {"phash": [perceptual_hash(working_rgb(data, _HASH_SIDE))
                          for data in batch.column("image_bytes").to_pylist()]}

    def decide(self, scores: pa.Table) -> list[str | None]:
        similarity_type = scores.schema.field("duplicate_similarity").type
        near = stored_threshold(self.config.near_duplicate_similarity, similarity_type)
        semantic = stored_threshold(1.0 - self.config.semantic_eps, similarity_type)
        decisions: list[str | None] = []
        for kind, similarity in zip(scores.column("duplicate_kind").to_pylist(),
                                    scores.column("duplicate_similarity").to_pylist()):
            if kind == "exact":
                decisions.append("exact_duplicate")
            elif kind == "near" and similarity >= near:
                decisions.append("near_duplicate")
            elif kind == "semantic" and similarity >= semantic:
                decisions.append("semantic_duplicate")
            else:
                decisions.append(None)
        return decisions
