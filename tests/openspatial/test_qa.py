"""QA sub-tasks: independent checks agree on 200 random procedural scenes; goldens; metamorphic tests."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import get_args

import numpy as np
import pytest

from data_engine.conventions import OrientedBox, rotation_z
from openspatial.frame_index import IndexConfig, build_object_frame_index
from openspatial.procedural import ProceduralConfig, generate_scene
from openspatial.qa.checks import check_sample
from openspatial.qa.tasks import TASKS, QAConfig, generate_scene_qa
from openspatial.scene import Frame, Scene, SceneObject

from tests.openspatial.conftest import hand_scene

GOLDEN = Path(__file__).with_name("golden_qa.json")
FAST = ProceduralConfig(width=96, height=72, frames=4)
INDEX = IndexConfig(min_visible_pixels=30)
QA = QAConfig(min_visible_pixels=30)


@pytest.fixture(scope="module")
def checked_samples():
    """(scene number, sample, disagreement) for every sample of 200 procedural scenes."""
    results = []
    for number in range(200):
        scene = generate_scene(11, number, FAST)
        index = build_object_frame_index(scene, INDEX)
        for sample in generate_scene_qa(index, QA, number):
            results.append((number, sample, check_sample(scene, sample, QA.model_dump())))
    return results


def test_checks_agree_on_200_procedural_scenes(checked_samples):
    disagreements = [(n, s.task, problem) for n, s, problem in checked_samples if problem]
    assert not disagreements, disagreements[:5]


def test_sub_task_table_is_complete(checked_samples):
    """Every registered sub-task has its templates and an independent check, and the capabilities keep the
    documented order (the order seeds each sub-task's generator)."""
    from openspatial.qa.checks import CHECKS
    from openspatial.qa.templates import QUESTIONS

    assert set(TASKS) == set(QUESTIONS) == set(CHECKS)
    capabilities = list(dict.fromkeys(spec.capability for spec in TASKS.values()))
    assert capabilities == ["spatial_measurement", "spatial_relationship", "camera_perception",
                            "multiview_consistency", "scene_reasoning"]
    assert [spec.capability for spec in TASKS.values()] == sorted((s.capability for s in TASKS.values()),
                                                                 key=capabilities.index)


def test_every_sub_task_is_generated_in_both_languages(checked_samples):
    seen = Counter((s.task, s.language) for _, s, _ in checked_samples)
    missing = [(t, lang) for t in TASKS for lang in ("en", "zh") if not seen[t, lang]]
    assert not missing


def test_multiple_choice_letters_are_balanced(checked_samples):
    letters = Counter(s.details["letter"] for _, s, _ in checked_samples if "letter" in s.details)
    total = sum(letters.values())
    assert total > 200 and set(letters) == set("ABCD")
    assert all(0.15 < count / total < 0.35 for count in letters.values()), letters


def golden_scene() -> Scene:
    """Hand-placed objects whose answers are worked out in the golden file's comments."""
    return hand_scene([("table", [0, 3, 0.375], [1.2, 0.8, 0.75], 0.0, False),
                       ("chair", [1.55, 3, 0.45], [0.5, 0.5, 0.9], np.pi, True),
                       ("lamp", [-1.5, 4, 0.75], [0.3, 0.3, 1.5], 0.0, False),
                       ("vase", [0.2, 3, 0.85], [0.15, 0.15, 0.2], 0.0, False),
                       ("sofa", [2.5, 6, 0.4], [0.9, 2.0, 0.8], np.pi / 2, True)],
                      [([0, 0, 1.3], [0, 4, 0.6]), ([1.5, 0.5, 1.3], [0.5, 4, 0.6]), ([3, 1.5, 1.3], [2.5, 6, 0.4])])


def golden_examples() -> dict[str, dict[str, list[str]]]:
    """First sample of every sub-task per language: from the hand scene, else from the first procedural scene
    of stream 11 that yields one."""
    hand_index = build_object_frame_index(golden_scene(), IndexConfig(min_visible_pixels=40))
    examples: dict[str, dict[str, list[str]]] = {}
    for task in TASKS:
        for language in ("en", "zh"):
            config = QAConfig(tasks=(task,), languages=(language,), samples_per_task=3, min_visible_pixels=40)
            samples = generate_scene_qa(hand_index, config, 7)
            number = 0
            while not samples:
                index = build_object_frame_index(generate_scene(11, number, FAST), INDEX)
                samples = generate_scene_qa(index, config.model_copy(update={"min_visible_pixels": 30}), number)
                number += 1
            examples.setdefault(task, {})[language] = [samples[0].question, samples[0].answer]
    return examples


def test_golden_english_and_chinese_examples():
    expected = json.loads(GOLDEN.read_text())["examples"]
    assert golden_examples() == expected


def test_golden_hand_scene_answers_are_the_worked_values():
    examples = json.loads(GOLDEN.read_text())["examples"]
    # chair x in [1.3, 1.8], y in [2.75, 3.25]; lamp x in [-1.65, -1.35], y in [3.85, 4.15]:
    # closest points differ by (2.65, 0.6, 0) -> 2.717 m.
    assert examples["distance"]["en"][1] == "2.7 m." and examples["distance"]["zh"][1] == "2.7米。"
    # lamp centre (-1.5, 4, 0.75) seen from (0, 0, 1.3) looking along (0, 4, -0.7)/4.061: depth 4.035 m.
    assert examples["depth"]["en"][1] == "4.0 m."
    # The chair's front is world -x, the camera's right is world +x: it faces left in the image.
    assert examples["orientation"]["en"][1].endswith("to the left")
    assert examples["orientation"]["zh"][1].endswith("朝左")
    # The vase (0.2, 3) from the lamp (-1.5, 4) with camera 1 facing +y: +x (right), -y (back).
    assert examples["birdseye_position"]["en"][1].endswith("back-right")
    # Lamp to table: gaps (0.75, 0.45) -> 0.87 m; lamp to chair 2.72 m: the table is closer.
    assert examples["proximity"]["en"] == ["Which is closer to the floor lamp: the chair or the table?", "The table."]
    # The lamp (depth 3.85..4.15 along camera 1's axis) lies wholly behind the chair (2.75..3.25): not in front.
    assert examples["egocentric_position"]["zh"][1] == "不是。"


def _transformed_scene(scene: Scene, transform: np.ndarray, mirror: bool) -> Scene:
    """The scene with its world moved by `transform`; `mirror` also reflects x (and the images with it)."""
    reflect = np.diag([-1.0, 1.0, 1.0]) if mirror else np.eye(3)
    flip_axis = np.diag([1.0, -1.0, 1.0]) if mirror else np.eye(3)  # keeps box rotations proper, front kept
    camera_flip = np.diag([-1.0, 1.0, 1.0]) if mirror else np.eye(3)  # image x mirrors with the world

    def move_box(box: OrientedBox) -> OrientedBox:
        reflected = OrientedBox(reflect @ box.center, box.extents, reflect @ box.rotation @ flip_axis)
        return reflected.transformed(transform)

    objects = [SceneObject(o.object_id, o.instance_id, o.category, move_box(o.box), o.has_front) for o in scene.objects]
    frames = []
    for frame in scene.frames:
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = reflect @ frame.pose[:3, :3] @ camera_flip, reflect @ frame.pose[:3, 3]
        flip = (lambda a: a[:, ::-1].copy()) if mirror else (lambda a: a)
        frames.append(Frame(frame.frame_id, frame.width, frame.height, frame.intrinsics, transform @ pose,
                            flip(frame.image), flip(frame.depth), flip(frame.instances)))
    return Scene(scene.scene_id, objects, frames)


def _world_motion(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    transform = np.eye(4)
    transform[:3, :3], transform[:3, 3] = rotation_z(rng.uniform(-np.pi, np.pi)), [*rng.uniform(-5, 5, 2), 0.0]
    return transform


def _samples(scene: Scene, number: int):
    return generate_scene_qa(build_object_frame_index(scene, INDEX), QA, number)


def test_rigid_world_motion_leaves_every_answer_unchanged():
    compared = 0
    for number in range(6):
        scene = generate_scene(12, number, FAST)
        before = _samples(scene, number)
        after = _samples(_transformed_scene(scene, _world_motion(number), mirror=False), number)
        assert [(s.task, s.question, s.answer) for s in before] == [(s.task, s.question, s.answer) for s in after]
        compared += len(before)
    assert compared > 50


SWAPPED = {"left": "right", "right": "left", "facing_left": "facing_right", "facing_right": "facing_left",
           "front_left": "front_right", "front_right": "front_left", "back_left": "back_right",
           "back_right": "back_left", "move_left": "move_right", "move_right": "move_left",
           "turn_left": "turn_right", "turn_right": "turn_left"}


def _mirrored_value(task: str, value):
    if task == "egocentric_position":
        return {"relation": SWAPPED.get(value["relation"], value["relation"]), "holds": value["holds"]}
    if task == "camera_motion":
        return "+".join(SWAPPED.get(part, part) for part in value.split("+"))
    return SWAPPED.get(value, value)


def test_mirroring_the_world_swaps_left_and_right():
    swapped = 0
    for number in range(30):
        scene = generate_scene(13, number, FAST)
        originals = {(s.task, tuple(s.objects), tuple(s.frames)): s for s in _samples(scene, number)}
        for mirrored in _samples(_transformed_scene(scene, np.eye(4), mirror=True), number):
            original = originals.get((mirrored.task, tuple(mirrored.objects), tuple(mirrored.frames)))
            if original is None or mirrored.task not in ("egocentric_position", "allocentric_direction", "orientation",
                                                         "birdseye_position", "camera_motion"):
                continue
            assert mirrored.value == _mirrored_value(original.task, original.value), (number, mirrored.task)
            swapped += mirrored.value != original.value
    assert swapped >= 10


def test_answer_type_tells_evaluation_how_to_score(checked_samples):
    from openspatial.qa.rows import sample_metadata
    from openspatial.qa.tasks import AnswerType
    from trainer.evaluation.spatial_qa import MEAN_RELATIVE_ACCURACY, METRIC_BY_ANSWER_TYPE, answer_metric, first_number

    assert set(get_args(AnswerType)) == set(METRIC_BY_ANSWER_TYPE)  # evaluation scores every declared type
    for number, sample, _ in checked_samples:
        if TASKS[sample.task].answer_type == "number":  # the number MRA reads from the answer is the computed value
            assert abs(first_number(sample.answer) - sample.value) <= 0.05 + 1e-9, (sample.task, sample.answer)
    scene = generate_scene(11, 0, FAST)
    first_scene = [sample for number, sample, _ in checked_samples if number == 0]
    assert {TASKS[sample.task].answer_type for sample in first_scene} == {"number", "choice", "text"}
    for sample in first_scene:
        metadata = json.loads(sample_metadata(scene, sample))
        assert metadata["answer_type"] == TASKS[sample.task].answer_type
        metric = answer_metric(metadata, sample.task)
        assert (metric == MEAN_RELATIVE_ACCURACY) == (metadata["answer_type"] == "number")


def test_steep_and_near_vertical_cameras_are_in_the_checked_scenes(checked_samples):
    """The procedural scenes the checks run on include cameras pitched 50-70 degrees down and near vertical,
    and camera_motion / relative_pose / birdseye samples from them (which the checks above agree with)."""
    def pitch(scene_number: int, frame: int) -> float:
        forward = generate_scene(11, scene_number, FAST, render=False).frames[frame].pose[:3, 2]
        return np.degrees(np.arcsin(-forward[2]))

    camera_samples = [(n, s) for n, s, _ in checked_samples
                      if s.task in ("camera_motion", "relative_pose", "birdseye_position")]
    pitches = [[pitch(n, frame) for frame in s.frames] for n, s in camera_samples]
    assert sum(any(50 <= p <= 70 for p in pair) for pair in pitches) >= 5
    assert sum(any(p >= 75 for p in pair) for pair in pitches) >= 5


def _two_camera_scene(poses: list[np.ndarray]) -> Scene:
    frames = [Frame(f"{i}", 64, 48, np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]]), pose)
              for i, pose in enumerate(poses)]
    return Scene("cameras", [], frames)


