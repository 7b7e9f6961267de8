"""`python -m trainer.rewards convert`: fixture state dicts in the published key layout (the names and shapes
of the packages' own modules: open_clip's CLIP as hpsv2 holds it, image-reward's `ImageReward`; the parity test
checks these layouts against the packages themselves) go through the CLI, land where our rewards read them,
and a bad checkpoint is a one-line error naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainer.core import TrainerError
from trainer.rewards import RewardInput, build_reward
from trainer.rewards.__main__ import main as rewards_cli
from trainer.rewards.convert import convert_hps_v2, convert_image_reward

PROMPTS = ["a red square", "grass"]


GENERATOR = torch.Generator().manual_seed(0)


def random(*shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=GENERATOR) * 0.1


def pil_images(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 255, (60, 45), dtype=np.uint8)) for _ in range(count)]  # grey


# A pre-norm transformer block's tensors under the names a published layout gives them: the two norms, the fused
# query-key-value and output projections, the two MLP layers.
OPEN_CLIP_BLOCK = ("ln_1", "attn.in_proj", "attn.out_proj", "ln_2", "mlp.c_fc", "mlp.c_proj")
BLIP_VIT_BLOCK = ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")


def pre_norm_block(prefix: str, width: int, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    norm1, qkv, out, norm2, fc1, fc2 = (f"{prefix}.{name}" for name in names)
    # open_clip names the fused projection's tensors in_proj_weight / in_proj_bias, timm qkv.weight / qkv.bias
    qkv_weight, qkv_bias = (f"{qkv}_{t}" if qkv.endswith("in_proj") else f"{qkv}.{t}" for t in ("weight", "bias"))
    return {f"{norm1}.weight": 1 + random(width), f"{norm1}.bias": random(width),
            qkv_weight: random(3 * width, width), qkv_bias: random(3 * width),
            f"{out}.weight": random(width, width), f"{out}.bias": random(width),
            f"{norm2}.weight": 1 + random(width), f"{norm2}.bias": random(width),
            f"{fc1}.weight": random(4 * width, width), f"{fc1}.bias": random(4 * width),
            f"{fc2}.weight": random(width, 4 * width), f"{fc2}.bias": random(width)}


def hps_v2_state_dict(vision_width: int = 160, vision_layers: int = 2, patch: int = 14, grid: int = 16,
                      text_width: int = 128, text_layers: int = 2, context: int = 77, vocab: int = 49408,
                      embed: int = 24) -> dict[str, torch.Tensor]:
    """open_clip's `CLIP` (hpsv2's fork) in the published key layout; the defaults are the parity test's tiny
    model (reward_parity_package.HPS_V2_TINY)."""
    state = {"positional_embedding": random(context, text_width), "text_projection": random(text_width, embed),
             "logit_scale": torch.tensor(4.6052), "visual.class_embedding": random(vision_width),
             "visual.positional_embedding": random(grid * grid + 1, vision_width),
             "visual.proj": random(vision_width, embed), "visual.conv1.weight": random(vision_width, 3, patch, patch),
             "visual.ln_pre.weight": 1 + random(vision_width), "visual.ln_pre.bias": random(vision_width)}
    for layer in range(vision_layers):
        state |= pre_norm_block(f"visual.transformer.resblocks.{layer}", vision_width, OPEN_CLIP_BLOCK)
    state |= {"visual.ln_post.weight": 1 + random(vision_width), "visual.ln_post.bias": random(vision_width)}
    for layer in range(text_layers):
        state |= pre_norm_block(f"transformer.resblocks.{layer}", text_width, OPEN_CLIP_BLOCK)
    return state | {"token_embedding.weight": random(vocab, text_width), "ln_final.weight": 1 + random(text_width),
                    "ln_final.bias": random(text_width)}


@pytest.fixture(scope="module")
def hps_v2_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    state = hps_v2_state_dict(grid=4)
    path = tmp_path_factory.mktemp("hps-v2") / "HPS_v2_compressed.pt"
    torch.save({"state_dict": {key: tensor.half() for key, tensor in state.items()}}, path)  # as published: fp16
    return path, {key: tensor.half().float() for key, tensor in state.items()}


def test_hps_v2_converts_open_clip_weights_and_bpe_into_a_clip_directory(
        hps_v2_checkpoint: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path) -> None:
    from transformers import AutoTokenizer, CLIPModel

    path, state = hps_v2_checkpoint
    assert rewards_cli(["convert", "hps_v2", "--checkpoint", str(path), "--out", str(tmp_path / "out")]) == 0
    model = CLIPModel.from_pretrained(tmp_path / "out")
    config = model.config
    assert (config.vision_config.image_size, config.vision_config.num_attention_heads, config.projection_dim,
            config.text_config.num_attention_heads, config.text_config.hidden_act) == (56, 2, 24, 2, "gelu")
    layer = model.text_model.encoder.layers[1].self_attn
    in_proj = state["transformer.resblocks.1.attn.in_proj_weight"]
    assert torch.equal(layer.q_proj.weight, in_proj[:128]) and torch.equal(layer.v_proj.weight, in_proj[256:])
    assert torch.equal(model.visual_projection.weight, state["visual.proj"].T)
    assert torch.equal(model.vision_model.embeddings.position_embedding.weight, state["visual.positional_embedding"])
    assert torch.equal(model.vision_model.encoder.layers[0].layer_norm2.bias,
                       state["visual.transformer.resblocks.0.ln_2.bias"])
    # The ids open_clip's own tokenizer gives (read from the hpsv2 package): start, words, end of text.
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert tokenizer("a red square")["input_ids"] == [49406, 320, 736, 3999, 49407]
    reward = build_reward({"name": "hps_v2", "model_path": str(tmp_path / "out")})
    scores = reward.score(RewardInput(prompts=PROMPTS, images=pil_images(2))).scores
    assert all(-1 <= s <= 1 for s in scores) and scores[0] != scores[1]


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("visual.ln_post.weight"), "missing key visual.ln_post.weight"),
    (lambda s: s.pop("transformer.resblocks.0.ln_1.bias"), "missing key transformer.resblocks.0.ln_1.bias"),
    (lambda s: s.update({"transformer.resblocks.1.mlp.c_fc.weight": torch.zeros(8, 128)}),
     r"transformer.resblocks.1.mlp.c_fc.weight has shape \[8, 128\], expected \[512, 128\]"),
    (lambda s: s.update({"visual.transformer.resblocks.0.ls_1.gamma": torch.zeros(160)}),
     "unexpected key visual.transformer.resblocks.0.ls_1.gamma"),
    (lambda s: s.update({"visual.positional_embedding": torch.zeros(20, 160)}),
     "visual.positional_embedding has 20 positions, not 1 \\+ a square grid"),
])
def test_a_bad_hps_v2_checkpoint_names_the_key(edit, message: str, tmp_path: Path) -> None:
    state = hps_v2_state_dict(grid=2, text_layers=2, vocab=49408)
    edit(state)
    torch.save({"state_dict": state}, tmp_path / "bad.pt")
    with pytest.raises(TrainerError, match=f"^{tmp_path / 'bad.pt'}: {message}"):
        convert_hps_v2(tmp_path / "bad.pt", tmp_path / "out")


def test_a_checkpoint_that_is_no_file_or_no_state_dict_is_one_line_on_the_cli(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "garbage.pt").write_bytes(b"not a pickle")
    torch.save({"epoch": 3}, tmp_path / "epoch.pt")
    for checkpoint, message in ((tmp_path / "missing.pt", "not a file"),
                                (tmp_path / "garbage.pt", "not a readable checkpoint"),
                                (tmp_path / "epoch.pt", "not a state dict")):
        assert rewards_cli(["convert", "hps_v2", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o")]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and f"{checkpoint}: {message}" in error and "Traceback" not in error
    assert not (tmp_path / "o").exists()


def blip_bert_layer(prefix: str, width: int, intermediate: int, vision_width: int) -> dict[str, torch.Tensor]:
    state = {}
    for attention, key_width in (("attention", width), ("crossattention", vision_width)):
        state |= {f"{prefix}.{attention}.self.query.weight": random(width, width),
                  f"{prefix}.{attention}.self.query.bias": random(width),
                  f"{prefix}.{attention}.self.key.weight": random(width, key_width),
                  f"{prefix}.{attention}.self.key.bias": random(width),
                  f"{prefix}.{attention}.self.value.weight": random(width, key_width),
                  f"{prefix}.{attention}.self.value.bias": random(width),
                  f"{prefix}.{attention}.output.dense.weight": random(width, width),
                  f"{prefix}.{attention}.output.dense.bias": random(width),
                  f"{prefix}.{attention}.output.LayerNorm.weight": 1 + random(width),
                  f"{prefix}.{attention}.output.LayerNorm.bias": random(width)}
    return state | {f"{prefix}.intermediate.dense.weight": random(intermediate, width),
                    f"{prefix}.intermediate.dense.bias": random(intermediate),
                    f"{prefix}.output.dense.weight": random(width, intermediate),
                    f"{prefix}.output.dense.bias": random(width),
                    f"{prefix}.output.LayerNorm.weight": 1 + random(width),
                    f"{prefix}.output.LayerNorm.bias": random(width)}


def image_reward_state_dict(vision_width: int = 128, vision_layers: int = 2, grid: int = 14, text_width: int = 768,
                            text_layers: int = 1, intermediate: int = 64, positions: int = 40, vocab: int = 26,
                            embed: int = 256) -> dict[str, torch.Tensor]:
    """image-reward's `ImageReward` (BLIP_Pretrain + MLP) in the published key layout; the defaults are the parity
    test's tiny model (reward_parity_package.IMAGE_REWARD_VISION / _TEXT)."""
    vit, bert = "blip.visual_encoder", "blip.text_encoder"
    state = {f"{vit}.cls_token": random(1, 1, vision_width),
             f"{vit}.pos_embed": random(1, grid * grid + 1, vision_width),
             f"{vit}.patch_embed.proj.weight": random(vision_width, 3, 16, 16),
             f"{vit}.patch_embed.proj.bias": random(vision_width)}
    for layer in range(vision_layers):
        state |= pre_norm_block(f"{vit}.blocks.{layer}", vision_width, BLIP_VIT_BLOCK)
    state |= {f"{vit}.norm.weight": 1 + random(vision_width), f"{vit}.norm.bias": random(vision_width),
              f"{bert}.embeddings.position_ids": torch.arange(positions)[None],
              f"{bert}.embeddings.word_embeddings.weight": random(vocab, text_width),
              f"{bert}.embeddings.position_embeddings.weight": random(positions, text_width),
              f"{bert}.embeddings.LayerNorm.weight": 1 + random(text_width),
              f"{bert}.embeddings.LayerNorm.bias": random(text_width)}
    for layer in range(text_layers):
        state |= blip_bert_layer(f"{bert}.encoder.layer.{layer}", text_width, intermediate, vision_width)
    state |= {"blip.vision_proj.weight": random(embed, vision_width), "blip.vision_proj.bias": random(embed),
              "blip.text_proj.weight": random(embed, text_width), "blip.text_proj.bias": random(embed)}
    for index, (n_in, n_out) in zip((0, 2, 4, 6, 7), ((text_width, 1024), (1024, 128), (128, 64), (64, 16), (16, 1))):
        state |= {f"mlp.layers.{index}.weight": random(n_out, n_in), f"mlp.layers.{index}.bias": random(n_out)}
    return state


