"""Editing rewards from a VLM over the captioning backends (report 5.2.4): the two-stage judge and naturalness.

Two-stage judge (prompt set `edit_reward_judge/<version>`, data_engine/prompts/):
  1. `describe`: the VLM lists the differences between the source and the edited image;
  2. `score`: from the instruction, that description and the images it scores instruction following and
     consistency, JSON {"instruction_following": 0..10, "consistency": 0..10}, parsed strictly
     (data_engine.captioning.parsing.strict_json_object); both scores are divided by 10, so the
     instruction-following gate of trainer/rewards/mixing.py works on [0, 1].
The backends take one image per request, so the judge sees source (left) and edit (right) side by side in one
picture; the prompts say so. A request that fails, an empty description or an output that does not parse gives
the edit no score: NaN, with the stage and the reason in its details (never a default score); the advantages
then leave that sample out (trainer.objectives.flow_grpo.group_advantages).

One judge serves both rewards: `vlm_instruction_following` (role `instruction` in the mixer) and
`vlm_consistency` (role `consistency`) with the same backend and prompt version share one `EditJudge`, which
answers a batch once.

Naturalness (`naturalness`): the VLM writes the caption the edited image should match from the source image and
the instruction (`target_caption`), and a text-image reward (`scorer`, any registered one: `clip_score`, `hps`,
`pickscore`, ...) scores the edited image against it.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

from PIL import Image

from trainer.core import TrainerError
from trainer.rewards import Reward, RewardInput, RewardOutput, build_reward, check_reward_spec, register_reward

JUDGE_SCHEMA: dict = {
    "type": "object",
    "properties": {"instruction_following": {"type": "integer", "minimum": 0, "maximum": 10},
                   "consistency": {"type": "integer", "minimum": 0, "maximum": 10}},
    "required": ["instruction_following", "consistency"],
    "additionalProperties": False,
}
JUDGE_SCALE = 10
DEFAULT_PROMPTS = "edit_reward_judge/v1"


def side_by_side(source: Image.Image, edited: Image.Image) -> bytes:
    """Source left, edit right (the edit resized to the source's height), as PNG bytes."""
    source, edited = source.convert("RGB"), edited.convert("RGB")
    if edited.height != source.height:
        edited = edited.resize((max(1, round(edited.width * source.height / edited.height)), source.height))
    canvas = Image.new("RGB", (source.width + edited.width, source.height))
    canvas.paste(source, (0, 0))
    canvas.paste(edited, (source.width, 0))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def parse_judge(raw: str) -> tuple[dict[str, float] | None, str | None]:
    """({"instruction_following", "consistency"} in [0, 1], None) or (None, why the output was refused)."""
    import jsonschema

    from data_engine.captioning.parsing import strict_json_object

    value, detail = strict_json_object(raw, jsonschema.Draft202012Validator(JUDGE_SCHEMA))
    if value is None:
        return None, detail
    for key in ("instruction_following", "consistency"):
        if not isinstance(value[key], int):  # JSON Schema counts 7.0 as an integer
            return None, f"{key}: {value[key]!r} is not an integer"
    return {key: value[key] / JUDGE_SCALE for key in ("instruction_following", "consistency")}, None


def judge_configuration(backend: dict[str, Any], prompts: str) -> tuple[Any, Any]:
    """(the validated captioning backend config, the prompt set); TrainerError naming the mistake."""
    from pydantic import TypeAdapter, ValidationError

    from data_engine.captioning.backends import BackendConfig
    from data_engine.captioning.prompts import PromptFileError, load_prompt_set

    from trainer.config import first_validation_error

    try:
        return TypeAdapter(BackendConfig).validate_python(backend), load_prompt_set(prompts)
    except ValidationError as exc:
        raise TrainerError(f"rewards: judge backend.{first_validation_error(exc)}") from None
    except PromptFileError as exc:
        raise TrainerError(f"rewards: judge prompts: {str(exc).splitlines()[0]}") from None


def check_vlm_options(options: dict[str, Any]) -> None:
    try:
        judge_configuration(options["backend"], options.get("prompts", DEFAULT_PROMPTS))
    except TrainerError as exc:
        raise ValueError(str(exc)) from None


class VlmClient:
    """A captioning backend and a versioned prompt set (data_engine.captioning.prompts.PromptSet)."""

    def __init__(self, backend: Any, prompts: Any, max_tokens: int) -> None:
        self.backend = backend
        self.prompts = prompts
        self.guided = backend.supports_guided_json
        self.max_tokens = max_tokens

    @classmethod
    def from_config(cls, backend: dict[str, Any], prompts: str, max_tokens: int) -> VlmClient:
        from data_engine.captioning.backends import check_backend_available, make_backend

        config, prompt_set = judge_configuration(backend, prompts)
        unavailable = check_backend_available(config)
        if unavailable:
            raise TrainerError(f"rewards: judge backend: {unavailable}")
        return cls(make_backend(config), prompt_set, max_tokens)

    def ask(self, prompt_key: str, images: list[bytes], fields: list[dict[str, str]],
            json_schema: dict | None = None) -> list[tuple[str | None, str | None]]:
        """(text, None) or (None, reason) per request: the prompt `prompt_key` filled with each `fields`."""
        from data_engine.captioning.backends import GenerationRequest

        template = self.prompts.text(prompt_key)
        requests = [GenerationRequest(template.format(**values), self.max_tokens, image,
                                      json_schema if self.guided else None)
                    for image, values in zip(images, fields)]
        return [(g.text, None) if g.error is None and g.text is not None else (None, f"request failed: {g.error}")
                for g in self.backend.generate(requests)]


class EditJudge:
    """The two-stage judge; remembers its last batch so both judge rewards cost one pass."""

    def __init__(self, client: VlmClient) -> None:
        self.client = client
        self._last: tuple[int, list[dict[str, Any]]] | None = None

    def judge(self, batch: RewardInput) -> list[dict[str, Any]]:
        """Per edit: {"instruction_following", "consistency"} (NaN when not judged), "differences", "reason"."""
        from data_engine.captioning.parsing import clean_generation

        if self._last is not None and self._last[0] == id(batch):
            return self._last[1]
        if batch.source_images is None or len(batch.source_images) != len(batch.images):
            raise TrainerError("rewards: the edit judge needs one source image per edited image")
        pictures = [side_by_side(source, edited) for source, edited in zip(batch.source_images, batch.images)]
        described = self.client.ask("describe", pictures, [{} for _ in pictures])
        results: list[dict[str, Any]] = []
        for text, reason in described:
            differences = clean_generation(text) if text is not None else ""
            if reason is None and not differences:
                reason = "describe: empty description"
            elif reason is not None:
                reason = f"describe: {reason}"
            results.append({"differences": differences, "reason": reason})
        pending = [n for n, result in enumerate(results) if result["reason"] is None]
        scored = self.client.ask("score", [pictures[n] for n in pending],
                                 [{"instruction": batch.prompts[n], "differences": results[n]["differences"]}
                                  for n in pending], JUDGE_SCHEMA)
        for n, (text, reason) in zip(pending, scored):
            scores, detail = parse_judge(text) if text is not None else (None, reason)
            if scores is None:
                results[n]["reason"] = f"score: {detail}"
                results[n]["raw"] = text
            else:
                results[n].update(scores)
        for result in results:
            result.setdefault("instruction_following", math.nan)
            result.setdefault("consistency", math.nan)
        self._last = (id(batch), results)
        return results


_JUDGES: dict[str, EditJudge] = {}


def shared_judge(backend: dict[str, Any], prompts: str, max_tokens: int) -> EditJudge:
    key = json.dumps([backend, prompts, max_tokens], sort_keys=True)
    if key not in _JUDGES:
        _JUDGES[key] = EditJudge(VlmClient.from_config(backend, prompts, max_tokens))
    return _JUDGES[key]


class JudgeScore(Reward):
    """One of the judge's two scores, in [0, 1]; NaN with the reason in the details when not judged."""

    needs_source_images = True
    score_key = ""

    def __init__(self, backend: dict[str, Any], prompts: str = DEFAULT_PROMPTS, max_tokens: int = 256) -> None:
        self.judge = shared_judge(backend, prompts, max_tokens)

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        check_vlm_options(options)

    def score(self, batch: RewardInput) -> RewardOutput:
        results = self.judge.judge(batch)
        return RewardOutput([float(result[self.score_key]) for result in results], results)


@register_reward("vlm_instruction_following")
class InstructionFollowingReward(JudgeScore):
    score_key = "instruction_following"


@register_reward("vlm_consistency")
class ConsistencyReward(JudgeScore):
    score_key = "consistency"


@register_reward("naturalness")
class NaturalnessReward(Reward):
    """The edited image scored by the text-image reward `scorer` against the caption the VLM expects after the
    edit (prompt `target_caption` on the source image and the instruction)."""

    needs_source_images = True

    def __init__(self, backend: dict[str, Any], scorer: dict[str, Any], prompts: str = DEFAULT_PROMPTS,
                 max_tokens: int = 96) -> None:
        self.client = VlmClient.from_config(backend, prompts, max_tokens)
        self.scorer = build_reward(scorer)

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        check_vlm_options(options)
        check_reward_spec(options["scorer"])

    def score(self, batch: RewardInput) -> RewardOutput:
        from data_engine.captioning.parsing import clean_generation

        if batch.source_images is None:
            raise TrainerError("rewards.naturalness: needs the source images")
        answers = self.client.ask("target_caption", [png_bytes(image) for image in batch.source_images],
                                  [{"instruction": prompt} for prompt in batch.prompts])
        captions = [clean_generation(text) if text is not None else "" for text, _ in answers]
        details = [{"target_caption": caption,
                    "reason": reason or (None if caption else "target_caption: empty caption")}
                   for caption, (_, reason) in zip(captions, answers)]
        captioned = [n for n, detail in enumerate(details) if detail["reason"] is None]
        scores = [math.nan] * len(details)
        if captioned:
            inner = self.scorer.score(RewardInput(prompts=[captions[n] for n in captioned],
                                                  images=[batch.images[n] for n in captioned]))
            for n, value in zip(captioned, inner.scores):
                scores[n] = value
        return RewardOutput(scores, details)