def _camera(position, yaw_deg: float, pitch_down_deg: float) -> np.ndarray:
    from openspatial.procedural import pose_from_heading

    return pose_from_heading(np.array(position, float), np.radians(yaw_deg), np.radians(pitch_down_deg))


@pytest.mark.parametrize(("second", "expected"), [
    # Pitched 60 degrees down, then 0.6 m back and 0.4 m down: in camera 1's own axes the vertical drop shows up
    # as "forward" (z = -0.6 cos 60 + 0.4 sin 60 > 0); in its gravity-aligned frame it is a step backward.
    (([0.0, -0.6, 1.1], 90.0, 60.0), "backward+no_turn"),
    # Straight down, then 0.8 m to the camera's right (-x when heading +y) and turned to head -x... right turn.
    (([0.8, 0.0, 1.5], 0.0, 90.0), "move_right+turn_right"),
    # Near vertical (89.5 degrees), 0.7 m ahead and turned 30 degrees left.
    (([0.0, 0.7, 1.5], 120.0, 89.5), "forward+turn_left"),
])
def test_camera_motion_in_the_gravity_aligned_frame_of_the_first_camera(second, expected):
    import random

    from openspatial.qa.tasks import SceneMeasures, TaskContext

    first = _camera([0.0, 0.0, 1.5], 90.0, 60.0 if second[2] == 60.0 else second[2])
    scene = _two_camera_scene([first, _camera(*second)])
    index = build_object_frame_index(scene, INDEX)
    sample = TASKS["camera_motion"].generate(TaskContext(index, QA, random.Random(0), "en", SceneMeasures(scene)))
    assert sample is not None and sample.value == expected
    assert check_sample(scene, sample, QA.model_dump()) is None


