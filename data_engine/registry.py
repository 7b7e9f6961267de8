"""Where the engine finds every stage op, reader kind and report section a job or a report can name.

The engine lists only its own modules here. Client packages (`openspatial/`, `render/`, `trainer/`) are added
by the composition root, `pipelines/registry.py`, through `register_modules`, so the engine never names a
client. Modules are imported on first use: a job imports only what it names (a curation job never pays for
torch because the trainer's latent-caching stage exists), and a Ray worker receives the registrations of its
job (`job_registrations`) with its work, since it never runs the composition root.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Mapping

from data_engine.readers import READERS, Reader
from data_engine.stage import STAGE_REGISTRY, Stage

# op / reader kind -> the module whose import registers it
STAGE_MODULES: dict[str, str] = {
    "decode_image": "data_engine.stages.image_basic",
    "iqa_cascade": "data_engine.stages.iqa_cascade",
    "learned_iqa": "data_engine.stages.learned_iqa",
    "aesthetic": "data_engine.stages.aesthetic",
    "embed_images": "data_engine.stages.image_embedding",
    "vlm_aesthetic": "data_engine.stages.vlm_aesthetic",
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
    "rebalance": "data_engine.stages.rebalance",
    "sample_text_blueprint": "data_engine.textrender.stages",
    "generate_text_blueprint": "data_engine.textrender.stages",
    "render_text": "data_engine.textrender.stages",
    "caption_rendered_text": "data_engine.textrender.stages",
    "verify_rendered_text": "data_engine.textrender.stages",
    "render_text_edit": "data_engine.textrender.edit",
    "video_pair_change": "data_engine.editing.pairs",
    "video_pair_instruction": "data_engine.editing.instructions",
    "edit_change": "data_engine.editing.curation",
    "edit_region": "data_engine.editing.curation",
    "edit_quality": "data_engine.editing.curation",
    "edit_intent_judge": "data_engine.editing.curation",
    "refine_instruction": "data_engine.editing.refine",
    "balance_edits": "data_engine.editing.balance",
}

READER_MODULES: dict[str, str] = {
    "image_folder": "data_engine.readers",
    "tar": "data_engine.io",
    "parquet_images": "data_engine.io",
    "image_shards": "data_engine.captioning.reader",
    "text_seeds": "data_engine.textrender.reader",
    "text_edit_seeds": "data_engine.textrender.reader",
    "video_files": "data_engine.editing.video",
    "edit_sources": "data_engine.editing.adapters",
}

# Modules that register report section kinds, asked in this order before the stage section (the fallback).
REPORT_SECTION_MODULES: list[str] = ["data_engine.rebalance.report", "data_engine.annotation.report",
                                     "data_engine.editing.balance"]


def register_modules(*, stages: Mapping[str, str] | None = None, readers: Mapping[str, str] | None = None,
                     report_sections: Iterable[str] = ()) -> None:
    """Add a package's ops, reader kinds and report section modules; registering the same entry again is a
    no-op, naming an op or kind that another module owns is an error."""
    for table, entries, what in ((STAGE_MODULES, stages, "stage op"), (READER_MODULES, readers, "reader kind")):
        for name, module in (entries or {}).items():
            if table.get(name, module) != module:
                raise ValueError(f"{what} {name!r} is registered by {table[name]}, not {module}")
            table[name] = module
    REPORT_SECTION_MODULES.extend(m for m in report_sections if m not in REPORT_SECTION_MODULES)


def stage_class(op: str) -> type[Stage]:
    importlib.import_module(STAGE_MODULES[op])
    return STAGE_REGISTRY[op]


def reader_class(kind: str) -> type[Reader]:
    importlib.import_module(READER_MODULES[kind])
    return READERS[kind]


def import_report_sections() -> None:
    for module in REPORT_SECTION_MODULES:
        importlib.import_module(module)


def job_registrations(reader_kind: str, ops: Iterable[str]) -> str:
    """The registrations one job's reader and stages need, as JSON for its workers (`register_json`)."""
    return json.dumps({"readers": {reader_kind: READER_MODULES[reader_kind]},
                       "stages": {op: STAGE_MODULES[op] for op in ops}})


def register_json(registrations: str) -> None:
    register_modules(**json.loads(registrations))
