"""QA samples -> QA-conversation rows: anchor boxes drawn on the frames, images encoded, Qwen-VL messages."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np

from openspatial.qa.tasks import TASKS, QASample
from openspatial.scene import Scene

ANCHOR_RGB = {"red": (230, 25, 25), "green": (20, 200, 40), "blue": (30, 60, 240), "yellow": (250, 220, 0),
              "magenta": (220, 0, 220), "cyan": (0, 210, 230)}


def draw_anchors(image: np.ndarray, sample: QASample, slot: int) -> np.ndarray:
    canvas = image.copy()
    for anchor in sample.anchors:
        if anchor.slot != slot:
            continue
        x0, y0, x1, y1 = (int(round(v)) for v in anchor.bbox)
        colour = ANCHOR_RGB[anchor.colour]
        cv2.rectangle(canvas, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), colour, 2)
        if anchor.label:
            cv2.putText(canvas, anchor.label, (x0 + 3, max(y0 + 14, 14)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 2)
    return canvas


def encode_image(image: np.ndarray, quality: int) -> dict:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    payload = encoded.tobytes()
    return {"bytes": payload, "uri": None, "width": int(image.shape[1]), "height": int(image.shape[0]),
            "sha256": hashlib.sha256(payload).hexdigest()}


def scene_split(scene_id: str, eval_fraction: float) -> str:
    """`eval` for the scenes whose id hashes into the lowest `eval_fraction` of the hash range, else `train`:
    a scene's rows all land on one side, whichever job, shard or worker writes them."""
    position = int.from_bytes(hashlib.sha256(scene_id.encode()).digest()[:8], "big") / 2 ** 64
    return "eval" if position < eval_fraction else "train"


def sample_images(scene: Scene, sample: QASample, quality: int) -> list[dict]:
    return [encode_image(draw_anchors(scene.frames[frame].image, sample, slot), quality)
            for slot, frame in enumerate(sample.frames)]


def sample_messages(sample: QASample) -> list[dict]:
    parts = [{"type": "image", "text": None, "image_index": slot} for slot in range(len(sample.frames))]
    parts.append({"type": "text", "text": sample.question, "image_index": None})
    return [{"role": "user", "content": parts},
            {"role": "assistant", "content": [{"type": "text", "text": sample.answer, "image_index": None}]}]


def sample_metadata(scene: Scene, sample: QASample) -> str:
    return json.dumps({
        "scene_id": scene.scene_id, "capability": sample.capability, "answer_type": TASKS[sample.task].answer_type,
        "language": sample.language,
        "frames": [scene.frames[f].frame_id for f in sample.frames], "objects": sample.objects,
        "answer_value": sample.value, "details": sample.details,
        # Frames and objects the dataset adapter left out of this scene, by reason (absent for other scenes).
        "scene_dropped": scene.metadata.get("dropped"),
        "anchors": [{"image": a.slot, "object_id": a.object_id, "colour": a.colour, "bbox": a.bbox, "label": a.label}
                    for a in sample.anchors],
    }, ensure_ascii=False, sort_keys=True)
