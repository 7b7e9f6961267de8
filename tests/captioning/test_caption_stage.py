"""caption_image: the stage on the tiny Qwen3-VL (direct and through both backends), its rejects and
re-decisions, and `make caption`'s job from an upstream image job's shards on local Ray."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import ServedModel, png_bytes
from PIL import Image, ImageDraw, ImageFont

from data_engine.curation.caption_rules import DEFAULT_RULES
from data_engine.executor import run_job
from data_engine.job import JobConfigError, StageSpec
from data_engine.readers import row_id
from data_engine.redecide import redecide_table
from data_engine.schemas import CAPTION
from data_engine.shards import iter_shards
from data_engine.stage import StageUnavailable
from data_engine.stage_runner import apply_stage
from data_engine.stages.caption import CaptionImageStage
from pipelines.jobfile import JOBS_DIR, load_job

BUDGETS = {"short": 4, "long": 4, "extended_long": 4, "structured": 4}
ALL_KEYS = {f"{t}/{lang}" for t in BUDGETS for lang in ("en", "zh")}


def caption_table(images: list[bytes]) -> pa.Table:
    rows = [{"id": row_id("test", str(i)), "source_dataset": "test", "upstream_id": str(i), "license": "CC0",
             "image_bytes": image, "width": 1, "height": 1} for i, image in enumerate(images)]
    return pa.Table.from_pylist(rows, schema=CAPTION.arrow())


def caption_stage(backend: dict, **config) -> CaptionImageStage:
    stage = StageSpec(op="caption_image", config={"backend": backend, "max_new_tokens": BUDGETS, **config}).build()
    stage.setup()
    return stage


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    return [png_bytes((96, 64), (220, 40, 40)), png_bytes((1200, 300), (40, 40, 220), "WIDE"),
            png_bytes((50, 50), (40, 200, 40))]


@pytest.mark.parametrize("backend_kind", ["transformers", "openai"])
def test_every_type_and_language_is_stored_and_bad_json_is_recorded(
        backend_kind: str, images: list[bytes], served_tiny_vlm: ServedModel) -> None:
    backend = ({"kind": "transformers", "model": "tiny:qwen3vl", "temperature": 1.0} if backend_kind == "transformers"
               else {"kind": "openai", "base_url": served_tiny_vlm.base_url, "model": served_tiny_vlm.model,
                     "temperature": 1.0, "guided_json": False})
    stage = caption_stage(backend, required=["short/en", "long/zh"], image_max_side=256)
    table, stats = apply_stage(stage, caption_table(images), batch_size=2)
    rows = table.to_pylist()
    assert [r["reject_reason"] for r in rows] == [None] * 3 and stats.rows_out == 3
    for row in rows:
        captions, errors = dict(row["captions"]), dict(row["caption_errors"])
        # The random model writes no JSON: both structured captions fail to parse; the rest are stored.
        assert set(captions) == ALL_KEYS - {"structured/en", "structured/zh"}
        assert set(errors) == {"structured/en", "structured/zh"}
        assert all(message.startswith("caption_json_invalid: ") for message in errors.values())
        assert json.loads(row["caption_sampling"])["languages"] == {"en": 0.5, "zh": 0.5}
        assert row["caption_prompts"].startswith("caption/v2@")
    if backend_kind == "openai":
        sent_images = [p["messages"][0]["content"][0]["image_url"]["url"] for p in served_tiny_vlm.control.received]
        assert len(sent_images) == 3 * len(ALL_KEYS)  # one request per caption per image

    # Requiring every caption (the production default) rejects the rows by their first failure, from
    # the stored errors alone.
    strict = caption_stage(backend, image_max_side=256)
    assert redecide_table(table, [strict]).column("reject_reason").to_pylist() == ["caption_json_invalid"] * 3


def test_failed_requests_reject_the_row_with_the_reason(images: list[bytes], served_tiny_vlm: ServedModel) -> None:
    backend = {"kind": "openai", "base_url": served_tiny_vlm.base_url, "model": "not-served", "max_retries": 0}
    stage = caption_stage(backend, types=["short"], languages=["en"], sampling={"types": {"short": 1.0},
                                                                                 "languages": {"en": 1.0}})
    table, stats = apply_stage(stage, caption_table(images[:1]), batch_size=4)
    row = table.to_pylist()[0]
    assert (row["reject_reason"], row["reject_stage"]) == ("caption_request_failed", "caption_image")
    assert "not served" in dict(row["caption_errors"])["short/en"]
    assert stats.rejects == {"caption_request_failed": 1}


@pytest.mark.parametrize("config, message", [
    ({"required": ["short/fr"]}, "required: .*short/fr"),
    ({"types": ["short"]}, "sampling: gives probability to .*long"),
    ({"sampling": {"languages": {"en": 0.7, "zh": 0.7}}}, "languages: probabilities must .* sum to 1"),
    ({"prompt_version": "caption/v7"}, "prompt set 'caption/v7' not found"),
    ({"backend": {"kind": "grpc"}}, "backend"),
])
def test_bad_config_is_a_one_line_error(config: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(JobConfigError, match=message):
        load_job(JOBS_DIR / "caption.yaml", [f"stages.caption_image.config.{k}={json.dumps(v)}"
                                            for k, v in config.items()])


def test_preflight_names_a_missing_model(tmp_path: Path) -> None:
    spec = StageSpec(op="caption_image", config={"backend": {"kind": "transformers", "model": str(tmp_path / "nope")}})
    with pytest.raises(StageUnavailable, match=r"caption_image: backend.model: .*nope is not a directory"):
        spec.build().preflight()
    served = StageSpec(op="caption_image", config={"backend": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1",
                                                               "model": "m"}})
    served.build().preflight()  # a server that is down fails per request, recorded on the rows


def signboard_png() -> bytes:
    """Large dark words on a light board: text any OCR engine reads."""
    image = Image.new("RGB", (640, 320), (235, 230, 210))
    ImageDraw.Draw(image).text((40, 110), "OPEN MARKET", fill=(20, 20, 20), font=ImageFont.load_default(size=72))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_caption_job_runs_on_an_image_job_output(ray_local, images: list[bytes], tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for index, image in enumerate([*images, signboard_png()]):
        (raw / f"img{index}.png").write_bytes(image)
    (raw / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    images_out, captions_out = tmp_path / "images", tmp_path / "captions"
    run_job(load_job(JOBS_DIR / "demo.yaml", [f"input={raw}", f"output={images_out}",
                                             "stages.decode_image.config.min_side=55"]), progress=False)
    job = load_job(JOBS_DIR / "caption.yaml", [f"input={images_out}", f"output={captions_out}",
                                               "reader.shard_rows=2"])
    assert [spec.op for spec in job.stages] == ["ocr_text", "caption_image", "ocr_caption_filter",
                                                "caption_content_filter"]
    manifest = run_job(job, progress=False)
    # The broken file and the 50 px image stop at the image job; the caption job sees accepted images only.
    assert manifest["rows_in"] == 3 and len(manifest["shards"]) == 2
    assert manifest["input"]["upstream"]["job"] == "demo_images"
    assert manifest["input"]["upstream"]["manifest"] == str(images_out / "_manifest.json")
    rows = {r["width"]: r for _, table in iter_shards(captions_out) for r in table.to_pylist()}
    assert sorted(rows) == [96, 640, 1200]
    # OCR read the signboard; the tiny model's captions (noise) never reproduce it, so the post-filter removes
    # every caption it checked, each with its reason, and the row goes with the rule's name.
    board = rows[640]
    assert "OPEN MARKET" in " ".join(line["text"] for line in board["ocr_lines"]).upper()
    assert (board["reject_stage"], board["reject_reason"]) == ("ocr_caption_filter", "ocr_not_covered")
    assert board["captions"] == [] and {key for key, _ in board["ocr_caption_rejects"]} == ALL_KEYS - {
        key for key, _ in (board["caption_errors"] or [])}
    # A plain colour has no text: nothing to cover, so only a caption quoting text (the tiny model's noise may
    # hold quote marks) is removed; the row keeps the rest. Structured noise is no JSON: a caption error.
    plain = rows[96]
    removed = dict(plain["ocr_caption_rejects"] or [])
    generated = ALL_KEYS - {key for key, _ in (plain["caption_errors"] or [])}
    assert plain["ocr_lines"] == [] and plain["reject_reason"] is None
    assert set(removed.values()) <= {"ocr_quote_unsupported"}
    assert set(dict(plain["captions"])) == generated - set(removed) and plain["captions"]
    assert manifest["rows_accepted"] == sum(r["reject_reason"] is None for r in rows.values())
    # The content filter ran on the captions, and the manifest names the exact rules it used.
    assert plain["content_categories"] is not None
    filter_config = next(s for s in manifest["config"]["stages"] if s["op"] == "caption_content_filter")["config"]
    assert filter_config["rules_sha256"] == hashlib.sha256(DEFAULT_RULES.read_bytes()).hexdigest()


def test_image_shards_reader_marks_vanished_rows_and_names_foreign_shards(tmp_path: Path) -> None:
    from data_engine.captioning.reader import ImageShardsReader
    from data_engine.editing.triplet import EDIT_TRIPLET
    from data_engine.schemas import IMAGE_SAMPLE
    from data_engine.shards import ShardDirError, write_shard
    from data_engine.upstream import UpstreamShardsConfig

    def upstream(name: str, schema, rows: list[dict]) -> str:
        base = [{"source_dataset": "raw", "upstream_id": row["id"], "license": "CC0"} | row for row in rows]
        (tmp_path / name).mkdir()
        write_shard(tmp_path / name, 0, pa.Table.from_pylist(base, schema=schema.arrow()), [])
        return str(tmp_path / name)

    images = upstream("images", IMAGE_SAMPLE, [{"id": "a", "image_bytes": b"x", "width": 8},
                                               {"id": "b", "reject_reason": "too_small"}])
    reader = ImageShardsReader(UpstreamShardsConfig(kind="image_shards", source_dataset="curated", license="mixed"))
    items = reader.list_items(images)
    assert items == ["part-00000.parquet#a"]  # accepted rows only
    table = reader.read_items(images, [*items, "part-00000.parquet#gone"]).to_pylist()
    assert [(r["upstream_id"], r["image_bytes"], r["width"], r["license"], r["reject_reason"]) for r in table] == [
        ("a", b"x", 8, "CC0", None), ("gone", None, None, "mixed", "upstream_row_missing")]
    assert table[0]["id"] == row_id("curated", "a") and table[0]["source_dataset"] == "curated"
    # The reader option for audits: rejected upstream rows too, starting undecided in this job.
    everything = ImageShardsReader(UpstreamShardsConfig(kind="image_shards", include_rejected=True))
    assert everything.list_items(images) == ["part-00000.parquet#a", "part-00000.parquet#b"]
    rejected = everything.read_items(images, ["part-00000.parquet#b"]).to_pylist()[0]
    assert (rejected["upstream_id"], rejected["reject_reason"], rejected["reject_stage"]) == ("b", None, None)

    edits = upstream("edits", EDIT_TRIPLET, [{"id": "e"}])
    with pytest.raises(ShardDirError, match=r"edits/part-00000.parquet: not image_sample shards \(missing columns"):
        reader.read_items(edits, reader.list_items(edits))