def test_a_mostly_vertical_camera_move_is_not_asked():
    import random

    from openspatial.qa.tasks import SceneMeasures, TaskContext

    scene = _two_camera_scene([_camera([0, 0, 1.5], 90.0, 60.0), _camera([0, 0.3, 0.9], 90.0, 60.0)])
    sample = TASKS["camera_motion"].generate(TaskContext(build_object_frame_index(scene, INDEX), QA, random.Random(0),
                                                         "en", SceneMeasures(scene)))
    assert sample is None


def test_every_label_map_category_has_a_chinese_name():
    from openspatial.adapters import NYU40_LABELS
    from openspatial.procedural import FLOOR_CATEGORIES, TOP_CATEGORIES
    from openspatial.qa.templates import CATEGORY_NAMES

    categories = set(NYU40_LABELS) | {c.name for c in FLOOR_CATEGORIES + TOP_CATEGORIES}
    missing = sorted(c for c in categories if c not in CATEGORY_NAMES)
    assert not missing
    for category in categories:
        english, chinese = CATEGORY_NAMES[category]
        assert english and chinese and not any("a" <= ch.lower() <= "z" for ch in chinese), category


def test_chinese_rows_carry_no_english_category_and_no_capitals(checked_samples):
    """Over the checked procedural samples and a scene of NYU40 and free-text categories: no ZH question or
    answer holds a Latin letter other than an option letter / image number mark, and an untranslatable
    category turns its sample English."""
    import re

    from openspatial.qa.templates import CATEGORY_NAMES

    english_words = {name for english, _ in CATEGORY_NAMES.values() for name in english.lower().split()}
    scene = generate_scene(11, 3, FAST)
    for obj, category in zip(scene.objects, ("night stand", "desk", "office chair", "television")):
        obj.category = category
    samples = [s for _, s, _ in checked_samples] + generate_scene_qa(build_object_frame_index(scene, INDEX), QA, 3)
    zh = [s for s in samples if s.language == "zh"]
    assert zh
    for sample in zh:
        for text in (sample.question, sample.answer):
            words = set(re.findall(r"[A-Za-z]{2,}", text))
            assert not {w.lower() for w in words} & english_words and "office" not in text, text
            assert not re.search(r"[A-Z][a-z]+。", text), text
    assert any("office chair" in s.question or "office chair" in s.answer for s in samples if s.language == "en")


def test_render_frames_colours_every_category():
    scene = generate_scene(11, 0, FAST, render=False)
    for obj in scene.objects:
        obj.category = "office chair"
    from openspatial.procedural import render_frames

    render_frames(scene.objects, np.array(scene.metadata["room_size"]), scene.metadata["room_height"], scene.frames)
    assert all(frame.image is not None and frame.image.any() for frame in scene.frames)
