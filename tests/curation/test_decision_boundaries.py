"""Every float threshold of every filter, at its boundary, for a score stored in its column's type.

Each case stores the threshold itself (as the score column stores it, float32) and the nearest float32 on
the other side of it, and expects the side the documentation states ("at least", "below", ...). The
thresholds are decimals that float32 cannot hold exactly (0.04, 4.6, 40.1, ...), where comparing a stored
score with the float64 threshold puts the boundary on the wrong side (each value chosen so that it does:
float32 rounds a lower bound down and an upper bound up). NaN learned scores have reasons of
their own.
"""

from __future__ import annotations

import math
import typing

import numpy as np
import pyarrow as pa
import pytest

from data_engine.stage import Stage
from data_engine.registry import STAGE_MODULES, stage_class
from data_engine.stages.aesthetic import AestheticConfig, AestheticStage
from data_engine.stages.border_detect import BorderDetectConfig, BorderDetectStage
from data_engine.stages.dedup import DedupConfig, DedupStage
from data_engine.stages.image_basic import DecodeImageConfig, DecodeImageStage
from data_engine.stages.iqa_cascade import IqaCascadeConfig, IqaCascadeStage
from data_engine.stages.nsfw import NsfwConfig, NsfwStage
from data_engine.stages.ocr_density import OcrDensityConfig, OcrDensityStage
from data_engine.stages.rebalance import RebalanceStage
from data_engine.stages.vlm_aesthetic import VlmAestheticConfig, VlmAestheticStage
from data_engine.textrender.stages import VerifyRenderedTextConfig, VerifyRenderedTextStage

BASE_FIELDS = (pa.field("width", pa.int32()), pa.field("height", pa.int32()))


def scores(stage: Stage, row: dict) -> pa.Table:
    """One row of `stage`'s stored columns (its output fields in their declared types, plus width/height)."""
    fields = [*BASE_FIELDS, *stage.output_fields()]
    # learned_iqa's columns, and the video reader's change_score (video_pair_change decides on it)
    fields += [pa.field(name, pa.float32()) for name in ("musiq", "clipiqa", "change_score") if name in row]
    return pa.Table.from_pylist([row], schema=pa.schema(fields))


def at_and_beyond(threshold: float, beyond: str) -> tuple[float, float]:
    """The threshold as float32 stores it, and the next float32 above (`beyond="up"`) or below it."""
    at = np.float32(threshold)
    return float(at), float(np.nextafter(at, np.float32(np.inf if beyond == "up" else -np.inf)))


_TINY_BACKEND = {"kind": "transformers", "model": "tiny:qwen3vl"}  # built, never loaded: decide() reads columns


def _edit(op: str, **config) -> Stage:
    return stage_class(op)(stage_class(op).Config(**config))


# (stage, column to set, the field, its value, base row, reason at the threshold, direction, reason beyond it)
SIMPLE_CASES = [
    (DecodeImageStage(DecodeImageConfig(min_brightness=40.1)), "brightness", "min_brightness", 40.1,
     {"width": 500, "height": 400}, None, "down", "too_dark"),
    (BorderDetectStage(BorderDetectConfig(max_border_fraction=0.04)), "border_top", "max_border_fraction", 0.04,
     {"border_bottom": 0.0, "border_left": 0.0, "border_right": 0.0}, "border", "down", None),
    (AestheticStage(AestheticConfig(min_score=4.6)), "aesthetic_score", "min_score", 4.6,
     {"aesthetic_status": "scored"}, None, "down", "low_aesthetic"),
    (OcrDensityStage(OcrDensityConfig(dense_text_min_coverage=0.12, dense_text_min_side=512)), "ocr_text_coverage",
     "dense_text_min_coverage", 0.12, {"ocr_text_boxes": 3, "width": 500, "height": 400},
     "dense_text_low_resolution", "down", None),
    (DedupStage(DedupConfig(near_duplicate_similarity=0.9)), "duplicate_similarity", "near_duplicate_similarity",
     0.9, {"duplicate_kind": "near", "duplicate_of": "x"}, "near_duplicate", "down", None),
    # "above 60.2": float32 rounds 60.2 up, so a stored 60.2 compared with the float64 threshold would pass.
    (VlmAestheticStage(VlmAestheticConfig(min_score=60.2)), "vlm_aesthetic_score", "min_score", 60.2,
     {"vlm_aesthetic_status": "scored"}, "vlm_aesthetic_below_threshold", "up", None),
    # editing (data_engine/editing): pair change, instruction confidence, triplet curation
    (_edit("video_pair_change", min_change=0.002), "change_score", "min_change", 0.002, {},
     "negligible_change", "up", None),
    (_edit("video_pair_change", max_change=0.45), "change_score", "max_change", 0.45, {},
     "change_too_large", "down", None),
    (_edit("video_pair_instruction", min_confidence=0.3, backend=_TINY_BACKEND), "confidence", "min_confidence", 0.3,
     {}, None, "down", "low_confidence"),
    (_edit("edit_change", min_changed_fraction=0.002), "edit_changed_fraction", "min_changed_fraction", 0.002, {},
     None, "down", "edit_negligible_change"),
    (_edit("edit_region", max_outside_fraction=0.02), "edit_outside_changed_fraction", "max_outside_fraction", 0.02,
     {}, None, "up", "edit_outside_region"),
    (_edit("edit_quality", min_sharpness_ratio=0.4), "sharpness_ratio", "min_sharpness_ratio", 0.4,
     {"niqe_increase": 0.0}, None, "down", "edit_target_blurred"),
    (_edit("edit_quality", max_niqe_increase=3.1), "niqe_increase", "max_niqe_increase", 3.1,
     {"sharpness_ratio": 1.0}, None, "up", "edit_target_artifacts"),
    (_edit("edit_intent_judge", min_clarity=50.1), "intent_clarity", "min_clarity", 50.1,
     {"intent_status": "judged"}, None, "down", "edit_intent_ambiguous"),
]


