"""Latent caching (the cache_latents stage and job), the MMDiT trainer tasks, and a run of the shared loop."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pytest
import torch
import yaml
from PIL import Image

from data_engine.editing.triplet import EDIT_TRIPLET
from data_engine.shards import read_shard, shard_paths
from data_engine.stage_runner import apply_stage
from trainer.cli import main as cli_main
from trainer.config import parse_config
from trainer.core import RunContext, Sample
from trainer.latents import (CacheLatentsConfig, CacheLatentsStage, PromptTooLong, aspect_ratio_buckets,
                             decode_latents, draw_shape_image, encode_images, image_to_tensor, nearest_bucket,
                             resize_to_bucket, tensor_from_bytes, write_synthetic_latent_shards)
from trainer.loop import train
from trainer.objectives.flow_matching import MMDiTEditTask, MMDiTTaskConfig, MMDiTTextToImageTask


def test_buckets_cover_the_area_and_aspect_range():
    buckets = aspect_ratio_buckets(512)
    assert (512, 512) in buckets
    for width, height in buckets:
        assert width % 16 == 0 and height % 16 == 0
        assert abs(width * height / 512**2 - 1) < 0.1 or min(width, height) == 16
        assert max(width / height, height / width) <= 4.0
    assert nearest_bucket(1920, 1080, buckets)[0] > nearest_bucket(1920, 1080, buckets)[1]
    assert nearest_bucket(1000, 1000, buckets) == (512, 512)
    assert aspect_ratio_buckets(208)[0][0] < aspect_ratio_buckets(208)[-1][0]
    with pytest.raises(ValueError, match="multiple of 16"):
        aspect_ratio_buckets(500)
    cropped = resize_to_bucket(Image.new("RGB", (300, 100)), (96, 48))
    assert cropped.size == (96, 48)


@pytest.fixture(scope="module")
def latent_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mmdit-latents")
    write_synthetic_latent_shards(out, 24, resolution=64, shard_rows=12)
    return out


@pytest.fixture(scope="module")
def cache_stage() -> CacheLatentsStage:
    stage = CacheLatentsStage(CacheLatentsConfig(kind="edit", resolution=64, torch_threads=1))
    stage.setup()
    return stage


def test_cached_latents_decode_back_to_the_encoded_latents(latent_dir: Path, cache_stage: CacheLatentsStage):
    table = read_shard(shard_paths(latent_dir)[0])
    row = table.slice(0, 1).to_pylist()[0]
    assert row["latent_shape"] == [16, 1, 8, 8] and (row["bucket_width"], row["bucket_height"]) == (64, 64)
    assert row["text_dim"] == 64 and [f["key"] for f in row["text_features"]] == ["long/en", "short/en"]
    stored = tensor_from_bytes(row["latent"], row["latent_shape"])
    image = Image.open(io.BytesIO(row["image_bytes"]))
    fresh = encode_images(cache_stage.vae, image_to_tensor(image)[None])[0]
    torch.testing.assert_close(stored, fresh, atol=2e-2, rtol=1e-2)  # float16 storage
    assert decode_latents(cache_stage.vae, stored[None]).shape == (1, 3, 64, 64)
    # the text features are the encoder's final-norm inputs for that caption
    short = next(f for f in row["text_features"] if f["key"] == "short/en")
    expected = cache_stage.text_encoder.encode(dict(row["captions"])["short/en"])
    torch.testing.assert_close(tensor_from_bytes(short["states"], (short["tokens"], 64)), expected,
                               atol=2e-2, rtol=1e-2)


def chat_input_ids(encoder, text: str, image: Image.Image | None) -> list[int]:
    content = ([{"type": "image", "image": image}] if image is not None else []) + [{"type": "text", "text": text}]
    inputs = encoder.processor.apply_chat_template([{"role": "user", "content": content}], tokenize=True,
                                                   return_dict=True, return_tensors="pt")
    return inputs["input_ids"][0].tolist()


def test_text_features_are_the_final_norm_input_with_an_image_prompt(cache_stage: CacheLatentsStage):
    """Qwen3-VL adds deepstack visual features inside the decoder layers (the tiny model's last layer too):
    what the MMDiT reads must be exactly what the final norm normalises, i.e. norm(features) is the model's
    last hidden state."""
    encoder = cache_stage.text_encoder
    image = draw_shape_image("red", "square", (96, 64))
    features = encoder.encode("make the square blue", image)
    content = [{"type": "image", "image": image}, {"type": "text", "text": "make the square blue"}]
    inputs = encoder.processor.apply_chat_template([{"role": "user", "content": content}], tokenize=True,
                                                   return_dict=True, return_tensors="pt")
    with torch.no_grad():
        last_hidden = encoder.model.model(**inputs).last_hidden_state[0]
        renormed = encoder.model.model.language_model.norm(features[None])[0]
    torch.testing.assert_close(renormed, last_hidden, atol=1e-5, rtol=1e-4)


def test_an_edit_instruction_survives_a_1024p_source(cache_stage: CacheLatentsStage):
    encoder = cache_stage.text_encoder
    instruction = "move the red square to the left edge and make it twice as large"
    source = draw_shape_image("red", "square", (1024, 1024))
    features = encoder.encode(instruction, source)
    ids = chat_input_ids(encoder, instruction, source)
    image_token = encoder.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert ids.count(image_token) == 144  # the source as the MLLM sees it: capped at 384x384
    assert features.shape[0] == len(ids) <= encoder.max_tokens  # every prompt token, none cut
    words = encoder.processor.tokenizer.encode(instruction, add_special_tokens=False)
    start = len(ids) - len(words) - 2  # the instruction, then <|im_end|> and the newline
    assert ids[start:start + len(words)] == words


def test_a_prompt_longer_than_the_features_is_rejected_not_cut(cache_stage: CacheLatentsStage):
    encoder = cache_stage.text_encoder
    long_instruction = " ".join(["rotate the chair a little further to the left"] * 60)
    with pytest.raises(PromptTooLong, match=r"prompt tokens \(144 of them image\) > max_text_tokens 512"):
        encoder.encode(long_instruction, draw_shape_image("red", "square", (1024, 1024)))
    rows = edit_rows().slice(0, 1).to_pylist()
    rows[0]["instruction"] = long_instruction
    processed, stats = apply_stage(cache_stage, pa.Table.from_pylist(rows, schema=EDIT_TRIPLET.arrow()), batch_size=4)
    assert processed.to_pylist()[0]["reject_reason"] == "text_too_long"
    assert stats.rejects == {"text_too_long": 1}


def edit_rows() -> pa.Table:
    def image_ref(colour: str, shape: str) -> dict:
        buffer = io.BytesIO()
        draw_shape_image(colour, shape, (96, 64)).save(buffer, format="PNG")
        return {"bytes": buffer.getvalue(), "uri": None, "width": 96, "height": 64, "sha256": None}

    rows = [{"id": "e0", "source_dataset": "t", "upstream_id": "0", "license": "generated",
             "source_image": image_ref("red", "square"), "reference_images": [],
             "instruction": "make the square blue", "target_image": image_ref("blue", "square"), "metadata": "{}"},
            {"id": "e1", "source_dataset": "t", "upstream_id": "1", "license": "generated",
             "source_image": {"bytes": b"not an image", "uri": None, "width": 1, "height": 1, "sha256": None},
             "reference_images": [], "instruction": "x", "target_image": image_ref("red", "circle"),
             "metadata": "{}"}]
    return pa.Table.from_pylist(rows, schema=EDIT_TRIPLET.arrow())


def test_edit_caching_and_an_edit_training_step(cache_stage: CacheLatentsStage, tmp_path: Path):
    processed, stats = apply_stage(cache_stage, edit_rows(), batch_size=4)
    rows = processed.to_pylist()
    assert rows[1]["reject_reason"] == "undecodable_image" and stats.rejects == {"undecodable_image": 1}
    assert rows[0]["source_latent_shape"] == rows[0]["latent_shape"] == [16, 1, 6, 10]  # bucket 80x48 at resolution 64
    assert rows[0]["text_features"][0]["key"] == "instruction"

    task = MMDiTEditTask(MMDiTTaskConfig(preset="tiny"), RunContext(0, 1, torch.device("cpu"), torch.float32,
                                                                    tmp_path), micro_batch_size=1)
    model = task.build_model()
    example = task.prepare(Sample(rows[0], "edits", False, seed=0))
    batch = task.collate([example])
    assert batch["source_latents"].shape == batch["latents"].shape
    losses = task.compute_loss(model, batch)
    losses["loss"].backward()
    # the source tokens reach the prediction: the patch embedding sees gradients from both images
    assert model.patch_embed.weight.grad is not None and float(losses["loss"].detach()) > 0


def test_t2i_task_buckets_and_pads(latent_dir: Path, tmp_path: Path):
    task = MMDiTTextToImageTask(MMDiTTaskConfig(preset="tiny"),
                                RunContext(0, 1, torch.device("cpu"), torch.float32, tmp_path), micro_batch_size=3)
    task.build_model()
    rows = read_shard(shard_paths(latent_dir)[0]).to_pylist()[:5]
    examples = [task.prepare(Sample(row, "shapes", False, seed=n)) for n, row in enumerate(rows)]
    assert task.plan_micro_batches(examples) == [[0, 1, 2], [3, 4]]
    batch = task.collate(examples[:3])
    lengths = [example.text_states.shape[0] for example in examples[:3]]
    assert batch["text_mask"].sum(dim=1).tolist() == lengths
    assert batch["text_states"].shape == (3, max(lengths), 64)
    model = task.build_model()
    scores = task.evaluate(model, [Sample(row, "shapes", False, seed=n) for n, row in enumerate(rows)])
    assert scores["samples"] == 5 and scores["flow_loss"] > 0


def test_t2i_task_draws_the_caption_feature_with_the_stored_probabilities(latent_dir: Path, tmp_path: Path):
    task = MMDiTTextToImageTask(MMDiTTaskConfig(preset="tiny"),
                                RunContext(0, 1, torch.device("cpu"), torch.float32, tmp_path))
    task.build_model()
    row = read_shard(shard_paths(latent_dir)[0]).to_pylist()[0]
    features = {f["key"]: tensor_from_bytes(f["states"], (f["tokens"], 64)) for f in row["text_features"]}
    for caption_type in ("short", "long"):
        row["caption_sampling"] = json.dumps({"types": {"short": float(caption_type == "short"),
                                                        "long": float(caption_type == "long")},
                                              "languages": {"en": 1.0, "zh": 0.0}})
        for seed in range(5):
            example = task.prepare(Sample(row, "shapes", False, seed=seed))
            assert torch.equal(example.text_states, features[f"{caption_type}/en"])


def test_training_through_the_shared_loop_lowers_the_loss_then_samples(latent_dir: Path, tmp_path: Path):
    config = {
        "task": {"name": "mmdit_t2i", "config": {"preset": "tiny", "flow": {"text_dropout": 0.1},
                                                 "sample": {"num_steps": 2}}},
        "data": {"window": 24, "datasets": [{"name": "shapes", "path": str(latent_dir)}]},
        "optim": {"lr": 2e-3, "warmup_steps": 2},
        "engine": {"zero_stage": 1, "micro_batch_size": 8},
        "run": {"out_dir": str(tmp_path / "run"), "max_steps": 30, "progress": False, "tensorboard": False},
    }
    result = train(parse_config(config))
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < 0.7 * first, result.losses
    # `python -m trainer sample` puts the checkpoint's fixed-prompt grid into the run directory.
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    assert cli_main(["sample", "--config", str(config_file)]) == 0
    written = tmp_path / "run" / "samples" / "step-00000030"
    assert Image.open(written / "grid.png").size == (256, 64)
    assert json.loads((written / "samples.json").read_text())["checkpoint"] == "step-00000030"


def test_sample_images_decode_to_the_bucket_and_tile(cache_stage: CacheLatentsStage):
    from trainer.models.mmdit import MMDiT, preset_config
    from trainer.sampling import image_grid, sample_images

    model = MMDiT(preset_config("tiny")).eval()
    prompts = [cache_stage.text_encoder.encode("a red square"), cache_stage.text_encoder.encode("a blue circle")]
    images = sample_images(model, cache_stage.vae, prompts, latent_shape=(16, 1, 6, 10), num_steps=2)
    assert [image.size for image in images] == [(80, 48), (80, 48)]
    assert image_grid(images + images[:1], columns=2).size == (160, 96)


def test_cache_latents_job_fits_the_stage_contract():
    from data_engine.stage import STAGE_REGISTRY
    from pipelines.jobfile import JOBS_DIR, load_job

    job = load_job(JOBS_DIR / "cache_latents.yaml", ["input=/nowhere", "output=/nowhere-out"])
    assert job.schema_name == "caption" and job.reader.kind == "caption_shards"
    spec = job.stages[0]
    assert STAGE_REGISTRY[spec.op].uses_model and spec.stage_config().kind == "t2i"


def test_mmdit_stage_configs_validate():
    from trainer.config import CONFIGS_DIR, load_config

    names = sorted(path.name for path in CONFIGS_DIR.glob("mmdit_*.yaml"))
    assert {"mmdit_t2i_tiny.yaml", "mmdit_t2i_208p.yaml", "mmdit_t2i_512p.yaml", "mmdit_t2i_1024p.yaml",
            "mmdit_t2i_continue.yaml", "mmdit_t2i_sft.yaml", "mmdit_edit.yaml"} <= set(names)
    for name in names:
        config = load_config(CONFIGS_DIR / name)
        config.task_config()
    assert len(load_config(CONFIGS_DIR / "mmdit_t2i_1024p.yaml").data.datasets) == 2  # multi-view mixed in


def write_upstream(out: Path, schema, rows: list[dict]) -> Path:
    from data_engine.shards import MANIFEST_NAME, atomic_write_json, write_shard

    out.mkdir(parents=True)
    write_shard(out, 0, pa.Table.from_pylist(rows, schema=schema.arrow()), [{"name": "test", "rows_in": len(rows)}])
    atomic_write_json(out / MANIFEST_NAME, {"schema": {"name": schema.name, "version": schema.version}})
    return out


def test_multiview_collages_become_caption_rows(tmp_path: Path):
    from data_engine.schemas import MULTIVIEW_SAMPLE
    from data_engine.upstream import UpstreamShardsConfig
    from trainer.latents import MultiviewCollagesReader

    collage = {"bytes": b"png", "uri": None, "width": 256, "height": 128, "sha256": "abc"}
    rows = [{"id": f"m{n}", "source_dataset": "render", "upstream_id": str(n), "license": "CC0", "views": [],
             "cameras": "[]", "main_view_index": 0, "collage": collage, "structured_caption": '{"a": 1}',
             "dense_caption": "a chair from four sides", "reject_reason": "blurry" if n == 1 else None}
            for n in range(3)]
    upstream = write_upstream(tmp_path / "multiview", MULTIVIEW_SAMPLE, rows)
    reader = MultiviewCollagesReader(UpstreamShardsConfig(kind="multiview_collages", source_dataset="mv"))
    items = reader.list_items(str(upstream))
    assert [item.partition("#")[2] for item in items] == ["m0", "m2"]  # accepted rows only
    table = reader.read_items(str(upstream), items)
    row = table.to_pylist()[0]
    assert row["upstream_id"] == "m0" and row["image_bytes"] == b"png" and (row["width"], row["height"]) == (256, 128)
    assert dict(row["captions"]) == {"extended_long/en": "a chair from four sides", "structured/en": '{"a": 1}'}


def test_cache_latents_job_runs_on_ray(ray_local, latent_dir: Path, tmp_path: Path):
    from data_engine.executor import run_job
    from pipelines.jobfile import JOBS_DIR, load_job

    from data_engine.schemas import CAPTION

    caption_rows = read_shard(shard_paths(latent_dir)[0]).select([f.name for f in CAPTION.fields]).slice(0, 4)
    upstream = write_upstream(tmp_path / "captions", CAPTION, caption_rows.to_pylist())
    job = load_job(JOBS_DIR / "cache_latents.yaml", [f"input={upstream}", f"output={tmp_path / 'latents'}",
                                                       "stages.0.config.resolution=64"])
    manifest = run_job(job, progress=False)
    assert manifest["rows_written"] == 4
    table = read_shard(shard_paths(tmp_path / "latents")[0])
    assert table.column("reject_reason").null_count == 4
    assert table.column("latent_shape").to_pylist() == [[16, 1, 8, 8]] * 4


def test_write_samples_t2i_and_edit(tmp_path: Path):
    context = RunContext(0, 1, torch.device("cpu"), torch.float32, tmp_path)
    t2i = MMDiTTextToImageTask(MMDiTTaskConfig.model_validate({"sample": {"num_steps": 2, "columns": 2}}), context)
    grid = t2i.write_samples(t2i.build_model(), tmp_path / "t2i", "step-00000007")
    assert Image.open(grid).size == (128, 128) and len(list((tmp_path / "t2i").glob("sample-*.png"))) == 4
    listing = json.loads((tmp_path / "t2i" / "samples.json").read_text())
    assert listing["checkpoint"] == "step-00000007" and listing["grid"] == "grid.png" and listing["columns"] == 2
    assert [entry["prompt"] for entry in listing["samples"]] == list(t2i.config.sample.prompts)
    assert all((tmp_path / "t2i" / entry["image"]).is_file() for entry in listing["samples"])

    source = tmp_path / "source.png"
    draw_shape_image("red", "square", (96, 64)).save(source)
    edit = MMDiTEditTask(MMDiTTaskConfig.model_validate({"sample": {
        "prompts": ["make it blue"], "source_images": [str(source)], "width": 96, "height": 64, "num_steps": 2}}),
        context)
    assert Image.open(edit.write_samples(edit.build_model(), tmp_path / "edit", "base")).size == (96, 64)
    edit_listing = json.loads((tmp_path / "edit" / "samples.json").read_text())
    assert edit_listing["samples"] == [{"prompt": "make it blue", "image": "sample-000.png",
                                        "source_image": str(source)}]
    # Instructions and sources from edit-triplet shards (the NFT config's sample grid over the demo's renders).
    from data_engine.output_dir import standalone_manifest, write_manifest
    from data_engine.shards import write_shard

    (tmp_path / "edit-shards").mkdir()
    write_shard(tmp_path / "edit-shards", 0, edit_rows(), [])
    write_manifest(tmp_path / "edit-shards", standalone_manifest(EDIT_TRIPLET, "edits", {}, [2]))
    from_shards = MMDiTEditTask(MMDiTTaskConfig.model_validate({"sample": {
        "edit_shards": str(tmp_path / "edit-shards"), "edit_count": 1, "width": 96, "height": 64, "num_steps": 2}}),
        context)
    from_shards.write_samples(from_shards.build_model(), tmp_path / "edit-from-shards", "base")
    assert json.loads((tmp_path / "edit-from-shards" / "samples.json").read_text())["samples"] == [
        {"prompt": "make the square blue", "image": "sample-000.png", "source_image": "e0"}]
    with pytest.raises(ValueError, match="source_images has 1 files for 2 prompts"):
        MMDiTTaskConfig.model_validate({"sample": {"prompts": ["a", "b"], "source_images": ["x.png"]}})
