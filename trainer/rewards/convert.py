"""Converters from the published human-preference checkpoints to the directories the rewards in
`trainer/rewards/scorers.py` load: `python -m trainer.rewards convert KIND --checkpoint PATH --out DIR`.

- hps_v2: an open_clip ViT-H-14 state dict as HPS_v2(.1)_compressed.pt ships it (`{"state_dict": ...}`) ->
  transformers `CLIPModel`, the CLIP tokenizer built from open_clip's BPE vocabulary, the image size and
  normalisation.
- image_reward: ImageReward.pt, the state dict of the image-reward package's `ImageReward` module (BLIP's
  timm-style ViT under `blip.visual_encoder`, BLIP's cross-attention BERT under `blip.text_encoder`, the MLP under
  `mlp.layers`) -> `BlipForImageTextRetrieval`, `reward_head.safetensors` and the BERT tokenizer with the tokens
  BLIP adds.
- hps_v3: the hpsv3 package's checkpoint (HPSv3.safetensors: its `Qwen2VLRewardModelBT`, Qwen2-VL with the
  `<|Reward|>` token and the `rm_head` MLP) -> `Qwen2VLForConditionalGeneration` with the base model's processor
  plus the reward token, `rm_head.safetensors`, and `reward_prompt.txt` read from the installed package.

Sizes are read from the weights; what weights cannot tell (attention head widths, a tokenizer, Qwen2-VL's
configuration) comes from the published architecture or from paths the user passes. Nothing downloads. Every
error is one line naming the file and key.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from trainer.core import TrainerError
from trainer.rewards.scorers import (HPS_V3_HEAD, HPS_V3_PROMPT, HPS_V3_TOKEN, IMAGE_REWARD_HEAD, hps_v3_head,
                                     image_reward_head)

if TYPE_CHECKING:
    from transformers import BertTokenizer, BlipConfig, CLIPConfig

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # the normalisation both HPS v2 and ImageReward use
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
Weights = dict[str, tuple[str, torch.Tensor]]  # our key -> (the checkpoint's key, its tensor)


class Checkpoint:
    """A published state dict; every lookup that fails names the file and the key."""

    def __init__(self, path: Path, dtype: torch.dtype | None = torch.float32) -> None:
        self.path = path
        self.tensors = read_state_dict(path)
        self.dtype = dtype  # None keeps the file's dtype
        self.used: set[str] = set()

    def get(self, key: str) -> torch.Tensor:
        if key not in self.tensors:
            raise TrainerError(f"{self.path}: missing key {key}")
        self.used.add(key)
        tensor = self.tensors[key]
        return tensor if self.dtype is None else tensor.to(self.dtype)

    def take(self, key: str) -> tuple[str, torch.Tensor]:
        return key, self.get(key)

    def block_count(self, prefix: str) -> int:
        """How many numbered blocks `prefix{N}.` the state dict holds (N from 0, without gaps)."""
        numbers = {int(key[len(prefix):].split(".")[0]) for key in self.tensors
                   if key.startswith(prefix) and key[len(prefix):].split(".")[0].isdigit()}
        gaps = sorted(set(range(max(numbers, default=0) + 1)) - numbers)
        if gaps:
            raise TrainerError(f"{self.path}: missing keys {prefix}{gaps[0]}.*")
        return len(numbers)

    def check_all_used(self, under: Iterable[str] = ("",), rebuilt: Iterable[str] = ()) -> None:
        """Refuse keys of the converted modules that no mapping consumed: weights this converter does not know
        would change the computation (keys outside `under` belong to modules the score never runs; `rebuilt` are
        buffers transformers recreates)."""
        for key in sorted(set(self.tensors) - self.used - set(rebuilt)):
            if any(key.startswith(prefix) for prefix in under):
                raise TrainerError(f"{self.path}: unexpected key {key} (not part of the published architecture)")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise TrainerError(f"{path}: not a file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: no code runs
    except Exception as exc:  # a truncated or foreign file: its name and the reader's one-line reason
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainerError(f"{path}: not a readable checkpoint: {reason}") from None
    for wrapper in ("state_dict", "model"):  # training scripts nest the weights one level down
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TrainerError(f"{path}: not a state dict (a mapping of names to tensors)")
    return state


def load_weights(model: torch.nn.Module, weights: Weights, checkpoint: Checkpoint,
                 sizes_from: str = "the sizes of the other weights") -> None:
    """Every tensor's shape checked against the model (naming the checkpoint's key), then loaded; a model built
    on the meta device takes the tensors themselves (no copy)."""
    expected = model.state_dict()
    for ours, (theirs, tensor) in weights.items():
        if tensor.shape != expected[ours].shape:
            raise TrainerError(f"{checkpoint.path}: {theirs} has shape {list(tensor.shape)}, expected "
                               f"{list(expected[ours].shape)} from {sizes_from}")
    on_meta = any(tensor.is_meta for tensor in expected.values())
    model.load_state_dict({ours: tensor for ours, (_, tensor) in weights.items()}, strict=True, assign=on_meta)


def heads(checkpoint: Checkpoint, width: int, head_width: int, what: str) -> int:
    if width % head_width:
        raise TrainerError(f"{checkpoint.path}: {what} is {width} wide, not a multiple of the head width "
                           f"{head_width} (--head-width)")
    return width // head_width


def grid_side(positions: int, key: str, checkpoint: Checkpoint) -> int:
    """Patches per side from a position table of one class token plus a square grid."""
    side = math.isqrt(positions - 1)
    if side * side != positions - 1:
        raise TrainerError(f"{checkpoint.path}: {key} has {positions} positions, not 1 + a square grid")
    return side


# ---- HPS v2: open_clip ViT-H-14 -> transformers CLIPModel --------------------------------------------------------

HPS_V2_VISION_HEAD_WIDTH, HPS_V2_TEXT_HEAD_WIDTH = 80, 64  # open_clip's ViT-H-14 (1280 / 16, 1024 / 16)
BPE_VOCABULARY = "bpe_simple_vocab_16e6.txt.gz"


def open_clip_block(checkpoint: Checkpoint, theirs: str, ours: str) -> Weights:
    """A residual attention block: open_clip's fused in-projection splits into q, k, v."""
    weights: Weights = {}
    for name in ("weight", "bias"):
        key = f"{theirs}.attn.in_proj_{name}"
        for projection, tensor in zip("qkv", checkpoint.get(key).chunk(3)):
            weights[f"{ours}.self_attn.{projection}_proj.{name}"] = (key, tensor)
        for our_name, their_name in (("layer_norm1", "ln_1"), ("self_attn.out_proj", "attn.out_proj"),
                                     ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
            weights[f"{ours}.{our_name}.{name}"] = checkpoint.take(f"{theirs}.{their_name}.{name}")
    return weights


def hps_v2_config(checkpoint: Checkpoint, vision_head_width: int, text_head_width: int) -> CLIPConfig:
    from transformers import CLIPConfig

    tokens = checkpoint.get("token_embedding.weight")
    vocab_size, text_width = tokens.shape
    patches = checkpoint.get("visual.conv1.weight")
    vision_width, patch_size = patches.shape[0], patches.shape[-1]
    side = grid_side(checkpoint.get("visual.positional_embedding").shape[0], "visual.positional_embedding", checkpoint)
    return CLIPConfig(
        text_config={"vocab_size": vocab_size, "hidden_size": text_width,
                     "intermediate_size": checkpoint.get("transformer.resblocks.0.mlp.c_fc.weight").shape[0],
                     "num_hidden_layers": checkpoint.block_count("transformer.resblocks."),
                     "num_attention_heads": heads(checkpoint, text_width, text_head_width, "the text tower"),
                     "max_position_embeddings": checkpoint.get("positional_embedding").shape[0],
                     "hidden_act": "gelu", "layer_norm_eps": 1e-5,
                     # the end-of-text token is the highest id: the text feature is read there
                     "bos_token_id": vocab_size - 2, "eos_token_id": vocab_size - 1, "pad_token_id": vocab_size - 1},
        vision_config={"hidden_size": vision_width, "patch_size": patch_size, "image_size": side * patch_size,
                       "intermediate_size": checkpoint.get("visual.transformer.resblocks.0.mlp.c_fc.weight").shape[0],
                       "num_hidden_layers": checkpoint.block_count("visual.transformer.resblocks."),
                       "num_attention_heads": heads(checkpoint, vision_width, vision_head_width, "the image tower"),
                       "hidden_act": "gelu", "layer_norm_eps": 1e-5},
        projection_dim=checkpoint.get("text_projection").shape[1])


def hps_v2_weights(checkpoint: Checkpoint, text_layers: int, vision_layers: int) -> Weights:
    take = checkpoint.take
    weights: Weights = {
        "text_model.embeddings.token_embedding.weight": take("token_embedding.weight"),
        "text_model.embeddings.position_embedding.weight": take("positional_embedding"),
        "text_model.final_layer_norm.weight": take("ln_final.weight"),
        "text_model.final_layer_norm.bias": take("ln_final.bias"),
        "text_projection.weight": ("text_projection", checkpoint.get("text_projection").T),
        "vision_model.embeddings.patch_embedding.weight": take("visual.conv1.weight"),
        "vision_model.embeddings.class_embedding": take("visual.class_embedding"),
        "vision_model.embeddings.position_embedding.weight": take("visual.positional_embedding"),
        "vision_model.pre_layrnorm.weight": take("visual.ln_pre.weight"),
        "vision_model.pre_layrnorm.bias": take("visual.ln_pre.bias"),
        "vision_model.post_layernorm.weight": take("visual.ln_post.weight"),
        "vision_model.post_layernorm.bias": take("visual.ln_post.bias"),
        "visual_projection.weight": ("visual.proj", checkpoint.get("visual.proj").T),
        "logit_scale": take("logit_scale"),
    }
    for layer in range(text_layers):
        weights |= open_clip_block(checkpoint, f"transformer.resblocks.{layer}", f"text_model.encoder.layers.{layer}")
    for layer in range(vision_layers):
        weights |= open_clip_block(checkpoint, f"visual.transformer.resblocks.{layer}",
                                   f"vision_model.encoder.layers.{layer}")
    return weights


def installed_bpe_vocabulary() -> Path:
    """The BPE vocabulary open_clip bundles (OpenAI's clip package ships the same file), from this environment."""
    from importlib.util import find_spec

    for package in ("open_clip", "clip"):
        spec = find_spec(package)
        if spec is not None and spec.origin is not None and (Path(spec.origin).parent / BPE_VOCABULARY).is_file():
            return Path(spec.origin).parent / BPE_VOCABULARY
    raise TrainerError(f"hps_v2: no {BPE_VOCABULARY} in an installed open_clip or clip package; pass --bpe PATH")


def save_clip_tokenizer(bpe: Path, vocab_size: int, context_length: int, out: Path) -> None:
    """The CLIP tokenizer of open_clip's BPE file: the 256 byte symbols, the same ending a word, one symbol per
    merge in rank order, then start and end of text, as many merges as the checkpoint's vocabulary leaves."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    if not bpe.is_file():
        raise TrainerError(f"{bpe}: not a file (the BPE vocabulary, {BPE_VOCABULARY})")
    try:
        lines = gzip.open(bpe).read().decode("utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainerError(f"{bpe}: not a gzipped BPE vocabulary: {exc}") from None
    merges = lines[1:1 + vocab_size - 2 * 256 - 2]  # the first line is a version header
    if len(merges) != vocab_size - 2 * 256 - 2 or not all(len(merge.split()) == 2 for merge in merges):
        raise TrainerError(f"{bpe}: has fewer than the {vocab_size - 2 * 256 - 2} merges a vocabulary of "
                           f"{vocab_size} needs")
    symbols = list(bytes_to_unicode().values())
    vocabulary = [*symbols, *(symbol + "</w>" for symbol in symbols), *(merge.replace(" ", "") for merge in merges),
                  "<|startoftext|>", "<|endoftext|>"]
    tokenizer = CLIPTokenizer(vocab={token: index for index, token in enumerate(vocabulary)},
                              merges=[tuple(merge.split()) for merge in merges], model_max_length=context_length)
    tokenizer.save_pretrained(out)


def convert_hps_v2(checkpoint_path: Path, out: Path, bpe: Path | None = None,
                   vision_head_width: int = HPS_V2_VISION_HEAD_WIDTH,
                   text_head_width: int = HPS_V2_TEXT_HEAD_WIDTH) -> None:
    from transformers import CLIPImageProcessor, CLIPModel

    checkpoint = Checkpoint(checkpoint_path)
    config = hps_v2_config(checkpoint, vision_head_width, text_head_width)
    model = CLIPModel(config).eval()
    load_weights(model, hps_v2_weights(checkpoint, config.text_config.num_hidden_layers,
                                       config.vision_config.num_hidden_layers), checkpoint)
    checkpoint.check_all_used()
    out.mkdir(parents=True, exist_ok=True)
    save_clip_tokenizer(bpe or installed_bpe_vocabulary(), config.text_config.vocab_size,
                        config.text_config.max_position_embeddings, out)
    model.save_pretrained(out)
    size = config.vision_config.image_size  # HpsV2Reward letterboxes to it with these mean and std
    CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                       image_mean=list(OPENAI_CLIP_MEAN), image_std=list(OPENAI_CLIP_STD)).save_pretrained(out)


# ---- ImageReward: BLIP (timm ViT + cross-attention BERT) + MLP -> BlipForImageTextRetrieval + head ---------------

IMAGE_REWARD_VISION_HEAD_WIDTH, IMAGE_REWARD_TEXT_HEAD_WIDTH = 64, 64  # BLIP's ViT-L/16 (1024 / 16), BERT (768 / 12)
BLIP_VIT = "blip.visual_encoder"
BLIP_BERT = "blip.text_encoder"
BLIP_DECODER_TOKEN, BLIP_ENCODER_TOKEN = "[DEC]", "[ENC]"  # what BLIP's init_tokenizer adds to bert-base-uncased


def blip_tokenizer(bert_tokenizer: Path, vocab_size: int) -> BertTokenizer:
    """The package's tokenizer: bert-base-uncased's word pieces plus BLIP's decoder and encoder tokens."""
    from transformers import BertTokenizer

    if not (bert_tokenizer / "vocab.txt").is_file():
        raise TrainerError(f"{bert_tokenizer}: has no vocab.txt (a bert-base-uncased tokenizer directory)")
    tokenizer = BertTokenizer.from_pretrained(bert_tokenizer, local_files_only=True)
    tokenizer.add_special_tokens({"bos_token": BLIP_DECODER_TOKEN})
    tokenizer.add_special_tokens({"additional_special_tokens": [BLIP_ENCODER_TOKEN]})
    if len(tokenizer) != vocab_size:
        raise TrainerError(f"{bert_tokenizer}: {len(tokenizer)} tokens with BLIP's {BLIP_DECODER_TOKEN} and "
                           f"{BLIP_ENCODER_TOKEN}, the "
                           f"checkpoint's {BLIP_BERT}.embeddings.word_embeddings.weight has {vocab_size}")
    return tokenizer


def image_reward_config(checkpoint: Checkpoint, vision_head_width: int, text_head_width: int,
                        tokenizer: BertTokenizer) -> BlipConfig:
    from transformers import BlipConfig

    patches = checkpoint.get(f"{BLIP_VIT}.patch_embed.proj.weight")
    vision_width, patch_size = patches.shape[0], patches.shape[-1]
    side = grid_side(checkpoint.get(f"{BLIP_VIT}.pos_embed").shape[1], f"{BLIP_VIT}.pos_embed", checkpoint)
    words = checkpoint.get(f"{BLIP_BERT}.embeddings.word_embeddings.weight")
    return BlipConfig(
        text_config={"vocab_size": words.shape[0], "hidden_size": words.shape[1],
                     "intermediate_size": checkpoint.get(f"{BLIP_BERT}.encoder.layer.0.intermediate.dense.weight")
                     .shape[0],
                     "num_hidden_layers": checkpoint.block_count(f"{BLIP_BERT}.encoder.layer."),
                     "num_attention_heads": heads(checkpoint, words.shape[1], text_head_width, "the text encoder"),
                     "encoder_hidden_size": vision_width,
                     "max_position_embeddings": checkpoint.get(f"{BLIP_BERT}.embeddings.position_embeddings.weight")
                     .shape[0],
                     "hidden_act": "gelu", "layer_norm_eps": 1e-12, "pad_token_id": tokenizer.pad_token_id,
                     "bos_token_id": tokenizer.bos_token_id, "sep_token_id": tokenizer.sep_token_id},
        vision_config={"hidden_size": vision_width, "patch_size": patch_size, "image_size": side * patch_size,
                       "intermediate_size": checkpoint.get(f"{BLIP_VIT}.blocks.0.mlp.fc1.weight").shape[0],
                       "num_hidden_layers": checkpoint.block_count(f"{BLIP_VIT}.blocks."),
                       "num_attention_heads": heads(checkpoint, vision_width, vision_head_width, "the image encoder"),
                       "hidden_act": "gelu", "layer_norm_eps": 1e-6})  # timm's ViT in BLIP: eps 1e-6


def image_reward_weights(checkpoint: Checkpoint, model: torch.nn.Module) -> Weights:
    """BLIP's BERT keeps its names under `text_encoder`; the ViT is renamed block by block. The retrieval
    projections and the ITM head of `BlipForImageTextRetrieval` are not part of ImageReward and never run in the
    score: they are zeroed."""
    take = checkpoint.take
    weights: Weights = {
        "vision_model.embeddings.class_embedding": take(f"{BLIP_VIT}.cls_token"),
        "vision_model.embeddings.position_embedding": take(f"{BLIP_VIT}.pos_embed"),
        "vision_model.embeddings.patch_embedding.weight": take(f"{BLIP_VIT}.patch_embed.proj.weight"),
        "vision_model.embeddings.patch_embedding.bias": take(f"{BLIP_VIT}.patch_embed.proj.bias"),
        "vision_model.post_layernorm.weight": take(f"{BLIP_VIT}.norm.weight"),
        "vision_model.post_layernorm.bias": take(f"{BLIP_VIT}.norm.bias"),
    }
    for layer in range(model.config.vision_config.num_hidden_layers):
        for our_name, their_name in (("layer_norm1", "norm1"), ("self_attn.qkv", "attn.qkv"),
                                     ("self_attn.projection", "attn.proj"), ("layer_norm2", "norm2"),
                                     ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2")):
            for name in ("weight", "bias"):
                weights[f"vision_model.encoder.layers.{layer}.{our_name}.{name}"] = take(
                    f"{BLIP_VIT}.blocks.{layer}.{their_name}.{name}")
    for ours, tensor in model.state_dict().items():
        if ours.startswith("text_encoder."):
            weights[ours] = take(f"blip.{ours}")
        elif ours.split(".")[0] in ("vision_proj", "text_proj", "itm_head"):
            weights[ours] = ("(not in ImageReward)", torch.zeros_like(tensor))
    return weights


def image_reward_head_weights(checkpoint: Checkpoint, width: int) -> dict[str, torch.Tensor]:
    head = image_reward_head(width)
    weights = {ours: checkpoint.take(f"mlp.layers.{ours}") for ours in head.state_dict()}
    load_weights(head, weights, checkpoint)
    return head.state_dict()


def convert_image_reward(checkpoint_path: Path, out: Path, bert_tokenizer: Path,
                         vision_head_width: int = IMAGE_REWARD_VISION_HEAD_WIDTH,
                         text_head_width: int = IMAGE_REWARD_TEXT_HEAD_WIDTH) -> None:
    from safetensors.torch import save_file
    from transformers import BlipForImageTextRetrieval, BlipImageProcessor, BlipProcessor

    checkpoint = Checkpoint(checkpoint_path)
    tokenizer = blip_tokenizer(bert_tokenizer, checkpoint.get(f"{BLIP_BERT}.embeddings.word_embeddings.weight")
                               .shape[0])
    config = image_reward_config(checkpoint, vision_head_width, text_head_width, tokenizer)
    model = BlipForImageTextRetrieval(config).eval()
    load_weights(model, image_reward_weights(checkpoint, model), checkpoint)
    head = image_reward_head_weights(checkpoint, config.text_config.hidden_size)
    checkpoint.check_all_used(under=(f"{BLIP_VIT}.", f"{BLIP_BERT}.", "mlp."),
                              rebuilt=(f"{BLIP_BERT}.embeddings.position_ids",))  # an arange
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    save_file(head, out / IMAGE_REWARD_HEAD)
    size = config.vision_config.image_size  # ImageRewardReward resizes the short side to it and centre-crops
    image_processor = BlipImageProcessor(size={"height": size, "width": size}, image_mean=list(OPENAI_CLIP_MEAN),
                                         image_std=list(OPENAI_CLIP_STD))
    BlipProcessor(image_processor, tokenizer).save_pretrained(out)


# ---- HPS v3: the hpsv3 package's Qwen2VLRewardModelBT -> Qwen2VLForConditionalGeneration + head + instruction -----

HPSV3_INSTRUCTION_MODULE = Path("dataset") / "data_collator_qwen.py"  # inside the hpsv3 package


def hps_v3_template(hpsv3_package: Path) -> str:
    """The instruction HPS v3 was trained with, read from the package's source without running it: INSTRUCTION
    (with its `{text_prompt}` field) followed by the text that holds the reward token, as the package's
    prepare_batch joins them; our field is `{prompt}`."""
    import ast

    source = hpsv3_package / HPSV3_INSTRUCTION_MODULE
    if not source.is_file():
        raise TrainerError(f"{hpsv3_package}: has no {HPSV3_INSTRUCTION_MODULE} (the installed hpsv3 package)")
    strings = {target.id: node.value.value for node in ast.parse(source.read_text()).body
               if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
               and isinstance(node.value.value, str) for target in node.targets if isinstance(target, ast.Name)}
    for name in ("INSTRUCTION", "prompt_with_special_token"):
        if name not in strings:
            raise TrainerError(f"{source}: no string {name} (the hpsv3 version this converter reads defines it)")
    template = strings["INSTRUCTION"].format(text_prompt="{prompt}") + strings["prompt_with_special_token"]
    if template.count(HPS_V3_TOKEN) != 1:
        raise TrainerError(f"{source}: the instruction holds {HPS_V3_TOKEN} {template.count(HPS_V3_TOKEN)} times")
    return template


def installed_hpsv3_package() -> Path:
    from importlib.util import find_spec

    spec = find_spec("hpsv3")
    if spec is None or spec.origin is None:
        raise TrainerError("hps_v3: the hpsv3 package is not installed here; pass --hpsv3-package DIR (its folder, "
                           "e.g. site-packages/hpsv3 of the environment it is installed in)")
    return Path(spec.origin).parent


def hps_v3_source_key(ours: str) -> str:
    """The package's transformers (4.45) names: the decoder directly under `model.`, the vision tower at the top."""
    for our_prefix, their_prefix in (("model.language_model.", "model."), ("model.visual.", "visual.")):
        if ours.startswith(our_prefix):
            return their_prefix + ours[len(our_prefix):]
    return ours


def convert_hps_v3(checkpoint_path: Path, out: Path, base_model: Path, hpsv3_package: Path | None = None) -> None:
    """The decoder and vision tower keep the checkpoint's dtype (bf16 for the published 7B): the model is built on
    the meta device and takes the checkpoint's tensors as they are, so conversion needs the checkpoint's memory
    only."""
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoProcessor, Qwen2VLForConditionalGeneration

    template = hps_v3_template(hpsv3_package or installed_hpsv3_package())
    if not (base_model / "config.json").is_file():
        raise TrainerError(f"{base_model}: has no config.json (the Qwen2-VL base model directory the checkpoint "
                           f"was trained from, Qwen2-VL-7B-Instruct for the published one)")
    checkpoint = Checkpoint(checkpoint_path, dtype=None)
    try:
        processor = AutoProcessor.from_pretrained(base_model, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise TrainerError(f"{base_model}: no Qwen2-VL processor (tokenizer, image processor, chat template): "
                           f"{str(exc).strip().splitlines()[0]}") from None
    processor.tokenizer.add_special_tokens({"additional_special_tokens": [HPS_V3_TOKEN]})  # as the package does
    vocab_size = checkpoint.get("model.embed_tokens.weight").shape[0]  # the package resizes to the tokenizer
    if len(processor.tokenizer) != vocab_size:
        raise TrainerError(f"{base_model}: its tokenizer with {HPS_V3_TOKEN} has {len(processor.tokenizer)} tokens, "
                           f"the checkpoint's model.embed_tokens.weight {vocab_size} rows")
    config = AutoConfig.from_pretrained(base_model, local_files_only=True)
    config.text_config.vocab_size = vocab_size
    with torch.device("meta"):
        model = Qwen2VLForConditionalGeneration(config)
    load_weights(model, {ours: checkpoint.take(hps_v3_source_key(ours)) for ours in model.state_dict()}, checkpoint,
                 sizes_from=str(base_model / "config.json"))
    head = hps_v3_head(config.text_config.hidden_size)
    head_weights = {ours: checkpoint.take(f"rm_head.{ours}") for ours in head.state_dict()}
    load_weights(head, {ours: (theirs, tensor.float()) for ours, (theirs, tensor) in head_weights.items()},
                 checkpoint)  # the package keeps its head in fp32 too
    checkpoint.check_all_used()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    save_file(head.state_dict(), out / HPS_V3_HEAD)
    (out / HPS_V3_PROMPT).write_text(template)
