"""The one camera-move template: exact round trip over a grid of moves, and planner answers it cannot read
become "no move" with a reason."""

from __future__ import annotations

import itertools

import pytest

from data_engine.camera_move import CameraMove, CameraMoveError, format_camera_move, parse_camera_move

YAWS = (-180.0, -90.0, -45.0, -12.5, 0.0, 7.0, 30.0, 135.0, 180.0)
PITCHES = (-90.0, -30.0, -15.0, 0.0, 2.5, 15.0, 60.0)
ZOOMS = ("in", "out", "unchanged")


@pytest.mark.parametrize("language", ["en", "zh"])
def test_format_then_parse_is_exact_over_the_grid(language: str) -> None:
    subject = "red mug" if language == "en" else "红色杯子"
    moves = [CameraMove(subject, yaw, pitch, zoom) for yaw, pitch, zoom in itertools.product(YAWS, PITCHES, ZOOMS)]
    moves = [move for move in moves if not move.is_still]
    texts = {format_camera_move(move, language) for move in moves}
    assert len(texts) == len(moves)  # no two moves say the same thing
    for move in moves:
        parsed = parse_camera_move(format_camera_move(move, language), language)
        assert parsed.move == move and parsed.reject_reason is None


def test_the_sentence_names_what_moves_and_keeps_the_scene_static() -> None:
    move = CameraMove("chair", yaw_deg=-45, pitch_deg=15, zoom="in")
    assert format_camera_move(move) == ("Orbit the camera 45 degrees to the left around the chair, then raise the "
                                        "camera 15 degrees around the chair and look down at it more steeply, then "
                                        "zoom in on the chair. Keep the scene static.")
    assert format_camera_move(CameraMove("chair", zoom="out"), "zh") == "拉远镜头对准chair，场景保持静止。"


@pytest.mark.parametrize(("answer", "reason"), [
    ("I would look from the left.", "does not end with '. Keep the scene static.'"),
    (". Keep the scene static.", "names no camera move"),
    ("Fly the camera over the chair. Keep the scene static.", "unknown camera move 'Fly the camera over the chair'"),
    ("Orbit the camera 200 degrees to the left around the chair. Keep the scene static.",
     "yaw -200.0 deg is outside [-180, 180]"),
    ("Orbit the camera 0 degrees to the left around the chair. Keep the scene static.", "names a zero move"),
    ("Zoom in on the chair, then orbit the camera 10 degrees to the left around the chair. Keep the scene static.",
     "axes out of order (yaw, pitch, zoom)"),
    ("Zoom in on the chair, then zoom out on the chair. Keep the scene static.", "names the zoom twice"),
    ("Orbit the camera 10 degrees to the left around the chair, then zoom in on the lamp. Keep the scene static.",
     "moves around more than one subject: ['chair', 'lamp']"),
])
def test_an_invalid_planner_answer_is_no_move_with_a_reason(answer: str, reason: str) -> None:
    parsed = parse_camera_move(answer)
    assert parsed.move is None and parsed.reject_reason == reason


def test_moves_outside_the_template_are_refused() -> None:
    with pytest.raises(CameraMoveError):
        CameraMove("chair", pitch_deg=91)
    with pytest.raises(CameraMoveError):
        format_camera_move(CameraMove("chair"))