@pytest.mark.parametrize("stage, column, field, threshold, base, at_reason, beyond, beyond_reason", SIMPLE_CASES,
                         ids=[f"{case[0].op}.{case[2]}" for case in SIMPLE_CASES])
def test_boundary_of_each_filter(stage, column, field, threshold, base, at_reason, beyond, beyond_reason):
    at, past = at_and_beyond(threshold, beyond)
    assert at != threshold  # float32 cannot hold it: the case where a float64 comparison goes wrong
    assert stage.decide(scores(stage, base | {column: at})) == [at_reason]
    assert stage.decide(scores(stage, base | {column: past})) == [beyond_reason]


def test_nsfw_boundary_on_map_values():
    stage = NsfwStage(NsfwConfig(max_score=0.45))
    at, below = at_and_beyond(0.45, "down")
    table = pa.Table.from_pylist([{"nsfw_class_scores": [("FEMALE_BREAST_EXPOSED", at)]},
                                  {"nsfw_class_scores": [("FEMALE_BREAST_EXPOSED", below)]}],
                                 schema=pa.schema(stage.output_fields()))
    assert stage.decide(table) == ["nsfw", None]


def test_semantic_dedup_boundary_is_one_minus_eps_as_stored():
    # 1 - 0.05 = 0.95, which float32 rounds down: a stored 0.95 must still be a duplicate ("at least 1 - eps").
    stage = DedupStage(DedupConfig(semantic_eps=0.05))
    at, below = at_and_beyond(1 - 0.05, "down")
    assert at < 1 - 0.05
    rows = [{"duplicate_kind": "semantic", "duplicate_of": "x", "duplicate_similarity": value} for value in (at, below)]
    assert stage.decide(pa.Table.from_pylist(rows, schema=pa.schema(stage.output_fields()))) == [
        "semantic_duplicate", None]


def test_rendered_text_boundaries_hold_in_their_float64_columns():
    # "a block of min_size_px or more fails above max_cer"; "less ink than min_ink_fraction is blank".
    stage = VerifyRenderedTextStage(VerifyRenderedTextConfig(max_cer=0.05, min_ink_fraction=0.01, min_size_px=32))
    blocks = '[{"size_px": 32}]'
    rows = [{"text_blocks": blocks, "block_ink": [0.5], "block_cer": [cer]}
            for cer in (0.05, float(np.nextafter(0.05, 1.0)))]
    rows += [{"text_blocks": blocks, "block_ink": [ink], "block_cer": [0.0]}
             for ink in (0.01, float(np.nextafter(0.01, 0.0)))]
    fields = [pa.field("text_blocks", pa.string()), *stage.output_fields()]
    table = pa.Table.from_pylist(rows, schema=pa.schema([f for f in fields if f.name in rows[0]]))
    assert stage.decide(table) == [None, "ocr_mismatch", None, "blank_block"]


def test_aspect_ratio_boundary_is_exact_for_integer_sides():
    # The ratio is computed from integer sides, never stored: 11/10 and the threshold 1.1 round to one float64.
    stage = DecodeImageStage(DecodeImageConfig(max_aspect_ratio=1.1))
    table = pa.Table.from_pylist([{"width": 11, "height": 10, "brightness": 100.0},
                                  {"width": 1101, "height": 1000, "brightness": 100.0}],
                                 schema=pa.schema([*BASE_FIELDS, pa.field("brightness", pa.float32())]))
    assert stage.decide(table) == [None, "aspect_ratio"]


# Non-representable thresholds in the cascade's order, each rounded by float32 to the side where comparing
# the stored score with the float64 threshold is wrong; the base row is accepted by all of them.
IQA = IqaCascadeConfig(dark_brightness=20.3, min_brightness=40.1, max_brightness=220.1, severe_max_brightness=240.1,
                       severe_min_entropy=3.1, min_entropy=5.1, min_saturation=0.06, recover_min_saturation=0.35,
                       severe_min_sharpness=5.1, min_sharpness=40.1, max_sharpness=4000.1,
                       severe_max_sharpness=8000.1, niqe_max=6.3, niqe_recover_max=7.3, niqe_reject=10.1,
                       musiq_min=40.1, musiq_recover_min=30.3, clipiqa_min=0.42, clipiqa_recover_min=0.35)
