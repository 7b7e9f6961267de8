"""The composition root's one table: which stage ops, reader kinds and report sections each client package
adds to the engine (the engine lists only its own, in `data_engine/registry.py`, and never names a client).

Importing this module registers them; `pipelines/__init__.py` imports it, so every entry point under
`pipelines` (the CLI, the demo) has the whole table, and the test suite's conftest imports it too.
"""

from __future__ import annotations

from data_engine.registry import register_modules

CLIENT_STAGES: dict[str, str] = {
    "render_multiview": "render.pipeline_stages",
    "render_spatial_edit": "render.pipeline_stages",
    "recognisability_check": "render.vlm_stages",
    "dense_caption": "render.vlm_stages",
    "cache_latents": "trainer.latents",
}

CLIENT_READERS: dict[str, str] = {
    "spatial_scenes": "openspatial.reader",
    "rgbd_sequences": "openspatial.video_reader",
    "multiview_assets": "render.pipeline_stages",
    "edit_assets": "render.pipeline_stages",
    "caption_shards": "trainer.latents",
    "edit_shards": "trainer.latents",
    "multiview_collages": "trainer.latents",
}

CLIENT_REPORT_SECTIONS = ("trainer.report", "openspatial.report", "render.report")

register_modules(stages=CLIENT_STAGES, readers=CLIENT_READERS, report_sections=CLIENT_REPORT_SECTIONS)
