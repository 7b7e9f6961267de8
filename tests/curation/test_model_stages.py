"""Model stages with the models that ship in their wheels: RapidOCR text detection, NudeNet."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageDraw, ImageFont

from data_engine.stage_runner import apply_stage
from data_engine.stages.nsfw import NsfwConfig, NsfwStage
from data_engine.stages.ocr_density import OcrDensityConfig, OcrDensityStage, text_coverage
from tests.curation.images import png_bytes, stage_input


def _rows(images: list[np.ndarray]) -> pa.Table:
    return stage_input(image_bytes=[png_bytes(im) for im in images],
                       width=pa.array([im.shape[1] for im in images], pa.int32()),
                       height=pa.array([im.shape[0] for im in images], pa.int32()))


def _text_page(width: int, height: int) -> np.ndarray:
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=max(12, height // 16))
    for line in range(7):
        draw.text((width // 20, height // 20 + line * height // 8), "OPEN DATA ENGINE 2026 text", fill="black",
                  font=font)
    return np.asarray(page)


def test_text_coverage_of_boxes():
    boxes = np.array([[[0, 0], [49, 0], [49, 9], [0, 9]], [[0, 0], [9, 0], [9, 9], [0, 9]]], np.float32)
    assert text_coverage(boxes, 100, 100) == pytest.approx(0.05)
    assert text_coverage(None, 10, 10) == 0.0


@pytest.fixture(scope="module")
def ocr_stage() -> OcrDensityStage:
    stage = OcrDensityStage(OcrDensityConfig(preset="stage2_512p", working_side=480))
    stage.setup()
    return stage


def test_dense_text_needs_resolution(ocr_stage, photos):
    small_page, large_page = _text_page(480, 400), _text_page(800, 640)
    out, _ = apply_stage(ocr_stage, _rows([small_page, large_page, photos["china"]]), batch_size=3)
    coverage = out.column("ocr_text_coverage").to_pylist()
    assert coverage[0] > 0.1 and coverage[1] > 0.1 and coverage[2] < 0.1
    assert out.column("ocr_text_boxes")[0].as_py() >= 5
    assert out.column("reject_reason").to_pylist() == ["dense_text_low_resolution", None, None]
    stricter = OcrDensityStage(OcrDensityConfig(preset="stage3_1024p"))
    assert stricter.decide(out) == ["dense_text_low_resolution", "dense_text_low_resolution", None]
    assert OcrDensityStage(OcrDensityConfig(preset="stage1_208p")).decide(out) == [None] * 3
    one_big_box = out.set_column(out.column_names.index("ocr_text_boxes"), "ocr_text_boxes",
                                 pa.array([1, 1, 1], pa.int32()))
    assert ocr_stage.decide(one_big_box) == [None] * 3


def test_dense_text_rule_off_skips_the_detector(photos):
    stage = OcrDensityStage(OcrDensityConfig(preset="stage1_208p"))
    stage.setup()
    assert not hasattr(stage, "engine")  # the detector is never loaded at 208p
    out, _ = apply_stage(stage, _rows([_text_page(480, 400), photos["china"]]), batch_size=2)
    assert out.column("ocr_text_coverage").null_count == 2 and out.column("ocr_text_boxes").null_count == 2
    assert out.column("reject_reason").to_pylist() == [None, None]


def test_missing_model_paths_fail_at_setup(tmp_path):
    with pytest.raises(FileNotFoundError, match="det_model_path: .*absent.onnx does not exist"):
        OcrDensityStage(OcrDensityConfig(det_model_path=str(tmp_path / "absent.onnx"))).setup()
    with pytest.raises(FileNotFoundError, match="nsfw.model_path: .*absent.onnx does not exist"):
        NsfwStage(NsfwConfig(model_path=str(tmp_path / "absent.onnx"))).setup()


def test_nsfw_scores_kept_and_threshold_decides(photos):
    stage = NsfwStage(NsfwConfig())
    stage.setup()
    out, _ = apply_stage(stage, _rows([photos["china"], photos["flower"]]), batch_size=2)
    assert out.column("reject_reason").to_pylist() == [None, None]
    for pairs in out.column("nsfw_class_scores").to_pylist():
        assert all(name not in NsfwConfig().nsfw_classes or score < 0.5 for name, score in pairs)
    stored = pa.table({"nsfw_class_scores": pa.array(
        [[("FACE_FEMALE", 0.9)], [("BUTTOCKS_EXPOSED", 0.7)], []], pa.map_(pa.string(), pa.float32()))})
    assert stage.decide(stored) == [None, "nsfw", None]
    stricter = NsfwStage(NsfwConfig(max_score=0.8))
    assert stricter.decide(stored) == [None, None, None]
