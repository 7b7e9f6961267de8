"""Human-preference rewards on tiny random weights loaded from directories (no downloads): PickScore and HPS v2
against the CLIP embeddings computed here, ImageReward against BLIP's own image-text-matching forward, HPS v3
against Qwen2-VL's generic forward on a hand-written chat text, one image at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainer.rewards import RewardInput, build_reward
from trainer.core import TrainerError
from trainer.rewards.scorers import (HPS_V3_HEAD, HPS_V3_PROMPT, IMAGE_REWARD_HEAD, IMAGE_REWARD_MEAN, IMAGE_REWARD_STD,
                                     hps_v3_head, image_reward_head)

PROMPTS = ["a red square", "a blue circle on the grass"]


def images(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(3)
    return [Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)) for _ in range(count)]


def test_pickscore_and_hps_v2_are_the_published_clip_formulas(tiny_clip: Path) -> None:
    from transformers import AutoTokenizer, CLIPModel

    batch = RewardInput(prompts=PROMPTS, images=images(2))
    pick = build_reward({"name": "pickscore", "model_path": str(tiny_clip)})
    hps = build_reward({"name": "hps_v2", "model_path": str(tiny_clip)})
    model, tokenizer = CLIPModel.from_pretrained(tiny_clip), AutoTokenizer.from_pretrained(tiny_clip)

    def cosine(pixel_values: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            text = model.get_text_features(**tokenizer(PROMPTS, padding=True, return_tensors="pt"))
            image = model.get_image_features(pixel_values=pixel_values)
        text, image = (getattr(x, "pooler_output", x) for x in (text, image))
        text, image = text / text.norm(dim=-1, keepdim=True), image / image.norm(dim=-1, keepdim=True)
        return (image * text).sum(dim=-1)

    # PickScore reads CLIP's own processor; HPS v2 the letterboxed image of its package (tested below).
    clip_pixels = pick.processor(images=batch.images, return_tensors="pt")["pixel_values"]
    assert pick.score(batch).scores == pytest.approx((model.logit_scale.exp() * cosine(clip_pixels)).tolist(),
                                                     abs=1e-4)
    assert hps.score(batch).scores == pytest.approx(cosine(hps.pixel_values(batch.images)).tolist(), abs=1e-5)


def test_hps_v2_letterboxes_the_longer_side_and_cleans_prompts_as_open_clip() -> None:
    """HPS v2's evaluation transform: the longer side to the model size, zeros centred around the rest; a
    square image at the model size is untouched. Prompts: HTML unescaped twice, whitespace collapsed, lower case."""
    from trainer.rewards.scorers import letterbox, open_clip_clean

    wide = torch.rand(3, 20, 40)
    boxed = letterbox(wide, 20)
    assert boxed.shape == (3, 20, 20)
    assert bool((boxed[:, :5] == 0).all()) and bool((boxed[:, 15:] == 0).all()) and bool((boxed[:, 5:15] != 0).any())
    odd = letterbox(torch.rand(3, 40, 20), 24)  # 24 x 12: 6 columns left, 6 right
    assert bool((odd[..., :6] == 0).all()) and bool((odd[..., 18:] == 0).all())
    square = torch.rand(3, 24, 24)
    assert torch.equal(letterbox(square, 24), square)
    assert open_clip_clean("  A Cat &amp;amp; a   DOG\n") == "a cat & a dog"


@pytest.fixture(scope="module")
def tiny_image_reward(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BLIP retrieval model with a BERT word-piece tokenizer and a random reward head."""
    from safetensors.torch import save_file
    from transformers import (BertTokenizerFast, BlipConfig, BlipForImageTextRetrieval, BlipImageProcessor,
                              BlipProcessor)

    out = tmp_path_factory.mktemp("image-reward")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "blue", "square", "circle", "on", "the",
             "grass"]
    (out / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(out / "vocab.txt"))
    torch.manual_seed(0)
    config = BlipConfig(
        text_config={"vocab_size": len(words), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "encoder_hidden_size": 32, "max_position_embeddings": 64},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 16},
        projection_dim=16, image_text_hidden_size=16)
    BlipForImageTextRetrieval(config).save_pretrained(out)
    BlipProcessor(BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer).save_pretrained(out)
    save_file(image_reward_head(32).state_dict(), out / IMAGE_REWARD_HEAD)
    return out


def test_image_reward_scores_blips_image_grounded_cls_feature(tiny_image_reward: Path) -> None:
    """The reward head is affine (no activation), so it can be folded into BLIP's ITM head: then BLIP's own
    image-text-matching forward computes the raw reward, independently of the scorer's code path."""
    from safetensors.torch import load_file
    from transformers import BlipForImageTextRetrieval, BlipProcessor

    reward = build_reward({"name": "image_reward", "model_path": str(tiny_image_reward)})
    batch = RewardInput(prompts=PROMPTS, images=images(2))
    scores = reward.score(batch).scores
    head = image_reward_head(32)
    head.load_state_dict(load_file(tiny_image_reward / IMAGE_REWARD_HEAD))
    weight, bias = torch.eye(32), torch.zeros(32)
    for layer in head:
        if isinstance(layer, torch.nn.Linear):
            weight, bias = layer.weight @ weight, layer.weight @ bias + layer.bias
    model = BlipForImageTextRetrieval.from_pretrained(tiny_image_reward).eval()
    with torch.no_grad():
        model.itm_head.weight.copy_(torch.cat([weight, weight]))
        model.itm_head.bias.copy_(torch.cat([bias, bias]))
        processor = BlipProcessor.from_pretrained(tiny_image_reward)
        tokens = processor.tokenizer(PROMPTS, padding="max_length", truncation=True, max_length=35,
                                     return_tensors="pt")
        # The pixels of the package's transform (short side resize + centre crop; checked against the package
        # itself in test_reward_parity.py), not BLIP's square resize.
        raw = model(**tokens, pixel_values=reward.pixel_values(batch.images), use_itm_head=True).itm_score[:, 0]
    assert scores == pytest.approx(((raw - IMAGE_REWARD_MEAN) / IMAGE_REWARD_STD).tolist(), abs=1e-5)
    assert len(set(round(s, 6) for s in scores)) == 2