BERT_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "square", "grass"]


@pytest.fixture(scope="module")
def bert_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bert")
    (out / "vocab.txt").write_text("\n".join(BERT_WORDS) + "\n")
    return out


def test_image_reward_converts_blip_and_the_mlp_with_blips_added_tokens(bert_tokenizer: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from transformers import BlipForImageTextRetrieval, BlipProcessor

    state = image_reward_state_dict(vision_width=64, grid=2, text_width=128, vocab=len(BERT_WORDS) + 2)
    torch.save(state, tmp_path / "ImageReward.pt")
    assert rewards_cli(["convert", "image_reward", "--checkpoint", str(tmp_path / "ImageReward.pt"),
                        "--bert-tokenizer", str(bert_tokenizer), "--out", str(tmp_path / "out")]) == 0
    model = BlipForImageTextRetrieval.from_pretrained(tmp_path / "out")
    assert (model.config.vision_config.image_size, model.config.vision_config.layer_norm_eps,
            model.config.text_config.encoder_hidden_size, model.config.text_config.num_attention_heads) == (32, 1e-6,
                                                                                                            64, 2)
    assert torch.equal(model.vision_model.encoder.layers[1].self_attn.qkv.weight,
                       state["blip.visual_encoder.blocks.1.attn.qkv.weight"])
    assert torch.equal(model.vision_model.embeddings.class_embedding, state["blip.visual_encoder.cls_token"])
    assert torch.equal(model.text_encoder.encoder.layer[0].crossattention.self.key.weight,
                       state["blip.text_encoder.encoder.layer.0.crossattention.self.key.weight"])
    head = load_file(tmp_path / "out" / "reward_head.safetensors")
    assert torch.equal(head["6.weight"], state["mlp.layers.6.weight"])
    tokenizer = BlipProcessor.from_pretrained(tmp_path / "out").tokenizer
    assert tokenizer.convert_tokens_to_ids(["[DEC]", "[ENC]"]) == [len(BERT_WORDS), len(BERT_WORDS) + 1]
    assert tokenizer("a red square")["input_ids"] == [2, 5, 6, 7, 3]
    reward = build_reward({"name": "image_reward", "model_path": str(tmp_path / "out")})
    scores = reward.score(RewardInput(prompts=PROMPTS, images=pil_images(2))).scores
    assert len(scores) == 2 and scores[0] != scores[1]


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("blip.text_encoder.encoder.layer.0.crossattention.self.value.bias"),
     "missing key blip.text_encoder.encoder.layer.0.crossattention.self.value.bias"),
    (lambda s: s.pop("mlp.layers.7.weight"), "missing key mlp.layers.7.weight"),
    (lambda s: s.update({"blip.visual_encoder.blocks.1.attn.qkv.weight": torch.zeros(64, 64)}),
     r"blip.visual_encoder.blocks.1.attn.qkv.weight has shape \[64, 64\], expected \[192, 64\]"),
    (lambda s: s.update({"blip.visual_encoder.blocks.3.norm1.weight": torch.zeros(64)}),
     r"missing keys blip.visual_encoder.blocks.2.\*"),
    (lambda s: s.update({"mlp.layers.0.weight": torch.zeros(1024, 64)}),
     r"mlp.layers.0.weight has shape \[1024, 64\], expected \[1024, 128\]"),
])
def test_a_bad_image_reward_checkpoint_names_the_key(edit, message: str, bert_tokenizer: Path, tmp_path: Path) -> None:
    state = image_reward_state_dict(vision_width=64, grid=2, text_width=128, vocab=len(BERT_WORDS) + 2)
    edit(state)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(TrainerError, match=f"^{tmp_path / 'bad.pt'}: {message}"):
        convert_image_reward(tmp_path / "bad.pt", tmp_path / "out", bert_tokenizer)


