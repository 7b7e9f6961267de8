"""Edit sources in the layouts they ship in, written by hand for the adapter and job tests: a spatial-edit
render shard, a text-edit shard, a video-pair shard (the video job's column names) and the four external
dataset layouts (column names from the InstructPix2Pix, MagicBrush, UltraEdit and OmniEdit dataset cards)."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from data_engine.camera_move import CameraMove, format_camera_move
from data_engine.editing.triplet import EDIT_TRIPLET
from data_engine.readers import row_id
from data_engine.schemas import IMAGE_REF
from data_engine.shards import write_shard

SIZE = (96, 64)  # width, height


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def scene(seed: int, box: tuple[int, int, int, int] | None = (20, 16, 44, 40),
          colour: tuple[int, int, int] = (200, 40, 40)) -> np.ndarray:
    """A textured backdrop (so blur is measurable) with a coloured box."""
    rng = np.random.default_rng(seed)
    image = np.clip(rng.normal(128, 40, (SIZE[1], SIZE[0], 3)), 0, 255).astype(np.uint8)
    if box is not None:
        x0, y0, x1, y1 = box
        image[y0:y1, x0:x1] = colour
    return image


def box_mask(box: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros((SIZE[1], SIZE[0]), np.uint8)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = 255
    return mask


def ref(data: bytes) -> dict[str, Any]:
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
    return {"bytes": data, "uri": None, "width": width, "height": height, "sha256": hashlib.sha256(data).hexdigest()}


def _write(directory: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_shard(directory, 0, pa.Table.from_pylist(rows, schema=schema), [])


def upstream_row(key: str, **columns: Any) -> dict[str, Any]:
    return {"id": row_id("fixture", key), "source_dataset": "fixture", "upstream_id": key, "license": "CC0",
            **columns}


def write_spatial_edit_shard(directory: Path) -> list[dict[str, Any]]:
    """A translate edit (drawn target box, both masks), a camera yaw edit in Chinese, an upstream reject and
    a row whose edit operation is unknown."""
    before, after = (10, 20, 30, 40), (50, 20, 70, 40)
    source = scene(1, box=before)
    target = scene(1, box=after)
    cue = Image.fromarray(source.copy())
    ImageDraw.Draw(cue).rectangle((50, 20, 69, 39), outline=(230, 30, 30), width=2)
    move = CameraMove(subject="椅子", yaw_deg=45.0)
    rows = [
        upstream_row("translate", source_image=ref(png(np.asarray(cue))), reference_images=[],
                     instruction="Move the chair into the marked red box. Keep the camera and the background unchanged.",
                     target_image=ref(png(target)), source_mask=ref(png(box_mask(before))),
                     target_mask=ref(png(box_mask(after))), edit_operation="object:translate",
                     metadata=json.dumps({"language": "en", "target_region_xyxy": [50, 20, 69, 39]})),
        upstream_row("yaw", source_image=ref(png(scene(2))), reference_images=[],
                     instruction=format_camera_move(move, "zh"), target_image=ref(png(scene(3))),
                     edit_operation="camera:yaw", metadata=json.dumps({"language": "zh"}, ensure_ascii=False)),
        upstream_row("failed", reject_reason="off_target", reject_stage="render_spatial_edit"),
        upstream_row("odd", source_image=ref(png(scene(4))), reference_images=[], instruction="x",
                     target_image=ref(png(scene(5))), edit_operation="sideways", metadata="{}"),
    ]
    extra = (pa.field("source_mask", IMAGE_REF), pa.field("target_mask", IMAGE_REF), pa.field("edit_operation", pa.string()))
    _write(directory, rows, EDIT_TRIPLET.arrow(extra))
    return rows


def write_text_edit_shard(directory: Path) -> list[dict[str, Any]]:
    source, target = scene(6, box=None), scene(6, box=None)
    target[10:20, 30:60] = 0
    rows = [upstream_row("sign", source_image=ref(png(source)), reference_images=[],
                         instruction='Replace "OPEN" with "CLOSED"', target_image=ref(png(target)),
                         metadata=json.dumps({"task": "text_edit", "language": "en", "old_text": "OPEN",
                                              "new_text": "CLOSED", "changed_region": [28, 8, 62, 22],
                                              "blueprint": {"blocks": []}}))]
    _write(directory, rows, EDIT_TRIPLET.arrow())
    return rows


VIDEO_PAIR_SCHEMA = pa.schema([
    ("id", pa.string()), ("source_dataset", pa.string()), ("upstream_id", pa.string()), ("license", pa.string()),
    ("pair_id", pa.string()), ("video_id", pa.string()), ("shot_id", pa.int32()),
    ("source_timestamp_s", pa.float64()), ("target_timestamp_s", pa.float64()), ("source_image", pa.binary()),
    ("target_image", pa.binary()), ("change_score", pa.float32()), ("instruction", pa.string()),
    ("instruction_zh", pa.string()), ("change_type", pa.string()), ("confidence", pa.float32()),
    ("source_caption", pa.string()), ("target_caption", pa.string()), ("reject_reason", pa.string()),
    ("reject_stage", pa.string()), ("reject_detail", pa.string())], metadata={b"joyai.schema": b"video_pair"})


def write_video_pair_shard(directory: Path) -> list[dict[str, Any]]:
    rows = [upstream_row(f"pair{n}", pair_id=f"v0-s{n}-p0", video_id="v0", shot_id=n, source_timestamp_s=1.0 * n,
                         target_timestamp_s=1.0 * n + 0.5, source_image=png(scene(10 + n)),
                         target_image=png(scene(10 + n, box=(40, 16, 64, 40))), change_score=0.2,
                         instruction=instruction, instruction_zh=zh, change_type=change, confidence=0.9,
                         source_caption="a red box on grey", target_caption="a red box further right")
            for n, (instruction, zh, change) in enumerate([
                ("Move the red box to the right", "把红色的盒子向右移动", "move"),
                ("Add a second box", None, "add"),
                ("Remove the box", "移除盒子", "removal")])]
    rows.append(upstream_row("pair-rejected", pair_id="v0-s9-p0", instruction="x", reject_reason="scene_change"))
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=VIDEO_PAIR_SCHEMA), directory / "part-00000.parquet")
    return rows


def hf_image(data: bytes) -> dict[str, Any]:
    """A Hugging Face `Image` feature value as its Parquet files store it."""
    return {"bytes": data, "path": None}


def write_external(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """One directory per layout; returns the rows each holds (images as the bytes they resolve to)."""
    images = {n: png(scene(20 + n)) for n in range(8)}
    images[99] = png(scene(20, box=(60, 10, 90, 30), colour=(30, 200, 30)))
    mask = png(box_mask((56, 6, 94, 34)))
    layouts: dict[str, list[dict[str, Any]]] = {}
    (directory / "ip2p").mkdir(parents=True)
    layouts["instructpix2pix"] = [
        {"original_prompt": "a photo of a street", "original_image": hf_image(images[0]),
         "edit_prompt": "make it a watercolor painting", "edited_prompt": "a watercolor of a street",
         "edited_image": hf_image(images[1])},
        {"original_prompt": "a cat", "original_image": hf_image(images[2]), "edit_prompt": "",
         "edited_prompt": "a dog", "edited_image": hf_image(images[3])}]
    pq.write_table(pa.Table.from_pylist(layouts["instructpix2pix"]), directory / "ip2p" / "train-00000.parquet")
    (directory / "magicbrush" / "images").mkdir(parents=True)
    for name, data in (("src.png", images[0]), ("tgt.png", images[99]), ("mask.png", mask)):
        (directory / "magicbrush" / "images" / name).write_bytes(data)
    layouts["magicbrush"] = [
        {"img_id": "242679", "turn_index": 1, "source_img": "images/src.png", "mask_img": "images/mask.png",
         "instruction": "Put a green box in the sky", "target_img": "images/tgt.png"},
        {"img_id": "242679", "turn_index": 2, "source_img": "../escape.png", "mask_img": None,
         "instruction": "Remove it", "target_img": "images/tgt.png"}]
    (directory / "magicbrush" / "edits.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in layouts["magicbrush"]))
    (directory / "ultraedit").mkdir()
    layouts["ultraedit"] = [
        {"clip_sim_source": 0.3, "clip_sim_target": 0.31, "clip_sim_dir": 0.25, "clip_sim_image": 0.9,
         "dinov2_sim": 0.8, "ssim": 0.7, "source_caption": "a box", "target_caption": "a blue box", "idx": 17,
         "edit_prompt": "Change the colour of the box to blue", "edit_object": None,
         "source_image": hf_image(images[4]), "edited_image": hf_image(images[5]), "mask_image": None}]
    pq.write_table(pa.Table.from_pylist(layouts["ultraedit"]), directory / "ultraedit" / "FreeForm_0.parquet")
    (directory / "omniedit").mkdir()
    layouts["omniedit"] = [
        {"omni_edit_id": "oe-001", "task": "background_swap", "src_img": hf_image(images[6]),
         "edited_img": hf_image(images[7]), "edited_prompt_list": ["Replace the background with a beach", "beach"],
         "width": SIZE[0], "height": SIZE[1], "sc_score_1": 9, "sc_score_2": 8, "sc_reasoning": "ok",
         "pq_score": 9, "pq_reasoning": "ok", "o_score": 8.5}]
    pq.write_table(pa.Table.from_pylist(layouts["omniedit"]), directory / "omniedit" / "train-00000.parquet")
    return layouts