def test_a_preference_model_path_without_its_head_is_a_one_line_error(tiny_clip: Path) -> None:
    with pytest.raises(TrainerError, match="has no reward_head.safetensors"):
        build_reward({"name": "image_reward", "model_path": str(tiny_clip)})


HPS_V3_TEMPLATE = "Rate this image for the prompt: {prompt}\nOverall: <|Reward|>\nEND\n"  # ours, not the trained one


@pytest.fixture(scope="module")
def tiny_hps_v3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2-VL with the tiny Qwen tokenizer plus the reward token, a random head, a short template."""
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor
    from transformers import Qwen2VLProcessor, Qwen2VLVideoProcessor

    from data_engine.model_refs import tiny_model_path
    from trainer.tiny_models import QWEN_CHAT_TEMPLATE, QWEN_VOCAB_SIZE

    out = tmp_path_factory.mktemp("hps-v3")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path("qwen3vl"))
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|Reward|>"]})
    torch.manual_seed(0)
    config = Qwen2VLConfig(
        text_config={"vocab_size": QWEN_VOCAB_SIZE, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "num_key_value_heads": 1,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}},
        vision_config={"depth": 1, "embed_dim": 16, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2})
    Qwen2VLForConditionalGeneration(config).save_pretrained(out)
    image_processor = Qwen2VLImageProcessor()  # Qwen2-VL's pixel bounds: the scorer's resized inputs pass unchanged
    Qwen2VLProcessor(image_processor=image_processor, video_processor=Qwen2VLVideoProcessor(), tokenizer=tokenizer,
                     chat_template=QWEN_CHAT_TEMPLATE).save_pretrained(out)
    save_file(hps_v3_head(32).state_dict(), out / HPS_V3_HEAD)
    (out / HPS_V3_PROMPT).write_text(HPS_V3_TEMPLATE)
    return out


def test_hps_v3_scores_the_reward_tokens_hidden_state_with_its_head(tiny_hps_v3: Path) -> None:
    """Batched and right-padded through the scorer vs. one image at a time through the model's generic forward on
    the chat text written out by hand, with the package's positions (0..L-1 in every rotary section) and its
    image size (256 x 28 x 28 pixels); the score is the head's first output (the mean)."""
    from safetensors.torch import load_file

    prompts = ["a cup", "a long prompt about a blue circle lying on the green grass at noon"]
    batch = RewardInput(prompts=prompts, images=images(2))
    reward = build_reward({"name": "hps_v3", "model_path": str(tiny_hps_v3)})
    scores = reward.score(batch).scores
    model, processor = reward.model, reward.processor  # the loaded weights; the forward below is the generic one
    head = hps_v3_head(32).eval()
    head.load_state_dict(load_file(tiny_hps_v3 / HPS_V3_HEAD))
    reward_id = processor.tokenizer.convert_tokens_to_ids("<|Reward|>")
    for prompt, image, score in zip(prompts, batch.images, scores):
        text = ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
                f"Rate this image for the prompt: {prompt}\nOverall: <|Reward|>\nEND\n<|im_end|>\n"
                "<|im_start|>assistant\n")
        # 48 x 40 on the 28-pixel grid scaled up to at least 256 x 28 x 28 pixels: 504 x 420 (18 x 15 patches of 28)
        inputs = processor(text=[text], images=[image.resize((420, 504), resample=Image.BICUBIC)],
                           return_tensors="pt")
        positions = torch.arange(inputs["input_ids"].shape[1]).expand(3, 1, -1)
        with torch.no_grad():
            hidden = model(**inputs, position_ids=positions, output_hidden_states=True).hidden_states[-1][0]
            position = (inputs["input_ids"][0] == reward_id).nonzero().item()
            assert score == pytest.approx(float(head(hidden[position])[0]), abs=1e-5)
    assert scores[0] != scores[1]


def test_hps_v3_without_its_prompt_or_token_is_a_one_line_error(tiny_hps_v3: Path, tmp_path: Path) -> None:
    import shutil

    broken = shutil.copytree(tiny_hps_v3, tmp_path / "hps")
    (broken / HPS_V3_PROMPT).write_text("Rate: {prompt}")
    with pytest.raises(TrainerError, match="needs one {prompt} field and the reward token"):
        build_reward({"name": "hps_v3", "model_path": str(broken)})
    (broken / HPS_V3_PROMPT).unlink()
    with pytest.raises(TrainerError, match="has no reward_prompt.txt"):
        build_reward({"name": "hps_v3", "model_path": str(broken)})