def test_image_reward_needs_the_tokenizer_its_embeddings_were_trained_with(bert_tokenizer: Path,
                                                                         tmp_path: Path) -> None:
    torch.save(image_reward_state_dict(vision_width=64, grid=2, text_width=128, vocab=30524), tmp_path / "ir.pt")
    with pytest.raises(TrainerError, match=r"11 tokens with BLIP's \[DEC\] and \[ENC\], the checkpoint's .* has 30524"):
        convert_image_reward(tmp_path / "ir.pt", tmp_path / "out", bert_tokenizer)


def hps_v3_state_dict(vocab: int, hidden: int = 32, intermediate: int = 64, layers: int = 2, kv_width: int = 16,
                      vision_width: int = 16, vision_layers: int = 1, vision_mlp: int = 32) -> dict[str, torch.Tensor]:
    """hpsv3's `Qwen2VLRewardModelBT` (transformers 4.45 names) in the published key layout; the defaults are the
    parity test's tiny model (reward_parity_package.HPS_V3_TINY)."""
    merged = 4 * vision_width  # 2 x 2 patches merged
    state = {"visual.patch_embed.proj.weight": random(vision_width, 3, 2, 14, 14)}
    for block in range(vision_layers):
        prefix = f"visual.blocks.{block}"
        state |= {f"{prefix}.norm1.weight": 1 + random(vision_width), f"{prefix}.norm1.bias": random(vision_width),
                  f"{prefix}.norm2.weight": 1 + random(vision_width), f"{prefix}.norm2.bias": random(vision_width),
                  f"{prefix}.attn.qkv.weight": random(3 * vision_width, vision_width),
                  f"{prefix}.attn.qkv.bias": random(3 * vision_width),
                  f"{prefix}.attn.proj.weight": random(vision_width, vision_width),
                  f"{prefix}.attn.proj.bias": random(vision_width),
                  f"{prefix}.mlp.fc1.weight": random(vision_mlp, vision_width),
                  f"{prefix}.mlp.fc1.bias": random(vision_mlp),
                  f"{prefix}.mlp.fc2.weight": random(vision_width, vision_mlp),
                  f"{prefix}.mlp.fc2.bias": random(vision_width)}
    state |= {"visual.merger.ln_q.weight": 1 + random(vision_width), "visual.merger.ln_q.bias": random(vision_width),
              "visual.merger.mlp.0.weight": random(merged, merged), "visual.merger.mlp.0.bias": random(merged),
              "visual.merger.mlp.2.weight": random(hidden, merged), "visual.merger.mlp.2.bias": random(hidden),
              "model.embed_tokens.weight": random(vocab, hidden)}
    for layer in range(layers):
        prefix = f"model.layers.{layer}"
        state |= {f"{prefix}.self_attn.q_proj.weight": random(hidden, hidden),
                  f"{prefix}.self_attn.q_proj.bias": random(hidden),
                  f"{prefix}.self_attn.k_proj.weight": random(kv_width, hidden),
                  f"{prefix}.self_attn.k_proj.bias": random(kv_width),
                  f"{prefix}.self_attn.v_proj.weight": random(kv_width, hidden),
                  f"{prefix}.self_attn.v_proj.bias": random(kv_width),
                  f"{prefix}.self_attn.o_proj.weight": random(hidden, hidden),
                  f"{prefix}.mlp.gate_proj.weight": random(intermediate, hidden),
                  f"{prefix}.mlp.up_proj.weight": random(intermediate, hidden),
                  f"{prefix}.mlp.down_proj.weight": random(hidden, intermediate),
                  f"{prefix}.input_layernorm.weight": 1 + random(hidden),
                  f"{prefix}.post_attention_layernorm.weight": 1 + random(hidden)}
    state |= {"model.norm.weight": 1 + random(hidden), "lm_head.weight": random(vocab, hidden)}
    for index, (n_in, n_out) in zip((0, 3, 5), ((hidden, 1024), (1024, 16), (16, 2))):
        state |= {f"rm_head.{index}.weight": random(n_out, n_in), f"rm_head.{index}.bias": random(n_out)}
    return state


