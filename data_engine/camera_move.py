"""The one camera-move instruction: how a camera edit is said, and how such a sentence is read back.

Both the spatial-edit renderer (`render/spatial_edit.py`, which labels its camera-edit pairs with it) and Thinking
with Novel Views (`trainer/evaluation/novel_views.py`, whose planner must answer in it) use this template, so it
lives in the engine. A move has three axes: yaw (degrees, + orbits the camera to its own right: the azimuth
rises), pitch (degrees, + raises the camera on its orbit so it looks down more steeply) and zoom (in, out or
unchanged); the scene stays static. The sentence is the axes that move, in that order, joined by ", then ",
followed by "Keep the scene static." (Chinese: "，然后" and "场景保持静止。"). The parser is built from the same
phrase table, so formatter and parser cannot drift; a sentence it cannot read is "no move" with a reason.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

Zoom = Literal["in", "out", "unchanged"]
Language = Literal["en", "zh"]
MAX_YAW_DEG = 180.0
MAX_PITCH_DEG = 90.0
_AXES = ("yaw", "pitch", "zoom")  # the order a sentence names them in

_PHRASES = {
    "en": {"yaw": "Orbit the camera {degrees} degrees to the {direction} around the {subject}",
           # A pitch moves the camera on its orbit: raised, it looks down at the subject more steeply.
           "pitch_up": "Raise the camera {degrees} degrees around the {subject} and look down at it more steeply",
           "pitch_down": "Lower the camera {degrees} degrees around the {subject} and look at it from a flatter angle",
           "zoom": "Zoom {direction} on the {subject}"},
    "zh": {"yaw": "围绕{subject}将相机向{direction}环绕{degrees}度",
           "pitch_up": "围绕{subject}将相机升高{degrees}度，更陡地向下俯视它",
           "pitch_down": "围绕{subject}将相机降低{degrees}度，以更平的角度看它",
           "zoom": "{direction}镜头对准{subject}"},
}
_DIRECTIONS = {"en": {"yaw": ("right", "left"), "zoom": ("in", "out")},
               "zh": {"yaw": ("右", "左"), "zoom": ("拉近", "拉远")}}
_JOIN = {"en": ", then ", "zh": "，然后"}
_KEEP = {"en": "{moves}. Keep the scene static.", "zh": "{moves}，场景保持静止。"}


class CameraMoveError(ValueError):
    """A camera move outside the template's range."""


@dataclass(frozen=True)
class CameraMove:
    subject: str
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    zoom: Zoom = "unchanged"

    def __post_init__(self) -> None:
        if not self.subject.strip():
            raise CameraMoveError("a camera move needs the subject it moves around")
        if not (math.isfinite(self.yaw_deg) and abs(self.yaw_deg) <= MAX_YAW_DEG):
            raise CameraMoveError(f"yaw {self.yaw_deg} deg is outside [-{MAX_YAW_DEG:g}, {MAX_YAW_DEG:g}]")
        if not (math.isfinite(self.pitch_deg) and abs(self.pitch_deg) <= MAX_PITCH_DEG):
            raise CameraMoveError(f"pitch {self.pitch_deg} deg is outside [-{MAX_PITCH_DEG:g}, {MAX_PITCH_DEG:g}]")
        if self.zoom not in ("in", "out", "unchanged"):
            raise CameraMoveError(f"zoom {self.zoom!r} is not one of in, out, unchanged")

    @property
    def is_still(self) -> bool:
        return self.yaw_deg == 0 and self.pitch_deg == 0 and self.zoom == "unchanged"


@dataclass(frozen=True)
class ParsedCameraMove:
    """A parsed planner answer: `move` when it is a valid move, else None and the reason it is "no move"."""
    move: CameraMove | None
    reject_reason: str | None = None


def _degrees(value: float) -> str:
    return f"{abs(value):g}"


