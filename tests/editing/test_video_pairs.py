"""Video pairs (issue 19, items 1-4): PyAV reading, shots, sampling, sharpness, pairs in one shot, the change
decision and redecide, the VLM instruction checks, and the video_pairs job on Ray with the tiny Qwen3-VL.

Ground truth comes from the procedural videos' specs (where the cut is, which frames are blurred or still),
stated by construction in data_engine/editing/procedural_video.py, never measured by the code under test.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from data_engine.editing.instructions import judge_instruction
from data_engine.editing.pairs import VideoPairChangeConfig, VideoPairChangeStage
from data_engine.editing.procedural_video import VideoSpec, encode_video, write_demo_videos
from data_engine.editing.shots import sharpness
from data_engine.editing.video import VideoFilesConfig, VideoFilesReader, encode_png, read_video
from data_engine.executor import run_job
from data_engine.job import JobConfigError
from data_engine.redecide import redecide_table
from data_engine.shards import iter_shards
from data_engine.stage_runner import apply_stage
from pipelines.jobfile import JOBS_DIR, load_job

CUT_SPEC = VideoSpec("hard_cut", seed=3)  # 96 frames, 64x48, cut before frame 48


def reader_over(tmp_path: Path, files: dict[str, bytes], **config) -> tuple[VideoFilesReader, list[str]]:
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    reader = VideoFilesReader(VideoFilesConfig(**config))
    return reader, reader.list_items(str(tmp_path))


@pytest.mark.parametrize("container, detector", [("mp4", "content"), ("webm", "content"), ("mkv", "content"),
                                                 ("mkv", "adaptive")])
def test_a_hard_cut_at_frame_48_gives_two_exact_shots(container: str, detector: str) -> None:
    config = VideoFilesConfig(sampling={"detector": {"kind": detector}})
    found = read_video(encode_video(CUT_SPEC, container), f"cut.{container}", config)
    assert found.frame_count == 96
    assert found.shots == [(0, 48), (48, 96)]
    # Every sampled frame carries its shot and timestamp (frame index / 24 fps).
    assert {(f.shot_id, f.index >= 48) for f in found.frames} == {(0, False), (1, True)}
    assert all(abs(f.timestamp_s - f.index / 24) < 1e-3 for f in found.frames)
    # Sampling restarts at each shot's first frame: 4 fps of 24 fps is every 6th frame from 0 and from 48.
    assert [f.index for f in found.frames] == list(range(0, 48, 6)) + list(range(48, 96, 6))


def test_blurred_frames_are_removed_and_sharp_ones_kept(tmp_path: Path) -> None:
    spec = VideoSpec("blurred_stretch", seed=5)
    reader, items = reader_over(tmp_path, {"blur.mkv": encode_video(spec, "mkv")},
                                sampling={"sample_fps": 24.0})  # every frame sampled
    rows = reader.read_items(str(tmp_path), items).to_pylist()
    dropped = {r["source_frame_index"] for r in rows if r["reject_reason"] == "blurred_frame"}
    paired = {r[key] for r in rows if r["pair_id"] for key in ("source_frame_index", "target_frame_index")}
    assert set(spec.blurred_frames) <= dropped
    sharp = set(range(spec.frames)) - set(spec.blur_stretch)
    assert sharp <= paired and not dropped & sharp
    assert all(r["sharpness_threshold"] >= 20.0 for r in rows)


def test_sharpness_is_the_float64_laplacian_variance_even_at_the_extremes() -> None:
    # A 0/255 checkerboard puts the Laplacian at its bounds (+-1020): the int16 filter must not saturate.
    checkerboard = (np.indices((48, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (48, 64), dtype=np.uint8)
    for grey in (checkerboard, noise, np.full((48, 64), 128, np.uint8)):
        assert sharpness(grey) == float(cv2.Laplacian(grey, cv2.CV_64F).var())
    with pytest.raises(ValueError, match="uint8"):
        sharpness(checkerboard.astype(np.float32))


def test_pair_images_are_lossless_png() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (36, 52, 3), dtype=np.uint8)
    decoded = Image.open(io.BytesIO(encode_png(rgb)))
    assert decoded.format == "PNG" and np.array_equal(np.asarray(decoded.convert("RGB")), rgb)


def test_no_pair_crosses_a_shot_boundary(tmp_path: Path) -> None:
    reader, items = reader_over(tmp_path, {"cut.mp4": encode_video(CUT_SPEC, "mp4")},
                                pairing={"strides": [1, 2, 3], "max_interval_s": 10.0})
    pairs = [r for r in reader.read_items(str(tmp_path), items).to_pylist() if r["pair_id"]]
    assert {r["shot_id"] for r in pairs} == {0, 1}
    for row in pairs:
        assert (row["source_frame_index"] >= 48) == (row["target_frame_index"] >= 48) == (row["shot_id"] == 1)
        assert row["source_timestamp_s"] < row["target_timestamp_s"]
        assert row["source_image"].startswith(b"\x89PNG") and row["target_image"].startswith(b"\x89PNG")


def test_identical_and_scene_change_pairs_are_rejected_and_redecide_reapplies_thresholds(tmp_path: Path) -> None:
    still = VideoSpec("still_then_moving", seed=7)
    # A detector that never cuts lets one pair span the hard cut: a scene change inside one "shot".
    reader, items = reader_over(tmp_path, {"still.mkv": encode_video(still, "mkv"),
                                           "cut.mkv": encode_video(CUT_SPEC, "mkv")},
                                sampling={"detector": {"kind": "content", "threshold": 255.0}})
    table = reader.read_items(str(tmp_path), items)
    stage = VideoPairChangeStage(VideoPairChangeConfig())
    decided, _ = apply_stage(stage, table, batch_size=64)
    rows = [r for r in decided.to_pylist() if r["pair_id"]]
    identical = [r for r in rows if r["video_id"] == "still.mkv" and r["target_frame_index"] in still.still_frames]
    across = [r for r in rows if r["video_id"] == "cut.mkv" and r["source_frame_index"] < 48 <= r["target_frame_index"]]
    assert identical and all(r["reject_reason"] == "negligible_change" and r["change_score"] == 0 for r in identical)
    assert len(across) == 1 and across[0]["reject_reason"] == "change_too_large" and across[0]["change_score"] >= 0.5
    moving = [r for r in rows if r not in identical and r not in across]
    assert moving and all(r["reject_reason"] is None for r in moving)
    # Thresholds are re-applied from the stored scores: with max_change 1.0 the scene change passes.
    relaxed = VideoPairChangeStage(VideoPairChangeConfig(max_change=1.0))
    redecided = {r["id"]: r["reject_reason"] for r in redecide_table(decided, [relaxed]).to_pylist()}
    assert redecided[across[0]["id"]] is None and redecided[identical[0]["id"]] == "negligible_change"


def test_broken_zero_length_short_and_unsupported_videos_are_rows_with_reasons(tmp_path: Path) -> None:
    expected = {name: outcome for name, outcome in write_demo_videos(tmp_path, n=0).items()}
    (tmp_path / "clip.avi").write_bytes(b"RIFF....AVI ")
    expected["clip.avi"] = "unsupported_format"
    reader = VideoFilesReader(VideoFilesConfig())
    rows = reader.read_items(str(tmp_path), reader.list_items(str(tmp_path))).to_pylist()
    assert {r["video_id"]: r["reject_reason"] for r in rows} == expected
    assert all(r["reject_stage"] == "read" and r["reject_detail"] and r["pair_id"] is None for r in rows)


def test_a_missing_transnetv2_model_is_a_one_line_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "transnetv2.onnx"
    with pytest.raises(ValidationError, match="transnetv2.onnx is not a file"):
        VideoFilesConfig(sampling={"detector": {"kind": "transnetv2", "model_path": str(missing)}})
    with pytest.raises(JobConfigError) as error:
        detector = json.dumps({"kind": "transnetv2", "model_path": str(missing)})
        load_job(JOBS_DIR / "video_pairs.yaml", [f"reader.sampling.detector={detector}"])
    assert "transnetv2.onnx is not a file" in str(error.value) and "\n" not in str(error.value)


IGNORE = frozenset("the a to make add remove move left right".split())
GOOD = '{"instruction": "Move the red ball to the left", "instruction_zh": "把红球移到左边", ' \
       '"change_type": "move", "confidence": 0.8}'


@pytest.mark.parametrize("raw, reason", [
    (GOOD, None),
    (f"<think>two frames</think>```json\n{GOOD}\n```", None),
    ("The ball moved to the left.", "instruction_unparseable"),
    ('{"instruction": "Move the ball", "change_type": "move", "confidence": 0.8}', "instruction_unparseable"),
    (GOOD.replace('"move", "conf', '"teleport", "conf'), "instruction_unparseable"),
    (GOOD.replace("0.8", "1.5"), "instruction_unparseable"),
    (GOOD.replace('"move", "conf', '"none", "conf'), "no_visible_change"),
    (GOOD.replace("Move the red ball to the left", "There is no visible change"), "no_visible_change"),
    (GOOD.replace("red ball", "giraffe"), "instruction_ungrounded"),
])
def test_instruction_answers_are_parsed_strictly_and_grounded_in_the_captions(raw: str, reason: str | None) -> None:
    judged = judge_instruction(raw, "A red ball on a wooden table.", "Red balls beside a table.", IGNORE)
    assert judged.reject == reason
    if reason is None:
        assert judged.fields == {"instruction": "Move the red ball to the left", "instruction_zh": "把红球移到左边",
                                 "change_type": "move", "confidence": 0.8}
    else:
        assert judged.fields is None and judged.detail


def test_video_pairs_job_runs_on_ray_with_the_tiny_vlm(ray_local, tmp_path: Path) -> None:
    out = tmp_path / "pairs"
    job = load_job(JOBS_DIR / "video_pairs.yaml", ["input=procedural://3?seed=0", f"output={out}",
                                                   "stages.video_pair_instruction.config.caption_max_new_tokens=4",
                                                   "stages.video_pair_instruction.config.instruction_max_new_tokens=4"])
    assert [spec.op for spec in job.stages] == ["video_pair_change", "video_pair_instruction"]
    manifest = run_job(job, progress=False)
    rows = [r for _, table in iter_shards(out) for r in table.to_pylist()]
    stages = {s["name"]: s for s in manifest["stages"]}
    assert stages["read"]["rows_in"] == 3 and stages["video_pair_change"]["rejects"]["negligible_change"] >= 1
    assert stages["read"]["rejects"].get("blurred_frame", 0) >= 1
    reached = [r for r in rows if r["reject_stage"] == "video_pair_instruction"]
    # The tiny random model writes noise: every pair that reaches it is unparseable, with its answer kept, and
    # both frames were captioned with the versioned prompt.
    assert reached and len(reached) == stages["video_pair_change"]["rows_out"]
    assert {r["reject_reason"] for r in reached} == {"instruction_unparseable"}
    assert all(r["source_caption"] is not None and r["target_caption"] is not None for r in reached)
    assert {r["instruction_prompt"].split("@")[0] for r in reached} == {"video_pair_instruction/v1"}
    pair = reached[0]
    assert {"pair_id", "video_id", "shot_id", "source_timestamp_s", "target_timestamp_s", "source_image",
            "target_image", "change_score", "instruction", "instruction_zh", "change_type", "confidence"} <= set(pair)
