"""QA wording: every template rendered in both languages with sample objects reads as a sentence (a fixed list of
phrases that must not appear), and the generated questions and captions use the expected phrases."""

from __future__ import annotations

import re

import pytest

from openspatial.frame_index import IndexConfig, build_object_frame_index
from openspatial.qa.tasks import QAConfig, generate_scene_qa
from openspatial.qa.templates import ANSWERS, COLOUR_NAMES, QUESTIONS, RELATION_PHRASES, WORDS
from tests.openspatial.conftest import hand_scene

# Phrases a rendered English text must never contain, each with what it catches.
BAD_ENGLISH = {
    r"\b(left|right) (the|a|an)\b": "a side without 'of' ('is the table right the chair')",
    r"\b(left|right) of (the|a|an) [^?]*\b(left|right)\b": "two sides in one relation",
    r"\b[Aa] [aeiouAEIOU]": "'a' before a vowel",
    r"\b(the|a|an) (the|a|an)\b": "a doubled article",
    r"\s[?.,!:]": "a space before punctuation",
    r"  ": "a double space",
    r"[\[\]{}]": "a placeholder left unfilled",
    r"\b(\w+) \1\b": "a doubled word",
}
BAD_CHINESE = {r"[\[\]{}]": "a placeholder left unfilled", r"的的": "a doubled 的",
               r"\s[？。，]": "a space before punctuation"}

# Sample objects and parameters, per language, for every placeholder and field the templates use.
REFERENCES = {"en": ("the table", "the chair in the red box", "the armchair"),
              "zh": ("桌子", "红色框中的椅子", "扶手椅")}


def sample_fields(language: str) -> list[dict[str, str]]:
    lang = 0 if language == "en" else 1
    options = "\n".join(f"{letter}. {WORDS[key][lang]}"
                        for letter, key in zip("ABCD", ("front", "left", "back", "right")))
    base = {"options": options, "colour": COLOUR_NAMES["red"][lang], "category": ("chair", "椅子")[lang],
            "category_plural": ("chairs", "椅子")[lang],
            "objects": ("the table, the chair, the sofa", "桌子、椅子、沙发")[lang]}
    return [{**base, "relation": phrases[lang], "measure": WORDS[measure][lang]}
            for phrases in RELATION_PHRASES.values() for measure in ("longest", "height")]


def rendered_texts(language: str) -> list[str]:
    texts = []
    for task, by_language in QUESTIONS.items():
        for template in by_language[language]:
            for fields in sample_fields(language):
                text = template
                for placeholder, reference in zip("ABC", REFERENCES[language]):
                    text = text.replace(f"[{placeholder}]", reference)
                texts.append(text.format(**fields))
    for kind, pair in ANSWERS.items():
        texts.append(pair[0 if language == "en" else 1].format(answer="the chair in the red box"))
    return texts


@pytest.mark.parametrize("language", ["en", "zh"])
def test_every_template_renders_without_a_listed_bad_phrase(language):
    bad = BAD_ENGLISH if language == "en" else BAD_CHINESE
    texts = rendered_texts(language)
    assert len(texts) > 200
    problems = [f"{why}: {text!r}" for text in texts for pattern, why in bad.items() if re.search(pattern, text)]
    assert not problems, "\n".join(problems[:10])


def test_the_bad_phrase_list_catches_the_reported_mistakes():
    reported = ["From the camera's viewpoint, is the table right the chair?", "A table stands on a armchair."]
    for text in reported:
        assert any(re.search(pattern, text) for pattern in BAD_ENGLISH), text


EGOCENTRIC = re.compile(r"^(From the camera's viewpoint|Seen from the camera), is (the [A-Za-z ]+?) "
                        r"(to the left of|to the right of|above|below|in front of|behind) (the [A-Za-z ]+?)\?$")


def test_egocentric_questions_use_a_full_relation_phrase():
    scene = hand_scene([("table", [0, 3, 0.375], [1.2, 0.8, 0.75], 0.0, False),
                        ("chair", [1.55, 3, 0.45], [0.5, 0.5, 0.9], 0.0, False),
                        ("lamp", [-1.5, 4, 0.75], [0.3, 0.3, 1.5], 0.0, False),
                        ("vase", [0.2, 3, 0.85], [0.15, 0.15, 0.2], 0.0, False),
                        ("tv", [-0.6, 3.5, 1.9], [0.6, 0.1, 0.4], 0.0, False)],  # hung above the table
                       [([0, 0, 1.3], [0, 4, 0.6]), ([1.5, 0.5, 1.3], [0.5, 4, 0.6])])
    index = build_object_frame_index(scene, IndexConfig(min_visible_pixels=30))
    config = QAConfig(tasks=("egocentric_position",), languages=("en",), samples_per_task=4, min_visible_pixels=30)
    phrases = set()
    for seed in range(60):
        for sample in generate_scene_qa(index, config, seed):
            match = EGOCENTRIC.match(sample.question)
            assert match, sample.question
            phrases.add(match[3])
    assert phrases == {"to the left of", "to the right of", "above", "below", "in front of", "behind"}


def test_scene_caption_articles_and_plurals():
    scene = hand_scene([("table", [0, 3, 0.2], [0.6, 0.6, 0.4], 0.0, False),
                        ("vase", [0, 3, 0.45], [0.1, 0.1, 0.1], 0.0, False),
                        ("box", [1.5, 3, 0.1], [0.1, 0.1, 0.2], 0.0, False),
                        ("box", [-1.5, 3, 0.1], [0.1, 0.1, 0.2], 0.0, False),
                        ("chair", [2.5, 5, 0.45], [0.5, 0.5, 0.9], 0.0, False)],
                       [([0, 0, 1.3], [0, 4, 0.6]), ([1, 0, 1.3], [0, 4, 0.6])])
    # Categories outside the renderer's colour table, named after rendering: the caption only reads the names.
    for obj, category in zip(scene.objects, ("ottoman", "alarm clock", "glass", "glass", "library")):
        obj.category = category
    index = build_object_frame_index(scene, IndexConfig(min_visible_pixels=30))
    config = QAConfig(tasks=("scene_caption",), languages=("en",), min_visible_pixels=30)
    (sample,) = generate_scene_qa(index, config, 0)
    assert sample.answer == ("The room contains 1 alarm clock, 2 glasses, 1 library, 1 ottoman. "
                             "An alarm clock stands on an ottoman.")
