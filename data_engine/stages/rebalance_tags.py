"""embed_captions and tag_captions: the Embedding, Tag and Retrieval steps of rebalancing (report 4.1.3).

embed_captions writes one unit-length sentence embedding per row (of the first caption key the row has);
tag_captions retrieves the top-K taxonomy leaves by cosine similarity and keeps `target_tags` of them
after adaptive diversity sampling. The Rebalance step needs the counts of the whole dataset, so it runs
over the tagged shards afterwards, as the job's last stage (`rebalance`, data_engine/stages/rebalance.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field

from data_engine.rebalance.tagging import (default_embedding_model, diversity_sample, embed, leaf_embeddings,
                                           load_encoder, top_k_tags)
from data_engine.rebalance.taxonomy import WORDNET_DIR, load_taxonomy, wordnet_noun_nodes, write_taxonomy
from data_engine.stage import REJECT_COLUMN, Resources, Stage, StageConfig, StageUnavailable, register_stage

DEFAULT_CACHE = str(Path.home() / ".cache" / "joyai-tags")


class EmbedCaptionsConfig(StageConfig):
    model: str | None = None  # sentence-transformers directory; None: the packaged all-MiniLM-L6-v2
    caption_keys: tuple[str, ...] = ("long/en", "short/en", "extended_long/en")  # first present one is embedded
    torch_threads: int | None = Field(default=None, gt=0)


@register_stage
class EmbedCaptionsStage(Stage[EmbedCaptionsConfig]):
    op = "embed_captions"
    Config = EmbedCaptionsConfig
    uses_model = True
    default_resources = Resources(num_cpus=1, batch_size=256, concurrency=1)

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (pa.field("caption_embedding", pa.list_(pa.float32())), pa.field("embedded_caption", pa.string()))

    def setup(self) -> None:
        self.encoder = load_encoder(self.config.model or default_embedding_model(), self.config.torch_threads)

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        chosen = []
        for captions in batch.column("captions").to_pylist():
            present = dict(captions or [])
            chosen.append(next((key for key in self.config.caption_keys if present.get(key)), None))
        texts = [dict(c)[key] for c, key in zip(batch.column("captions").to_pylist(), chosen) if key]
        vectors = iter(embed(self.encoder, texts)) if texts else iter(())
        embeddings = [next(vectors).tolist() if key else None for key in chosen]
        rejects = [None if key else "no_caption_to_embed" for key in chosen]
        return {"caption_embedding": embeddings, "embedded_caption": chosen, REJECT_COLUMN: rejects}


class TagCaptionsConfig(StageConfig):
    # A taxonomy TSV (see data_engine/rebalance/taxonomy.py), "wordnet" (all 82K noun synsets) or
    # "wordnet:<synset offset>" (a subtree, e.g. wordnet:00015388 for animals).
    taxonomy: str = "wordnet"
    model: str | None = None  # must be the model embed_captions used
    top_k: int = Field(default=1000, gt=0)
    target_tags: int = Field(default=10, gt=0)
    block_tags: int = Field(default=32768, gt=0)  # tags scored at once; bounds memory
    cache_dir: str = DEFAULT_CACHE  # built taxonomies and tag embeddings, keyed by content hashes
    torch_threads: int | None = Field(default=None, gt=0)


def taxonomy_file(spec: str, cache_dir: Path) -> Path:
    if not spec.startswith("wordnet"):
        return Path(spec)
    root = spec.partition(":")[2] or None
    path = cache_dir / f"wordnet-{root or 'nouns'}.tsv"
    if not path.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".tmp-{path.name}")
        write_taxonomy(temp, wordnet_noun_nodes(root=root))
        temp.replace(path)
    return path


@register_stage
class TagCaptionsStage(Stage[TagCaptionsConfig]):
    op = "tag_captions"
    Config = TagCaptionsConfig
    uses_model = True
    default_resources = Resources(num_cpus=1, batch_size=256, concurrency=1)

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (pa.field("tags", pa.list_(pa.string())), pa.field("tag_names", pa.list_(pa.string())),
                pa.field("tag_scores", pa.list_(pa.float32())))

    def preflight(self) -> None:
        spec = self.config.taxonomy
        needed = WORDNET_DIR / "data.noun" if spec.startswith("wordnet") else Path(spec)
        if not needed.is_file():
            hint = " (install the Debian package wordnet-base)" if spec.startswith("wordnet") else ""
            raise StageUnavailable(f"{self.name}.taxonomy: {needed} not found{hint}")

    def setup_on_node(self) -> None:
        taxonomy_file(self.config.taxonomy, Path(self.config.cache_dir))

    def setup(self) -> None:
        cache = Path(self.config.cache_dir)
        model = self.config.model or default_embedding_model()
        self.taxonomy = load_taxonomy(taxonomy_file(self.config.taxonomy, cache))
        self.tag_vectors = leaf_embeddings(self.taxonomy, load_encoder(model, self.config.torch_threads), model, cache)

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        queries = np.asarray(batch.column("caption_embedding").to_pylist(), dtype=np.float32)
        positions, scores = top_k_tags(queries, self.tag_vectors, self.config.top_k, self.config.block_tags)
        result: dict[str, list[Any]] = {"tags": [], "tag_names": [], "tag_scores": []}
        for row_positions, row_scores in zip(positions, scores):
            nodes, kept = diversity_sample(self.taxonomy, row_positions, row_scores, self.config.target_tags)
            result["tags"].append([self.taxonomy.ids[n] for n in nodes])
            result["tag_names"].append([self.taxonomy.names[n] for n in nodes])
            result["tag_scores"].append(kept.tolist())
        return result
