"""The built-in rewards: aesthetic, CLIP-score alignment, the human-preference models (PickScore, HPS v2,
HPS v3, ImageReward), OCR text accuracy and a latent linear probe."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from data_engine.text_distance import normalised_edit_distance
from trainer.core import TrainerError
from trainer.rewards import Reward, RewardInput, RewardOutput, register_reward

if TYPE_CHECKING:
    from PIL import Image


def resolve_path(path: str) -> Path:
    from data_engine.model_refs import resolve_model_path

    return Path(resolve_model_path(path))


@register_reward("aesthetic")
class AestheticReward(Reward):
    """The curation aesthetic predictor (CLIP image embedding + LAION MLP head) at `model_path`
    (`tiny:aesthetic` for the tiny random one); the score is the predictor's raw output."""

    def __init__(self, model_path: str = "tiny:aesthetic") -> None:
        from data_engine.stages.aesthetic import AestheticConfig, AestheticStage

        self.stage = AestheticStage(AestheticConfig(model_path=str(resolve_path(model_path))))
        self.stage.load_model(resolve_path(model_path))

    def score(self, batch: RewardInput) -> RewardOutput:
        scores = self.stage.score([np.asarray(image.convert("RGB")) for image in batch.images])
        return RewardOutput([float(s) for s in scores], [{} for _ in scores])


@register_reward("clip_score")
class ClipScoreReward(Reward):
    """Text-image alignment: cosine similarity of the CLIP image and prompt embeddings (transformers
    `CLIPModel`, tokenizer and image processor in one directory at `model_path`)."""

    logit_scaled = False  # PickScore multiplies the cosine by the model's learned temperature

    def __init__(self, model_path: str) -> None:
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        path = resolve_path(model_path)
        if not (path / "config.json").is_file():
            raise TrainerError(f"rewards.clip_score.model_path: {path} has no config.json")
        self.model = CLIPModel.from_pretrained(path, local_files_only=True).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.processor = CLIPImageProcessor.from_pretrained(path, local_files_only=True)

    def pixel_values(self, images: list[Image.Image]) -> torch.Tensor:
        return self.processor(images=[image.convert("RGB") for image in images], return_tensors="pt")["pixel_values"]

    def prompt_texts(self, prompts: list[str]) -> list[str]:
        return prompts

    @torch.no_grad()
    def score(self, batch: RewardInput) -> RewardOutput:
        limit = self.model.config.text_config.max_position_embeddings
        tokens = self.tokenizer(self.prompt_texts(batch.prompts), padding=True, truncation=True, max_length=limit,
                                return_tensors="pt")
        text = self.model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        image = self.model.get_image_features(pixel_values=self.pixel_values(batch.images))
        text, image = (getattr(x, "pooler_output", x) for x in (text, image))
        cosine = torch.nn.functional.cosine_similarity(image, text, dim=-1)
        scores = cosine * self.model.logit_scale.exp() if self.logit_scaled else cosine
        return RewardOutput(scores.tolist(), [{} for _ in batch.prompts])


# Human-preference rewards. Their PyPI packages (hpsv2, image-reward, hpsv3) are not installed: each pins its
# own stack (an open_clip fork, timm/fairscale versions, a Qwen2-VL transformers) that does not fit this
# environment; the scorers below are the published architectures, formulas and input transforms on transformers
# classes, loaded from directories in transformers layout that `python -m trainer.rewards convert` writes from the
# published checkpoints (trainer/rewards/convert.py). `make test-reward-parity` scores against the packages.


@register_reward("pickscore")
class PickScoreReward(ClipScoreReward):
    """PickScore (Kirstain et al. 2023): a fine-tuned CLIP-H (transformers `CLIPModel`, as published);
    score = exp(logit_scale) * cos(image embedding, prompt embedding)."""

    logit_scaled = True