def _clauses(move: CameraMove, language: Language) -> list[str]:
    phrases, directions = _PHRASES[language], _DIRECTIONS[language]
    clauses = []
    if move.yaw_deg:
        clauses.append(phrases["yaw"].format(degrees=_degrees(move.yaw_deg), subject=move.subject,
                                             direction=directions["yaw"][0 if move.yaw_deg > 0 else 1]))
    if move.pitch_deg:
        key = "pitch_up" if move.pitch_deg > 0 else "pitch_down"
        clauses.append(phrases[key].format(degrees=_degrees(move.pitch_deg), subject=move.subject))
    if move.zoom != "unchanged":
        clauses.append(phrases["zoom"].format(subject=move.subject,
                                              direction=directions["zoom"][0 if move.zoom == "in" else 1]))
    return clauses


def format_camera_move(move: CameraMove, language: Language = "en") -> str:
    if move.is_still:
        raise CameraMoveError("a camera move that moves nothing has no instruction")
    clauses = _clauses(move, language)
    if language == "en":
        clauses = [clauses[0]] + [clause[0].lower() + clause[1:] for clause in clauses[1:]]
    return _KEEP[language].format(moves=_JOIN[language].join(clauses))


def _clause_pattern(template: str, language: Language, axis: str) -> str:
    pattern = re.escape(template)
    pattern = pattern.replace(re.escape("{degrees}"), r"(?P<degrees>\d+(?:\.\d+)?(?:e[+-]?\d+)?)")
    pattern = pattern.replace(re.escape("{subject}"), r"(?P<subject>.+?)")
    if axis in _DIRECTIONS[language]:
        pattern = pattern.replace(re.escape("{direction}"),
                                  f"(?P<direction>{'|'.join(map(re.escape, _DIRECTIONS[language][axis]))})")
    return pattern


def _parse_clause(clause: str, language: Language) -> tuple[str, float | str, str] | None:
    """One clause -> (axis, signed degrees or zoom direction, subject), or None when it is no known phrase."""
    for key, template in _PHRASES[language].items():
        axis = key.split("_")[0]
        match = re.fullmatch(_clause_pattern(template, language, axis), clause, flags=re.IGNORECASE)
        if not match:
            continue
        fields = match.groupdict()
        if axis == "zoom":
            value: float | str = "in" if fields["direction"].lower() == _DIRECTIONS[language]["zoom"][0] else "out"
        else:
            sign = -1.0 if key == "pitch_down" or (
                axis == "yaw" and fields["direction"].lower() == _DIRECTIONS[language]["yaw"][1]) else 1.0
            value = sign * float(fields["degrees"])
        return axis, value, fields["subject"]
    return None


def parse_camera_move(text: str, language: Language = "en") -> ParsedCameraMove:
    """A planner's answer -> the move it names, or "no move" with the reason (never an exception)."""
    text = text.strip()
    prefix, suffix = _KEEP[language].split("{moves}")
    if not text.endswith(suffix):
        return ParsedCameraMove(None, f"does not end with {suffix.strip()!r}")
    body = text[:len(text) - len(suffix)]
    if not body:
        return ParsedCameraMove(None, "names no camera move")
    axes: dict[str, float | str] = {}
    subjects = set()
    for clause in body.split(_JOIN[language]):
        parsed = _parse_clause(clause, language)
        if parsed is None:
            return ParsedCameraMove(None, f"unknown camera move {clause!r}")
        axis, value, subject = parsed
        if axis in axes:
            return ParsedCameraMove(None, f"names the {axis} twice")
        if axes and _AXES.index(axis) < _AXES.index(list(axes)[-1]):
            return ParsedCameraMove(None, "axes out of order (yaw, pitch, zoom)")
        axes[axis] = value
        subjects.add(subject)
    if len(subjects) != 1:
        return ParsedCameraMove(None, f"moves around more than one subject: {sorted(subjects)}")
    try:
        move = CameraMove(subject=subjects.pop(), yaw_deg=float(axes.get("yaw", 0.0)),
                          pitch_deg=float(axes.get("pitch", 0.0)), zoom=str(axes.get("zoom", "unchanged")))
    except CameraMoveError as error:
        return ParsedCameraMove(None, str(error))
    if move.is_still:
        return ParsedCameraMove(None, "names a zero move")
    return ParsedCameraMove(move)
