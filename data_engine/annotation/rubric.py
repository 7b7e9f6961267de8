"""The human quality rubric of report 4.1.4 / Table 5, as data, and the Label Studio labeling config from it.

Three dimensions, each scored 5 (stunning), 4 (outstanding), 3 (good) or 0 (eliminated), weighted 50/30/20;
the weighted score is the weighted sum of the three ((5, 4, 0) -> 0.5*5 + 0.3*4 + 0.2*0 = 3.7). The target
distribution every annotator is calibrated to: scores 4-5 on 10-30% of items, 3 on 30-50%, 0 on 30-40%.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

SCORE_LEVELS: tuple[int, ...] = (5, 4, 3, 0)
LEVEL_NAMES = {5: "Stunning", 4: "Outstanding", 3: "Good", 0: "Eliminated"}
IMAGE_FIELD = "image"  # the task data key and the <Image> tag name


@dataclass(frozen=True)
class Dimension:
    name: str  # Label Studio control name and Parquet column suffix
    title: str
    weight: float
    levels: Mapping[int, str]  # score -> what it means


DIMENSIONS: tuple[Dimension, ...] = (
    Dimension("aesthetics", "Aesthetics", 0.5, {
        5: "Cinematic or fine-art calibre; masterful lighting, composition and colour harmony.",
        4: "Professional stock or post-processed quality; intentional style, meticulous lighting.",
        3: "Well composed and properly exposed, without distinctive artistic merit.",
        0: "Flat snapshot, visible defects (distortion, watermark, wrong lighting) or unusable (blur, blank)."}),
    Dimension("information_density", "Information density", 0.3, {
        5: "Dense, multi-layered scene with rich subject-object-environment interactions and texture variety.",
        4: "Several distinct visual elements with clear spatial relations and moderate texture diversity.",
        3: "Adequate content: a clear subject and basic context, little compositional complexity.",
        0: "Visually sparse (a single object on a plain background) or chaotic with no coherent structure."}),
    Dimension("style_purity", "Style purity", 0.2, {
        5: "Unmistakable, committed style with zero cross-style contamination.",
        4: "Consistent identifiable style with only minor ambiguities.",
        3: "Recognisable style category, executed generically.",
        0: "Unclassifiable style, heavy cross-style mixing, or overt AI-generated appearance."}),
)
DIMENSION_NAMES: tuple[str, ...] = tuple(d.name for d in DIMENSIONS)

# Target share of each score band over an annotator's scores (all dimensions pooled), as (low, high).
TARGET_BANDS: dict[str, tuple[float, float]] = {"4-5": (0.10, 0.30), "3": (0.30, 0.50), "0": (0.30, 0.40)}
BAND_OF_SCORE = {5: "4-5", 4: "4-5", 3: "3", 0: "0"}


class RubricError(ValueError):
    """Scores that the rubric does not allow; the message names the dimension and the value."""


def weighted_score(scores: Mapping[str, int]) -> float:
    """The weighted sum over the three dimensions, rounded to 6 decimals so (5, 4, 0) is exactly 3.7."""
    total = 0.0
    for dimension in DIMENSIONS:
        if dimension.name not in scores:
            raise RubricError(f"missing score for {dimension.name}")
        score = scores[dimension.name]
        if score not in SCORE_LEVELS:
            raise RubricError(f"{dimension.name}: score {score!r} is not one of {SCORE_LEVELS}")
        total += dimension.weight * score
    return round(total, 6)


def label_config() -> str:
    """The Label Studio labeling configuration: the image, then one required single choice per dimension,
    each choice's hint the rubric text of its level."""
    parts = [f'<View>\n  <Image name="{IMAGE_FIELD}" value="${IMAGE_FIELD}" maxWidth="1024px"/>']
    for dimension in DIMENSIONS:
        parts.append(f"  <Header value={quoteattr(f'{dimension.title} ({round(dimension.weight * 100)}%)')}/>")
        parts.append(f'  <Choices name="{dimension.name}" toName="{IMAGE_FIELD}" choice="single-radio" '
                     'required="true" showInline="true">')
        for level in SCORE_LEVELS:
            parts.append(f"    <Choice value=\"{level}\" alias=\"{level}\" "
                         f"hint={quoteattr(f'{LEVEL_NAMES[level]}: {dimension.levels[level]}')}/>")
        parts.append("  </Choices>")
    parts.append("</View>")
    return "\n".join(parts) + "\n"
