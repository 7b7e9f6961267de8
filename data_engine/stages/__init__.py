"""Where every stage op and reader kind a job can name lives.

Modules are imported on first use, so a job imports only what it names: a curation job never pays for
torch because the trainer's latent-caching stage exists, and a worker starts with the modules of its job.
"""

from __future__ import annotations

import importlib

from data_engine.readers import READERS, Reader
from data_engine.stage import STAGE_REGISTRY, Stage

STAGE_MODULES: dict[str, str] = {
    "decode_image": "data_engine.stages.image_basic",
    "iqa_cascade": "data_engine.stages.iqa_cascade",
    "learned_iqa": "data_engine.stages.learned_iqa",
    "aesthetic": "data_engine.stages.aesthetic",
    "border_detect": "data_engine.stages.border_detect",
    "ocr_density": "data_engine.stages.ocr_density",
    "nsfw": "data_engine.stages.nsfw",
    "dedup": "data_engine.stages.dedup",
    "caption_content_filter": "data_engine.stages.caption_content_filter",
    "caption_image": "data_engine.stages.caption",
    "ocr_text": "data_engine.stages.ocr",
    "ocr_caption_filter": "data_engine.stages.ocr",
    "rewrite_prompt": "data_engine.stages.rewrite",
    "embed_captions": "data_engine.stages.rebalance_tags",
    "tag_captions": "data_engine.stages.rebalance_tags",
    "sample_text_blueprint": "data_engine.textrender.stages",
    "generate_text_blueprint": "data_engine.textrender.stages",
    "render_text": "data_engine.textrender.stages",
    "caption_rendered_text": "data_engine.textrender.stages",
    "verify_rendered_text": "data_engine.textrender.stages",
    "render_text_edit": "data_engine.textrender.edit",
    "render_multiview": "render.pipeline_stages",
    "render_spatial_edit": "render.pipeline_stages",
    "recognisability_check": "render.vlm_stages",
    "dense_caption": "render.vlm_stages",
    "cache_latents": "trainer.latents",
}

READER_MODULES: dict[str, str] = {
    "image_folder": "data_engine.readers",
    "tar": "data_engine.io",
    "parquet_images": "data_engine.io",
    "image_shards": "data_engine.captioning.reader",
    "text_seeds": "data_engine.textrender.reader",
    "text_edit_seeds": "data_engine.textrender.reader",
    "spatial_scenes": "openspatial.reader",
    "multiview_assets": "render.pipeline_stages",
    "edit_assets": "render.pipeline_stages",
    "caption_shards": "trainer.latents",
    "edit_shards": "trainer.latents",
    "multiview_collages": "trainer.latents",
}


def stage_class(op: str) -> type[Stage]:
    importlib.import_module(STAGE_MODULES[op])
    return STAGE_REGISTRY[op]


def reader_class(kind: str) -> type[Reader]:
    importlib.import_module(READER_MODULES[kind])
    return READERS[kind]
