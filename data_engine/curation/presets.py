"""Training-stage presets of the report's Table 4, as defaults for the curation stages' configs.

A stage config that derives from `PresetConfig` takes `preset: stage1_208p | stage2_512p | stage3_1024p`;
the preset fills every field the job YAML leaves out, and fields written out in the YAML win. The expanded
values are what the job stores (manifest, config hash), so a preset can change here without silently
changing what an existing output directory means.

| criterion              | stage1_208p | stage2_512p | stage3_1024p |
|------------------------|-------------|-------------|--------------|
| min resolution         | > 128       | > 256       | > 512        |  (decode_image `min_side`)
| aesthetic score        | >= 3.0      | >= 4.6      | >= 4.6       |
| VLM aesthetic (0-100)  | > 60        | > 60        | > 65         |  (report 4.1.1: > 60 to continue training,
|                        |             |             |              |   > 65 for annotation, the final stage here)
| IQA cascade            | off         | on          | on (tighter) |  (iqa_cascade: statistics, NIQE, MUSIQ, CLIP-IQA)
| dense-OCR min side     | off         | > 512       | > 768        |
| border detection       | off         | on          | on           |
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import model_validator

from data_engine.stage import StageConfig

PresetName = Literal["stage1_208p", "stage2_512p", "stage3_1024p"]

# op -> preset -> field defaults. "enforce: False" keeps a criterion's scores but makes no decision, so
# `pipelines redecide` can switch it on later without recomputing anything.
PRESET_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "decode_image": {
        "stage1_208p": {"min_side": 128},
        "stage2_512p": {"min_side": 256},
        "stage3_1024p": {"min_side": 512},
    },
    "aesthetic": {
        "stage1_208p": {"min_score": 3.0},
        "stage2_512p": {"min_score": 4.6},
        "stage3_1024p": {"min_score": 4.6},
    },
    "vlm_aesthetic": {
        "stage1_208p": {"min_score": 60.0},
        "stage2_512p": {"min_score": 60.0},
        "stage3_1024p": {"min_score": 65.0},
    },
    "iqa_cascade": {
        "stage1_208p": {"enforce": False},
        "stage2_512p": {"enforce": True},
        "stage3_1024p": {"enforce": True, "niqe_max": 5.5, "niqe_recover_max": 6.5, "min_sharpness": 80.0,
                         "musiq_min": 50.0, "musiq_recover_min": 40.0, "clipiqa_min": 0.5, "clipiqa_recover_min": 0.4},
    },
    "ocr_density": {
        "stage1_208p": {"dense_text_min_side": 0},
        "stage2_512p": {"dense_text_min_side": 512},
        "stage3_1024p": {"dense_text_min_side": 768},
    },
    "border_detect": {
        "stage1_208p": {"enforce": False},
        "stage2_512p": {"enforce": True},
        "stage3_1024p": {"enforce": True},
    },
}


class PresetConfig(StageConfig):
    """A stage config whose unset fields can come from a Table 4 preset (`preset_op` names its table)."""

    preset_op: ClassVar[str]
    preset: PresetName | None = None

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("preset") is None:
            return data
        defaults = PRESET_DEFAULTS[cls.preset_op].get(data["preset"])
        if defaults is None:  # an unknown name: let the Literal field report the allowed ones
            return data
        return defaults | data
