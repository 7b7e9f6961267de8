"""Border detection on generated frames, letterboxes and busy photos."""

from __future__ import annotations

import numpy as np
import pytest

from data_engine.ops.borders import border_fractions
from data_engine.stage_runner import apply_stage
from data_engine.stages.border_detect import BorderDetectConfig, BorderDetectStage
from tests.curation.images import jpeg_roundtrip, png_bytes, stage_input


def _letterbox(photo: np.ndarray, bar: int, colour=(0, 0, 0)) -> np.ndarray:
    framed = np.empty((photo.shape[0] + 2 * bar, photo.shape[1], 3), np.uint8)
    framed[:] = colour
    framed[bar:bar + photo.shape[0]] = photo
    return framed


def test_photo_without_border(photos):
    assert border_fractions(photos["china"]).largest() < 0.01


def test_letterbox_bars_survive_jpeg(photos):
    framed = jpeg_roundtrip(_letterbox(photos["flower"], 80), 85)
    found = border_fractions(framed)
    assert found.top == pytest.approx(80 / framed.shape[0], abs=0.01)
    assert found.bottom == pytest.approx(80 / framed.shape[0], abs=0.01)
    assert found.left < 0.01 and found.right < 0.01


def test_coloured_frame_on_every_side(photos):
    frame = np.full((427 + 40, 640 + 40, 3), (200, 40, 90), np.uint8)
    frame[20:-20, 20:-20] = photos["china"]
    found = border_fractions(frame)
    assert min(found.top, found.bottom) == pytest.approx(20 / 467, abs=1e-3)
    assert min(found.left, found.right) == pytest.approx(20 / 680, abs=1e-3)


def test_bad_array_is_refused():
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        border_fractions(np.zeros((4, 4), np.uint8))


def test_stage_rejects_by_threshold_and_preset(photos):
    images = [photos["china"], _letterbox(photos["flower"], 60)]
    table = stage_input(image_bytes=[png_bytes(im) for im in images])
    out, _ = apply_stage(BorderDetectStage(BorderDetectConfig(preset="stage2_512p")), table, batch_size=2)
    assert out.column("reject_reason").to_pylist() == [None, "border"]
    off, _ = apply_stage(BorderDetectStage(BorderDetectConfig(preset="stage1_208p")), table, batch_size=2)
    assert off.column("reject_reason").to_pylist() == [None, None]
    assert off.column("border_top")[1].as_py() > 0.1