IQA_BASE = {"iqa_brightness": 120.0, "iqa_entropy": 7.0, "iqa_saturation": 0.2, "iqa_sharpness": 500.0, "niqe": 4.0,
            "musiq": 60.0, "clipiqa": 0.7}
RECOVERABLE = {"iqa_saturation": 0.5}  # saturated enough that borderline indicators are recovered
# field -> (column, extra base values, reason at the threshold, direction beyond it, reason beyond it);
# hand-labelled from the cascade's documented order (iqa_cascade.py docstring).
IQA_CASES = {
    "dark_brightness": ("iqa_brightness", {}, "statistics", "down", "too_dark"),
    "severe_max_brightness": ("iqa_brightness", {}, "statistics", "up", "overexposed"),
    "min_brightness": ("iqa_brightness", {}, None, "down", "statistics"),
    "max_brightness": ("iqa_brightness", {}, None, "up", "statistics"),
    "severe_min_entropy": ("iqa_entropy", {}, "statistics", "down", "low_entropy"),
    "min_entropy": ("iqa_entropy", {}, None, "down", "statistics"),
    "min_saturation": ("iqa_saturation", {}, None, "down", "statistics"),
    "severe_min_sharpness": ("iqa_sharpness", {}, "statistics", "down", "blurry"),
    "min_sharpness": ("iqa_sharpness", {}, None, "down", "statistics"),
    "max_sharpness": ("iqa_sharpness", {}, None, "up", "statistics"),
    "severe_max_sharpness": ("iqa_sharpness", {}, "statistics", "up", "oversharpened"),
    "niqe_reject": ("niqe", {}, "perceptual", "up", "niqe_very_high"),
    "niqe_max": ("niqe", {}, None, "up", "perceptual"),
    "niqe_recover_max": ("niqe", RECOVERABLE, None, "up", "perceptual"),
    "musiq_min": ("musiq", {}, None, "down", "perceptual"),
    "musiq_recover_min": ("musiq", RECOVERABLE, None, "down", "perceptual"),
    "clipiqa_min": ("clipiqa", {}, None, "down", "perceptual"),
    "clipiqa_recover_min": ("clipiqa", RECOVERABLE, None, "down", "perceptual"),
    "recover_min_saturation": ("iqa_saturation", {"niqe": 7.0}, None, "down", "perceptual"),
}


@pytest.mark.parametrize("field", sorted(IQA_CASES))
def test_boundary_of_each_iqa_threshold(field):
    stage = IqaCascadeStage(IQA)
    column, base, at_reason, beyond, beyond_reason = IQA_CASES[field]
    at, past = at_and_beyond(getattr(IQA, field), beyond)
    assert at != getattr(IQA, field)
    assert stage.decide(scores(stage, IQA_BASE | base | {column: at})) == [at_reason]
    assert stage.decide(scores(stage, IQA_BASE | base | {column: past})) == [beyond_reason]


def _float_thresholds(stage_cls: type[Stage]) -> set[str]:
    hints = typing.get_type_hints(stage_cls.Config)
    return {name for name in stage_cls.threshold_fields if hints[name] is float}


def test_every_float_threshold_of_every_filter_is_covered():
    covered = {(type(case[0]), case[2]) for case in SIMPLE_CASES}
    covered |= {(NsfwStage, "max_score"), (DecodeImageStage, "max_aspect_ratio"), (DedupStage, "semantic_eps"),
                (VerifyRenderedTextStage, "max_cer"), (VerifyRenderedTextStage, "min_ink_fraction")}
    covered |= {(IqaCascadeStage, field) for field in IQA_CASES}
    # rebalance's boost scales a sampling rate; no stored score is compared with it, so it has no boundary.
    covered |= {(RebalanceStage, "boost")}
    # balance_edits' tolerance bounds how far the fitted shares may sit from their targets; no stored score either.
    covered |= {(stage_class("balance_edits"), "tolerance")}
    engine_stages = [stage_class(op) for op, module in STAGE_MODULES.items() if module.startswith("data_engine.")]
    assert {(stage, name) for stage in engine_stages for name in _float_thresholds(stage)} == covered


def test_nan_learned_scores_have_their_own_reasons():
    iqa = IqaCascadeStage(IQA)
    assert iqa.decide(scores(iqa, IQA_BASE | {"musiq": math.nan})) == ["musiq_nan"]
    assert iqa.decide(scores(iqa, IQA_BASE | {"clipiqa": math.nan})) == ["clipiqa_nan"]
    assert iqa.decide(scores(iqa, IQA_BASE | {"musiq": None, "clipiqa": None})) == [None]  # not scored: NIQE alone
    aesthetic = AestheticStage(AestheticConfig())
    assert aesthetic.decide(scores(aesthetic, {"aesthetic_score": math.nan, "aesthetic_status": "scored"})) == \
        ["aesthetic_nan"]
    assert aesthetic.decide(scores(aesthetic, {"aesthetic_score": None, "aesthetic_status": "not_scored"})) == [None]
    assert {"musiq_nan", "clipiqa_nan"} <= iqa.decision_reasons and "aesthetic_nan" in aesthetic.decision_reasons
