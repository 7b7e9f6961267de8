"""Captions of a rendered blueprint: every string quoted verbatim in its original language, plus the layout.

`short/<lang>` lists the texts; `long/<lang>` says where each block sits (a 3x3 grid over the canvas, from
the block's measured box), its font, weight, size, colour and writing mode. English captions quote with
"...", Chinese ones with “...”, the quote marks the OCR caption filter reads; a Chinese text stays Chinese in
the English caption and the other way round.
"""

from __future__ import annotations

from collections.abc import Sequence

from data_engine.textrender.blueprint import Blueprint

_ROWS = {"en": ("top", "middle", "bottom"), "zh": ("上", "中", "下")}
_COLS = {"en": ("left", "centre", "right"), "zh": ("左", "中", "右")}
_COLOUR_NAMES = {  # reference colour -> (en, zh); a block's colour is named by the nearest one
    (255, 255, 255): ("white", "白色"), (17, 17, 17): ("black", "黑色"), (128, 128, 128): ("grey", "灰色"),
    (198, 40, 40): ("red", "红色"), (21, 101, 192): ("blue", "蓝色"), (46, 125, 50): ("green", "绿色"),
    (249, 168, 37): ("yellow", "黄色"), (239, 108, 0): ("orange", "橙色"), (106, 27, 154): ("purple", "紫色"),
    (0, 131, 143): ("teal", "青色"), (13, 43, 69): ("navy", "藏青色"), (59, 31, 43): ("maroon", "酱紫色"),
    (18, 53, 36): ("dark green", "墨绿色"), (245, 240, 230): ("cream", "米色"), (232, 241, 251): ("pale blue", "淡蓝色"),
}


def colour_name(colour: str, language: str) -> str:
    rgb = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    nearest = min(_COLOUR_NAMES, key=lambda ref: sum((a - b) ** 2 for a, b in zip(ref, rgb)))
    return _COLOUR_NAMES[nearest][language == "zh"]


def _position(box: Sequence[float], width: int, height: int, language: str) -> str:
    centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    row = _ROWS[language][min(2, int(3 * centre_y / height))]
    col = _COLS[language][min(2, int(3 * centre_x / width))]
    if language == "zh":
        return "正中" if row == col == "中" else f"{row}{col}" if row != "中" else f"中{col}"
    return "centre" if (row, col) == ("middle", "centre") else f"{row} {col}"


def _quote(text: str, language: str) -> str:
    return f"“{text}”" if language == "zh" else f'"{text}"'


def _listing(quoted: list[str], language: str) -> str:
    if language == "zh":
        return quoted[0] if len(quoted) == 1 else "、".join(quoted[:-1]) + "和" + quoted[-1]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def rendered_text_captions(blueprint: Blueprint, boxes: Sequence[Sequence[float]]) -> dict[str, str]:
    """{"short/en", "short/zh", "long/en", "long/zh"} for the blueprint as rendered (`boxes` per block)."""
    canvas = blueprint.canvas
    captions = {}
    for language in ("en", "zh"):
        quoted = [_quote(block.text, language) for block in blueprint.blocks]
        parts = []
        for block, box in zip(blueprint.blocks, boxes):
            where = _position(box, canvas.width, canvas.height, language)
            colour = colour_name(block.color, language)
            if language == "zh":
                weight = "粗体" if block.weight == 700 else "常规"
                vertical = "，竖排" if block.writing_mode == "vertical-rl" else ""
                parts.append(f"{where}：{_quote(block.text, language)}，{block.font_family}{weight}，"
                             f"{block.size_px}像素，{colour}{vertical}。")
            else:
                weight = "bold" if block.weight == 700 else "regular"
                vertical = ", set vertically" if block.writing_mode == "vertical-rl" else ""
                parts.append(f"{where.capitalize()}: {_quote(block.text, language)} in {weight} "
                             f"{block.font_family}, {block.size_px} px, {colour}{vertical}.")
        background = colour_name(canvas.background, language)
        if language == "zh":
            captions["short/zh"] = f"一张写有{_listing(quoted, language)}的文字海报。"
            captions["long/zh"] = (f"一张{canvas.width}×{canvas.height}的文字海报，{background}背景，"
                                   f"共{len(quoted)}处文字。" + "".join(parts))
        else:
            captions["short/en"] = f"A typographic poster with the text {_listing(quoted, language)}."
            captions["long/en"] = (f"A {canvas.width}x{canvas.height} typographic poster on a {background} "
                                   f"background with {len(quoted)} text blocks. " + " ".join(parts))
    return captions