def letterbox(image: torch.Tensor, size: int) -> torch.Tensor:
    """HPS v2's evaluation transform (open_clip with `light_augmentation`): the longer side resized to `size`
    (bicubic, antialiased, on the float tensor; skipped when it already is `size`), then zero padding centred to
    a square."""
    import torchvision.transforms.functional as F

    height, width = image.shape[1:]
    scale = size / max(height, width)
    if scale != 1.0:
        height, width = round(height * scale), round(width * scale)
        image = F.resize(image, [height, width], interpolation=F.InterpolationMode.BICUBIC, antialias=True)
    pad_height, pad_width = size - height, size - width
    return F.pad(image, [pad_width // 2, pad_height // 2, pad_width - pad_width // 2, pad_height - pad_height // 2])


def open_clip_clean(prompt: str) -> str:
    """open_clip's text cleaning before BPE (the transformers CLIP tokenizer lower-cases and collapses
    whitespace, but neither repairs mojibake nor unescapes HTML)."""
    import html

    import ftfy
    import regex

    return regex.sub(r"\s+", " ", html.unescape(html.unescape(ftfy.fix_text(prompt))).strip()).strip().lower()


@register_reward("hps_v2")
class HpsV2Reward(ClipScoreReward):
    """HPS v2 (Wu et al. 2023): a fine-tuned open_clip ViT-H-14, score = normalised image features . normalised
    text features (no temperature), on the package's evaluation inputs: open_clip's text cleaning and the
    letterboxed image (`letterbox`). `model_path` holds the checkpoint converted to transformers `CLIPModel`
    layout by `python -m trainer.rewards convert hps_v2` (open_clip's ViT-H-14 is the same architecture)."""

    def pixel_values(self, images: list[Image.Image]) -> torch.Tensor:
        import torchvision.transforms.functional as F

        size = self.model.config.vision_config.image_size
        boxed = [letterbox(F.to_tensor(image.convert("RGB")), size) for image in images]
        return torch.stack([F.normalize(image, self.processor.image_mean, self.processor.image_std) for image in boxed])

    def prompt_texts(self, prompts: list[str]) -> list[str]:
        return [open_clip_clean(prompt) for prompt in prompts]


IMAGE_REWARD_HEAD = "reward_head.safetensors"
IMAGE_REWARD_MEAN, IMAGE_REWARD_STD = 0.16717362830052426, 1.0333394966054072  # the published normalisation
IMAGE_REWARD_MAX_TOKENS = 35


def image_reward_head(hidden_size: int) -> torch.nn.Sequential:
    """ImageReward's MLP on the text encoder's [CLS] feature (affine layers with dropout, no activation)."""
    sizes = (hidden_size, 1024, 128, 64, 16, 1)
    layers: list[torch.nn.Module] = []
    for number, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(n_in, n_out))
        if number < 3:
            layers.append(torch.nn.Dropout(0.2 if number < 2 else 0.1))
    return torch.nn.Sequential(*layers)


@register_reward("image_reward")
class ImageRewardReward(Reward):
    """ImageReward (Xu et al. 2023): BLIP's image-grounded text encoder reads the prompt with cross-attention to
    the image, an MLP scores its [CLS] feature, and the score is standardised with the published mean and std.
    `model_path`: a transformers `BlipForImageTextRetrieval` directory with its processor, plus the MLP in
    `reward_head.safetensors`."""

    def __init__(self, model_path: str) -> None:
        from safetensors.torch import load_file
        from transformers import BlipForImageTextRetrieval, BlipProcessor

        path = resolve_path(model_path)
        if not (path / IMAGE_REWARD_HEAD).is_file():
            raise TrainerError(f"rewards.image_reward.model_path: {path} has no {IMAGE_REWARD_HEAD}")
        self.model = BlipForImageTextRetrieval.from_pretrained(path, local_files_only=True).eval()
        self.processor = BlipProcessor.from_pretrained(path, local_files_only=True)
        self.head = image_reward_head(self.model.config.text_config.hidden_size).eval()
        self.head.load_state_dict(load_file(path / IMAGE_REWARD_HEAD))

    def pixel_values(self, images: list[Image.Image]) -> torch.Tensor:
        """The package's transform: the short side resized to the model's size (bicubic, on the image as given),
        centre crop, then RGB and normalisation."""
        import torchvision.transforms.functional as F

        size = self.model.config.vision_config.image_size
        mean, std = self.processor.image_processor.image_mean, self.processor.image_processor.image_std
        cropped = [F.center_crop(F.resize(image, size, interpolation=F.InterpolationMode.BICUBIC), size)
                   for image in images]
        return torch.stack([F.normalize(F.to_tensor(image.convert("RGB")), mean, std) for image in cropped])

    @torch.no_grad()
    def score(self, batch: RewardInput) -> RewardOutput:
        tokens = self.processor.tokenizer(batch.prompts, padding="max_length", truncation=True,
                                          max_length=IMAGE_REWARD_MAX_TOKENS, return_tensors="pt")
        pixels = self.pixel_values(batch.images)
        image_embeds = self.model.vision_model(pixel_values=pixels).last_hidden_state
        text = self.model.text_encoder(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"],
                                       encoder_hidden_states=image_embeds,
                                       encoder_attention_mask=torch.ones(image_embeds.shape[:-1], dtype=torch.long))
        raw = self.head(text.last_hidden_state[:, 0]).squeeze(-1)
        return RewardOutput(((raw - IMAGE_REWARD_MEAN) / IMAGE_REWARD_STD).tolist(), [{} for _ in batch.prompts])


HPS_V3_HEAD = "rm_head.safetensors"
HPS_V3_PROMPT = "reward_prompt.txt"
HPS_V3_TOKEN = "<|Reward|>"
HPS_V3_PIXELS = 256 * 28 * 28  # the package's prepare_batch: every image resized to this many pixels


def hps_v3_head(hidden_size: int) -> torch.nn.Sequential:
    """HPS v3's head on the reward token's last hidden state: two ReLU layers (1024, 16 wide), then the mean and
    the spread of the predicted preference (its training loss is an uncertainty-aware ranking loss)."""
    return torch.nn.Sequential(torch.nn.Linear(hidden_size, 1024), torch.nn.ReLU(), torch.nn.Dropout(0.05),
                               torch.nn.Linear(1024, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))


@register_reward("hps_v3")
class HpsV3Reward(Reward):
    """HPS v3 (Ma et al. 2025): Qwen2-VL reads the image and the prompt, filled into the instruction the model was
    trained with, followed by the reward token `<|Reward|>`; the head maps that token's last hidden state to
    (mean, spread) and the score is the mean. As in the package, each image is first resized (PIL, bicubic) to
    HPS_V3_PIXELS on Qwen2-VL's 28-pixel grid, and the language model numbers the tokens 0..L-1 in all three
    rotary sections: the package's forward hands the decoder no position ids, so it was trained without
    Qwen2-VL's multimodal (M-RoPE) positions. `model_path`: the checkpoint as a transformers
    `Qwen2VLForConditionalGeneration` directory with its processor (tokenizer with the reward token), the head in
    `rm_head.safetensors`, and the trained instruction in `reward_prompt.txt` (a template with a `{prompt}` field
    that ends in the reward token; `python -m trainer.rewards convert hps_v3` copies it from the hpsv3 package, so
    this code carries no copy of it)."""

    def __init__(self, model_path: str) -> None:
        from safetensors.torch import load_file
        from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

        path = resolve_path(model_path)
        for name in (HPS_V3_HEAD, HPS_V3_PROMPT):
            if not (path / name).is_file():
                raise TrainerError(f"rewards.hps_v3.model_path: {path} has no {name}")
        self.template = (path / HPS_V3_PROMPT).read_text()
        if "{prompt}" not in self.template or self.template.count(HPS_V3_TOKEN) != 1:
            raise TrainerError(f"rewards.hps_v3: {path / HPS_V3_PROMPT} needs one {{prompt}} field and the reward "
                               f"token {HPS_V3_TOKEN} once")
        self.model = Qwen2VLForConditionalGeneration.from_pretrained(path, local_files_only=True).eval()
        self.processor = AutoProcessor.from_pretrained(path, local_files_only=True, padding_side="right")
        self.reward_token_id = self.processor.tokenizer.convert_tokens_to_ids(HPS_V3_TOKEN)
        if self.reward_token_id in (None, self.processor.tokenizer.unk_token_id):
            raise TrainerError(f"rewards.hps_v3: the tokenizer at {path} has no {HPS_V3_TOKEN} token")
        self.head = hps_v3_head(self.model.config.text_config.hidden_size).eval()
        self.head.load_state_dict(load_file(path / HPS_V3_HEAD))

    def prompt_texts(self, prompts: list[str]) -> list[str]:
        conversations = [[{"role": "user", "content": [{"type": "image"},
                                                       {"type": "text", "text": self.template.replace("{prompt}", p)}]}]
                         for p in prompts]
        return [self.processor.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
                for conversation in conversations]

    def resized(self, image: Image.Image) -> Image.Image:
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        grid = self.processor.image_processor.patch_size * self.processor.image_processor.merge_size
        height, width = smart_resize(image.height, image.width, factor=grid, min_pixels=HPS_V3_PIXELS,
                                     max_pixels=HPS_V3_PIXELS)
        return image.convert("RGB").resize((width, height), resample=3)  # PIL's bicubic, the package's default

    @torch.no_grad()
    def score(self, batch: RewardInput) -> RewardOutput:
        inputs = self.processor(text=self.prompt_texts(batch.prompts),
                                images=[self.resized(image) for image in batch.images], padding=True,
                                return_tensors="pt")
        sequential = torch.arange(inputs["input_ids"].shape[1]).expand(3, *inputs["input_ids"].shape)
        # right padding: the padding comes after the reward token, which causal attention keeps it from seeing
        hidden = self.model.model(**inputs, position_ids=sequential).last_hidden_state
        at_token = inputs["input_ids"] == self.reward_token_id
        if not bool((at_token.sum(dim=1) == 1).all()):
            raise TrainerError(f"rewards.hps_v3: each prompt must hold {HPS_V3_TOKEN} once (a prompt contains it)")
        mean = self.head(hidden[at_token].float())[:, 0]
        return RewardOutput(mean.tolist(), [{} for _ in batch.prompts])


QUOTED = re.compile(r"[\"“”'‘’]([^\"“”'‘’]+)[\"“”'‘’]")


def quoted_text(prompt: str) -> str:
    """What the prompt asks to be written: its quoted strings, joined by spaces."""
    return " ".join(match.strip() for match in QUOTED.findall(prompt))


def text_accuracy(expected: str, read: str) -> float:
    """1 - edit distance / max length, case and whitespace insensitive; 1 when nothing was asked and read."""
    expected, read = (" ".join(s.lower().split()) for s in (expected, read))
    return 1.0 - normalised_edit_distance(expected, read)


@register_reward("ocr")
class OcrReward(Reward):
    """1 - normalised edit distance between the prompt's quoted strings and the text OCR reads back
    (the captioning OCR engines: `rapidocr` or `tesseract`)."""

    def __init__(self, engine: str = "tesseract", languages: tuple[str, ...] = ("eng",)) -> None:
        from data_engine.captioning.ocr_engines import TesseractConfig, make_ocr_engine

        self.engine = make_ocr_engine(engine, TesseractConfig(languages=tuple(languages), page_segmentation_mode=7))

    def score(self, batch: RewardInput) -> RewardOutput:
        lines = self.engine.read_lines(batch.images)
        scores, details = [], []
        for prompt, image_lines in zip(batch.prompts, lines):
            read = " ".join(line["text"] for line in image_lines)
            expected = quoted_text(prompt)
            scores.append(text_accuracy(expected, read))
            details.append({"expected": expected, "read": read})
        return RewardOutput(scores, details)


@register_reward("latent_probe")
class LatentProbeReward(Reward):
    """A closed-form reward on latents: the mean of a fixed random linear probe (seeded) of each latent
    channel vector. Its optimum is known, so learning tests can measure how much of the gap a run closes."""

    needs_images = False

    def __init__(self, channels: int = 16, seed: int = 0) -> None:
        self.probe = torch.randn(channels, generator=torch.Generator().manual_seed(seed)) / channels**0.5

    def values(self, latents: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bc...,c->b...", latents.float(), self.probe.to(latents.device)).flatten(1).mean(dim=1)

    def score(self, batch: RewardInput) -> RewardOutput:
        values = self.values(batch.latents).tolist()
        return RewardOutput(values, [{} for _ in values])
