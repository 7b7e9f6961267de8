"""The packages' side of tests/trainer/test_reward_parity.py, run by the reward-parity environment's python
(scripts/setup_reward_parity_env.sh), never imported by the main environment:

    python tests/trainer/reward_parity_package.py KIND --out DIR

builds the package's own model class for KIND on a tiny random configuration of the published architecture
family, saves its checkpoint in the published format, and scores the images and prompts of
`parity_inputs.json` (written by the test) with the package's own scoring code. It writes into DIR: the
checkpoint, what the converter needs beside it, `layout.json` (the checkpoint's keys and shapes) and
`package_scores.json`.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from PIL import Image


def perturb(module: torch.nn.Module, seed: int) -> None:
    """Seeded noise on every weight: a fresh layer norm (ones and zeros) would hide a swapped mapping."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


def write_layout(state_dict: dict[str, torch.Tensor], out: Path) -> None:
    layout = {key: list(tensor.shape) for key, tensor in state_dict.items()}
    (out / "layout.json").write_text(json.dumps(layout, indent=1))


# The tiny architectures: the published head widths (HPS v2: 80 image / 64 text; ImageReward: 64), few of them.
HPS_V2_TINY = {"embed_dim": 24,
               "vision_cfg": {"image_size": 224, "layers": 2, "width": 160, "head_width": 80, "patch_size": 14},
               "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 2}}


def hps_v2(inputs: dict, out: Path) -> list[float]:
    """hpsv2.img_score.score on a model the package's factory builds with the arguments its own
    `initialize_model` passes (the tiny config instead of ViT-H-14, no pretrained download)."""
    from hpsv2 import img_score
    from hpsv2.src.open_clip import create_model_and_transforms
    from hpsv2.src.open_clip.factory import add_model_config

    (out / "model_configs").mkdir()
    (out / "model_configs" / "HPS-tiny.json").write_text(json.dumps(HPS_V2_TINY))
    add_model_config(out / "model_configs")
    model, _, preprocess_val = create_model_and_transforms(
        "HPS-tiny", None, precision="amp", device="cpu", jit=False, force_quick_gelu=False, force_custom_text=False,
        force_patch_dropout=False, force_image_size=None, pretrained_image=False, image_mean=None, image_std=None,
        light_augmentation=True, aug_cfg={}, output_dict=True, with_score_predictor=False,
        with_region_predictor=False)
    perturb(model, seed=0)
    checkpoint = out / "HPS_v2_compressed.pt"
    torch.save({"state_dict": model.state_dict()}, checkpoint)
    write_layout(model.state_dict(), out)
    img_score.model_dict.update(model=model, preprocess_val=preprocess_val)  # skips its ViT-H-14 download
    return [float(img_score.score(Image.open(image), prompt, cp=str(checkpoint))[0])
            for image, prompt in zip(inputs["images"], inputs["prompts"])]


IMAGE_REWARD_VISION = {"width": 128, "depth": 2, "heads": 2}  # ViT-L/16's head width (64), two blocks
IMAGE_REWARD_TEXT = {"hidden_size": 768, "num_hidden_layers": 1, "num_attention_heads": 12, "intermediate_size": 64,
                     "max_position_embeddings": 40}  # ImageReward's MLP takes 768 wide features


def image_reward(inputs: dict, out: Path) -> list[float]:
    """ImageReward.score(prompt, image) of a model built by the package's own `ImageReward.__init__`
    (BLIP_Pretrain, its tokenizer, the MLP), with a tiny ViT and BERT in place of ViT-L and BERT-base and the
    word-piece vocabulary at inputs["bert_tokenizer"] standing in for bert-base-uncased."""
    from transformers import BertTokenizer

    import ImageReward.models.BLIP.blip as blip
    import ImageReward.models.BLIP.blip_pretrain as blip_pretrain
    from ImageReward.ImageReward import ImageReward
    from ImageReward.models.BLIP.vit import VisionTransformer

    vocabulary = inputs["bert_tokenizer"]
    from_pretrained = BertTokenizer.from_pretrained

    class LocalBertTokenizer(BertTokenizer):
        @classmethod
        def from_pretrained(cls, name, *args, **kwargs):
            return from_pretrained(vocabulary if name == "bert-base-uncased" else name, *args, **kwargs)

    def tiny_vit(vit, image_size, use_grad_checkpointing=False, ckpt_layer=0, drop_path_rate=0):
        encoder = VisionTransformer(img_size=image_size, patch_size=16, embed_dim=IMAGE_REWARD_VISION["width"],
                                    depth=IMAGE_REWARD_VISION["depth"], num_heads=IMAGE_REWARD_VISION["heads"],
                                    drop_path_rate=drop_path_rate)
        return encoder, IMAGE_REWARD_VISION["width"]

    blip.BertTokenizer = LocalBertTokenizer
    blip_pretrain.create_vit = tiny_vit
    words = len(blip.init_tokenizer())
    med_config = out / "med_config.json"
    med_config.write_text(json.dumps({
        **IMAGE_REWARD_TEXT, "architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "initializer_range": 0.02, "layer_norm_eps": 1e-12,
        "model_type": "bert", "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": words,
        "encoder_width": IMAGE_REWARD_VISION["width"], "add_cross_attention": True}))
    torch.manual_seed(0)
    model = ImageReward(med_config=str(med_config), device="cpu").eval()
    perturb(model, seed=1)
    torch.save(model.state_dict(), out / "ImageReward.pt")
    write_layout(model.state_dict(), out)
    with torch.no_grad():
        return [float(model.score(prompt, Image.open(image)))
                for image, prompt in zip(inputs["images"], inputs["prompts"])]


HPS_V3_TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
               "num_key_value_heads": 1, "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
               "tie_word_embeddings": False,  # the ids Qwen2-VL-7B-Instruct's config.json names:
               "image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
               "vision_end_token_id": 151653,
               "vision_config": {"depth": 1, "embed_dim": 16, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2,
                                 "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}}


def hps_v3(inputs: dict, out: Path) -> list[float]:
    """HPSv3RewardInferencer(config, checkpoint).reward(images, prompts)[:, 0] (the mean, as its own example
    reads it): the package's yaml with a tiny Qwen2-VL base model (the tokenizer at inputs["qwen_tokenizer"]) in
    place of Qwen2-VL-7B-Instruct and fp32 instead of bf16; the checkpoint is a model its own
    create_model_and_processor builds from that yaml, with seeded noise."""
    import yaml
    from safetensors.torch import save_file
    from transformers import (AutoTokenizer, Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor,
                              Qwen2VLProcessor)

    import hpsv3
    from hpsv3.inference import HPSv3RewardInferencer
    from hpsv3.train import create_model_and_processor
    from hpsv3.utils.parser import DataConfig, ModelConfig, PEFTLoraConfig, TrainingConfig, parse_args_with_yaml

    base = out / "qwen2-vl-tiny"
    tokenizer = AutoTokenizer.from_pretrained(inputs["qwen_tokenizer"])
    torch.manual_seed(0)
    Qwen2VLForConditionalGeneration(Qwen2VLConfig(vocab_size=len(tokenizer), **HPS_V3_TINY)).save_pretrained(base)
    Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(), tokenizer=tokenizer,
                     chat_template=inputs["chat_template"]).save_pretrained(base)
    config = yaml.safe_load((Path(hpsv3.__file__).parent / "config" / "HPSv3_7B.yaml").read_text())
    config |= {"model_name_or_path": str(base), "bf16": False, "torch_dtype": "float32", "output_dir": str(out),
               "report_to": "none"}
    config_path = out / "HPSv3_tiny.yaml"
    config_path.write_text(yaml.safe_dump(config))
    (data_config, training_args, model_config, peft_lora_config), _ = parse_args_with_yaml(
        (DataConfig, TrainingConfig, ModelConfig, PEFTLoraConfig), str(config_path), is_train=False)
    model, _, _ = create_model_and_processor(model_config=model_config, peft_lora_config=peft_lora_config,
                                             training_args=training_args)
    perturb(model, seed=2)
    checkpoint = out / "HPSv3.safetensors"
    save_file({key: tensor.contiguous() for key, tensor in model.state_dict().items()}, checkpoint)
    write_layout(model.state_dict(), out)
    inferencer = HPSv3RewardInferencer(config_path=str(config_path), checkpoint_path=str(checkpoint), device="cpu")
    (out / "hpsv3_package.txt").write_text(str(Path(hpsv3.__file__).parent))
    with torch.no_grad():
        return inferencer.reward(inputs["images"], inputs["prompts"])[:, 0].tolist()


KINDS = {"hps_v2": hps_v2, "image_reward": image_reward, "hps_v3": hps_v3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    os.environ.setdefault("HPS_ROOT", str(args.out))  # hpsv2 creates its cache folder on import and score
    inputs = json.loads((args.out / "parity_inputs.json").read_text())
    scores = KINDS[args.kind](inputs, args.out)
    (args.out / "package_scores.json").write_text(json.dumps(scores))


if __name__ == "__main__":
    main()
