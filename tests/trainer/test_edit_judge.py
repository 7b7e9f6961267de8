"""The VLM editing rewards: the strict judge parser on hand-written outputs, the two-stage flow on scripted
answers, and the plumbing over the real transformers backend with the tiny Qwen3-VL (whose random answers do
not parse: every such edit is unscored with its reason, never given a score)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from data_engine.captioning.backends import Generation, GenerationBackend, GenerationRequest
from data_engine.captioning.prompts import load_prompt_set
from trainer.rewards import RewardInput, build_reward
from trainer.rewards.judge import EditJudge, NaturalnessReward, VlmClient, parse_judge

TINY_VLM = {"kind": "transformers", "model": "tiny:qwen3vl", "torch_threads": 1}


def image(colour: tuple[int, int, int], size: tuple[int, int] = (32, 24)) -> Image.Image:
    return Image.new("RGB", size, colour)


@pytest.mark.parametrize("raw, expected", [
    ('{"instruction_following": 7, "consistency": 10}', {"instruction_following": 0.7, "consistency": 1.0}),
    ('```json\n{"consistency": 0, "instruction_following": 3}\n```', {"instruction_following": 0.3, "consistency": 0.0}),
    ('<think>the cup is red now</think>{"instruction_following": 9, "consistency": 8}',
     {"instruction_following": 0.9, "consistency": 0.8}),
])
def test_judge_parser_accepts_exactly_the_answer_form(raw: str, expected: dict) -> None:
    scores, reason = parse_judge(raw)
    assert reason is None and scores == pytest.approx(expected)


@pytest.mark.parametrize("raw, reason_part", [
    ('{"instruction_following": 7.5, "consistency": 10}', "7.5"),
    ('{"instruction_following": 7.0, "consistency": 10}', "is not an integer"),
    ('{"instruction_following": true, "consistency": 10}', "True"),
    ('{"instruction_following": 11, "consistency": 10}', "11"),
    ('{"instruction_following": 7}', "consistency"),
    ('{"instruction_following": 7, "consistency": 1, "overall": 5}', "overall"),
    ('{"instruction_following": 7, "instruction_following": 2, "consistency": 1}', "appears twice"),
    ('Scores: {"instruction_following": 7, "consistency": 1}', "Expecting value"),
    ("", "Expecting value"),
])
def test_judge_parser_refuses_everything_else_with_a_reason(raw: str, reason_part: str) -> None:
    scores, reason = parse_judge(raw)
    assert scores is None and reason_part in reason


class ScriptedBackend(GenerationBackend):
    """Hand-written model answers, one list per prompt kind, told apart by the prompt's first words."""

    def __init__(self, describe: list[str | None], score: list[str]) -> None:
        self.answers = {"describe": list(describe), "score": list(score)}
        self.requests: list[GenerationRequest] = []

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        self.requests += requests
        results = []
        for request in requests:
            kind = "score" if "The edit instruction was" in request.prompt else "describe"
            text = self.answers[kind].pop(0)
            results.append(Generation(text) if text is not None else Generation(None, "HTTP 503"))
        return results


def test_two_stages_score_from_the_description_and_record_reasons() -> None:
    backend = ScriptedBackend(describe=["the cup turned red", None, "the dog is gone"],
                              score=['{"instruction_following": 8, "consistency": 6}', "I think it is good"])
    judge = EditJudge(VlmClient(backend, load_prompt_set("edit_reward_judge/v1"), 64))
    sources, edits = [image((200, 0, 0))] * 3, [image((0, 0, 200), (64, 48))] * 3
    batch = RewardInput(prompts=["make the cup red", "make it blue", "remove the dog"], images=edits,
                        source_images=sources)
    results = judge.judge(batch)
    assert results[0]["instruction_following"] == pytest.approx(0.8) and results[0]["consistency"] == pytest.approx(0.6)
    assert results[0]["reason"] is None
    assert math.isnan(results[1]["instruction_following"]) and results[1]["reason"] == "describe: request failed: HTTP 503"
    assert math.isnan(results[2]["consistency"]) and results[2]["reason"].startswith("score: Expecting value")
    # stage two got the instruction and stage one's description, only for the edits stage one described
    score_prompts = [r.prompt for r in backend.requests if "The edit instruction was" in r.prompt]
    assert len(score_prompts) == 2
    assert '"make the cup red"' in score_prompts[0] and '"the cup turned red"' in score_prompts[0]
    assert '"remove the dog"' in score_prompts[1] and '"the dog is gone"' in score_prompts[1]
    # each request shows the source left and the edit (resized to the source height) right
    picture = np.asarray(Image.open(io.BytesIO(backend.requests[0].image)))
    assert picture.shape == (24, 64, 3)
    assert (picture[:, :32] == (200, 0, 0)).all() and (picture[:, 32:] == (0, 0, 200)).all()
    assert judge.judge(batch) is results and len(backend.requests) == 5  # the second judge reward is free


def test_judge_rewards_over_the_tiny_vlm_share_one_judge() -> None:
    from trainer.rewards.mixing import RewardMixer, WeightedReward

    specs = [{"name": name, "backend": TINY_VLM, "max_tokens": 6}
             for name in ("vlm_instruction_following", "vlm_consistency")]
    following, consistency = (build_reward(spec) for spec in specs)
    assert following.judge is consistency.judge
    mixer = RewardMixer({"if": WeightedReward(following, 1.0, "instruction"),
                         "cons": WeightedReward(consistency, 1.0, "consistency")})
    batch = RewardInput(prompts=["make it blue", "make it red"], images=[image((0, 0, 200)), image((0, 200, 0))],
                        source_images=[image((200, 0, 0)), image((200, 0, 0))])
    outputs = [reward.score(batch) for reward in (following, consistency)]
    for output in outputs:
        for score, detail in zip(output.scores, output.details):
            # random weights: an answer that parses is in [0, 1]; anything else is NaN with its reason
            assert (detail["reason"] is None and 0 <= score <= 1) or (math.isnan(score) and detail["reason"])
    assert outputs[0].details is outputs[1].details
    assert mixer.rewards["if"].reward.judge.judge(batch) is outputs[0].details


def test_naturalness_scores_the_edit_against_the_vlm_target_caption() -> None:
    reward = NaturalnessReward(backend=TINY_VLM, scorer={"name": "latent_probe"}, max_tokens=6)
    captions = []

    class CaptionProbe:
        """Records the captions the inner scorer is asked about and scores their length."""

        def score(self, batch: RewardInput):
            from trainer.rewards import RewardOutput

            captions.extend(batch.prompts)
            return RewardOutput([float(len(p)) for p in batch.prompts], [{} for _ in batch.prompts])

    reward.scorer = CaptionProbe()
    output = reward.score(RewardInput(prompts=["make it blue"], images=[image((0, 0, 200))],
                                      source_images=[image((200, 0, 0))]))
    detail = output.details[0]
    if detail["reason"] is None:
        assert captions == [detail["target_caption"]] and output.scores == [float(len(detail["target_caption"]))]
    else:
        assert captions == [] and math.isnan(output.scores[0])