# A stand-in for the package's module (ours, not the trained instruction): the converter reads these two strings.
FAKE_HPSV3_SOURCE = '''
INSTRUCTION = """Rate {{carefully}} the image for: {text_prompt}
"""
prompt_with_special_token = """Score: <|Reward|>
END
"""
'''


@pytest.fixture(scope="module")
def hps_v3_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, dict[str, torch.Tensor]]:
    """A Qwen2-VL base directory (tiny config, the tiny Qwen tokenizer), a fake hpsv3 package folder, and a
    checkpoint in the package's layout whose vocabulary is the tokenizer plus `<|Reward|>`."""
    from safetensors.torch import save_file
    from transformers import (AutoTokenizer, Qwen2VLConfig, Qwen2VLImageProcessor, Qwen2VLProcessor,
                              Qwen2VLVideoProcessor)

    from data_engine.model_refs import tiny_model_path
    from trainer.tiny_models import QWEN_CHAT_TEMPLATE

    root = tmp_path_factory.mktemp("hps-v3")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path("qwen3vl"))
    Qwen2VLConfig(text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
                               "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
                               "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                                   "mrope_section": [2, 3, 3]}},
                  vision_config={"depth": 1, "embed_dim": 16, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2,
                                 "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
                  tie_word_embeddings=False).save_pretrained(root / "base")
    Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(), video_processor=Qwen2VLVideoProcessor(),
                     tokenizer=tokenizer, chat_template=QWEN_CHAT_TEMPLATE).save_pretrained(root / "base")
    (root / "hpsv3" / "dataset").mkdir(parents=True)
    (root / "hpsv3" / "dataset" / "data_collator_qwen.py").write_text(FAKE_HPSV3_SOURCE)
    state = hps_v3_state_dict(vocab=len(tokenizer) + 1)
    save_file(state, root / "HPSv3.safetensors")
    return root / "HPSv3.safetensors", root / "base", root / "hpsv3", state


