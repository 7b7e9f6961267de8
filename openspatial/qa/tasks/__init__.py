"""The spatial QA sub-tasks: generators that compute answers from the scene geometry, one module per capability.

The table of sub-tasks is `TASKS`, filled by `register_qa_task` in each capability module imported below, in
this order (the order seeds each sub-task's random generator, so it is part of the output):
`measurement`, `relationship`, `camera`, `multiview`, `scene_reasoning`. A new sub-task is a decorated function
in its capability module plus its templates in `qa/templates.py` and its independent check in `qa/checks.py`.
Each module's docstring gives the written definitions its checks recompute another way.
"""

from __future__ import annotations

import random

from openspatial.frame_index import ObjectFrameIndex
# Importing a capability module registers its sub-tasks; kept in the documented order, one line each.
from openspatial.qa.tasks import measurement  # noqa: F401,I001
from openspatial.qa.tasks import relationship  # noqa: F401
from openspatial.qa.tasks import camera  # noqa: F401
from openspatial.qa.tasks import multiview  # noqa: F401
from openspatial.qa.tasks import scene_reasoning  # noqa: F401
from openspatial.qa.tasks.base import (TASKS, AnswerType, QAConfig, QASample, QATaskSpec, SceneMeasures, TaskContext,
                                       UntranslatedCategory)

__all__ = ["TASKS", "AnswerType", "QAConfig", "QASample", "QATaskSpec", "generate_scene_qa", "unavailable_tasks"]

MULTI_VIEW_MIN_FRAMES = 2


def unavailable_tasks(index: ObjectFrameIndex, config: QAConfig) -> dict[str, str]:
    """Configured sub-tasks this scene cannot feed, each with the reason (multi-view ones need two frames)."""
    frames = len(index.scene.frames)
    if frames >= MULTI_VIEW_MIN_FRAMES:
        return {}
    return {name: f"multi-view sub-task needs at least {MULTI_VIEW_MIN_FRAMES} frames, the scene has {frames}"
            for name in config.tasks or tuple(TASKS) if name in TASKS and TASKS[name].multi_view}


def generate_scene_qa(index: ObjectFrameIndex, config: QAConfig, seed: int) -> list[QASample]:
    """Every configured sub-task, `samples_per_task` attempts each; deterministic in (index, config, seed)."""
    unknown = sorted(set(config.tasks or ()) - set(TASKS))
    if unknown:
        raise ValueError(f"qa.tasks: unknown sub-tasks {unknown}; allowed: {', '.join(TASKS)}")
    samples = []
    measures = SceneMeasures(index.scene)
    unavailable = unavailable_tasks(index, config)
    for task_number, name in enumerate(config.tasks or tuple(TASKS)):
        if name in unavailable:
            continue
        for attempt in range(config.samples_per_task):
            rng = random.Random(f"{seed}/{task_number}/{attempt}")  # Python's generator: cheap to seed
            language = config.languages[rng.randrange(len(config.languages))]
            state = rng.getstate()
            try:
                sample = TASKS[name].generate(TaskContext(index, config, rng, language, measures))
            except UntranslatedCategory:
                if "en" not in config.languages:
                    continue
                rng.setstate(state)  # the same draw in English: no Chinese row carries an English category
                sample = TASKS[name].generate(TaskContext(index, config, rng, "en", measures))
            if sample is not None:
                samples.append(sample)
    return samples