def test_hps_v3_converts_the_reward_model_with_its_token_head_and_instruction(hps_v3_inputs, tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    checkpoint, base, package, state = hps_v3_inputs
    assert rewards_cli(["convert", "hps_v3", "--checkpoint", str(checkpoint), "--base-model", str(base),
                        "--hpsv3-package", str(package), "--out", str(tmp_path / "out")]) == 0
    # the package's INSTRUCTION.format(text_prompt=...) + prompt_with_special_token, with our field
    assert (tmp_path / "out" / "reward_prompt.txt").read_text() == (
        "Rate {carefully} the image for: {prompt}\nScore: <|Reward|>\nEND\n")
    model = Qwen2VLForConditionalGeneration.from_pretrained(tmp_path / "out")
    assert torch.equal(model.model.language_model.layers[1].self_attn.k_proj.bias,
                       state["model.layers.1.self_attn.k_proj.bias"])
    assert torch.equal(model.model.visual.merger.mlp[2].weight, state["visual.merger.mlp.2.weight"])
    assert torch.equal(model.lm_head.weight, state["lm_head.weight"])
    assert torch.equal(load_file(tmp_path / "out" / "rm_head.safetensors")["3.weight"], state["rm_head.3.weight"])
    tokenizer = AutoProcessor.from_pretrained(tmp_path / "out").tokenizer
    assert tokenizer.convert_tokens_to_ids("<|Reward|>") == len(tokenizer) - 1
    reward = build_reward({"name": "hps_v3", "model_path": str(tmp_path / "out")})
    scores = reward.score(RewardInput(prompts=PROMPTS, images=pil_images(2))).scores
    assert len(scores) == 2 and scores[0] != scores[1]


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("visual.merger.ln_q.bias"), "missing key visual.merger.ln_q.bias"),
    (lambda s: s.update({"model.layers.0.mlp.up_proj.weight": torch.zeros(48, 32)}),
     r"model.layers.0.mlp.up_proj.weight has shape \[48, 32\], expected \[64, 32\] from .*base/config.json"),
    (lambda s: s.update({"model.layers.2.input_layernorm.weight": torch.zeros(32)}),
     "unexpected key model.layers.2.input_layernorm.weight"),
    (lambda s: s.update({"model.embed_tokens.weight": torch.zeros(10, 32)}),
     "its tokenizer with <|Reward|> has 151670 tokens, the checkpoint's model.embed_tokens.weight 10 rows"),
])
def test_a_bad_hps_v3_checkpoint_names_the_key(edit, message: str, hps_v3_inputs, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from trainer.rewards.convert import convert_hps_v3

    _, base, package, state = hps_v3_inputs
    state = dict(state)
    edit(state)
    save_file(state, tmp_path / "bad.safetensors")
    with pytest.raises(TrainerError, match=message.replace("|", r"\|")):
        convert_hps_v3(tmp_path / "bad.safetensors", tmp_path / "out", base, package)


def test_hps_v3_needs_the_packages_instruction(hps_v3_inputs, tmp_path: Path) -> None:
    from trainer.rewards.convert import convert_hps_v3

    checkpoint, base, _, _ = hps_v3_inputs
    with pytest.raises(TrainerError, match="has no dataset/data_collator_qwen.py"):
        convert_hps_v3(checkpoint, tmp_path / "out", base, tmp_path)
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "data_collator_qwen.py").write_text('INSTRUCTION = "Rate {text_prompt}"\n')
    with pytest.raises(TrainerError, match="no string prompt_with_special_token"):
        convert_hps_v3(checkpoint, tmp_path / "out", base, tmp_path)


def test_the_cli_names_the_option_a_kind_needs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.save(image_reward_state_dict(vision_width=64, grid=2, text_width=128), tmp_path / "ir.pt")
    for kind, option in (("image_reward", "--bert-tokenizer"), ("hps_v3", "--base-model")):
        assert rewards_cli(["convert", kind, "--checkpoint", str(tmp_path / "ir.pt"), "--out", str(tmp_path)]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and f"{kind}: pass {option} DIR" in error
