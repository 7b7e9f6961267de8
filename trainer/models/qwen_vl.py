"""Qwen3-VL through transformers: loading, chat formatting with assistant-only targets, M-RoPE position ids.

The model is loaded from a local directory (the 8B in production, the tiny model from `make tiny-models` in
tests); nothing is downloaded. A `qa_conversation` row becomes a `ChatExample`: token ids in Qwen3-VL's chat
format (ChatML turns, one `<|vision_start|><|image_pad|>*n<|vision_end|>` run per image), next-token targets
that are -100 except where the next token belongs to an assistant turn (its text and `<|im_end|>`), and
Qwen-VL's multi-axis (temporal, height, width) position ids for that sample alone, so packing can put
samples side by side without changing any of their positions.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

IGNORE = -100
IMAGE_PAD = "<|image_pad|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"


@dataclass
class ChatExample:
    input_ids: torch.Tensor  # [L] int64
    targets: torch.Tensor  # [L] int64: the next token where it is an assistant token, else -100
    mrope_positions: torch.Tensor  # [3, L] int64
    pixel_values: torch.Tensor | None  # [patches, C*T*P*P]
    image_grid_thw: torch.Tensor | None  # [images, 3]
    general_domain: bool
    task: str

    @property
    def length(self) -> int:
        return int(self.input_ids.numel())


def load_model(path: Path, dtype: torch.dtype, attn_implementation: str) -> Any:
    from transformers import Qwen3VLForConditionalGeneration
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a per-load bar would interleave with the training logs
    return Qwen3VLForConditionalGeneration.from_pretrained(str(path), dtype=dtype,
                                                           attn_implementation=attn_implementation)


ARCHITECTURES_DIR = Path(__file__).parent / "architectures"  # config.json of production models, for dry runs


def meta_model(path: Path) -> Any:
    """The model of `path` (its config.json, else the bundled architecture of the same directory name) on the
    meta device: every parameter shaped, none allocated."""
    from transformers import AutoConfig, Qwen3VLForConditionalGeneration

    source = path if (path / "config.json").is_file() else ARCHITECTURES_DIR / path.name
    if not (source / "config.json").is_file():
        known = ", ".join(sorted(entry.name for entry in ARCHITECTURES_DIR.iterdir()))
        raise FileNotFoundError(f"{path}: no config.json, and no bundled architecture of that name (known: {known})")
    with torch.device("meta"):
        return Qwen3VLForConditionalGeneration._from_config(AutoConfig.from_pretrained(str(source)))


def load_processor(path: Path, min_pixels: int | None, max_pixels: int | None) -> Any:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(path))
    size = dict(processor.image_processor.size)
    if min_pixels is not None:
        size["shortest_edge"] = min_pixels
    if max_pixels is not None:
        size["longest_edge"] = max_pixels
    processor.image_processor.size = size
    return processor


def parameter_groups(model: Any) -> dict[str, list[torch.nn.Parameter]]:
    """`vision` (the ViT), `merger` (vision -> text projections, deepstack mergers included), `language_model`."""
    visual = model.model.visual
    merger_ids = {id(p) for name, p in visual.named_parameters() if name.startswith(("merger.", "deepstack_"))}
    groups: dict[str, list[torch.nn.Parameter]] = {"vision": [], "merger": [], "language_model": []}
    visual_ids = {id(p) for p in visual.parameters()}
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        if id(parameter) in merger_ids:
            groups["merger"].append(parameter)
        elif id(parameter) in visual_ids:
            groups["vision"].append(parameter)
        else:
            groups["language_model"].append(parameter)
    return groups


def decode_images(images: Sequence[dict[str, Any]]) -> list[Image.Image]:
    decoded = []
    for index, image in enumerate(images or []):
        if image.get("bytes") is None:
            raise ValueError(f"image_uri: image {index} is referenced by URI only; QA shards must embed bytes")
        decoded.append(Image.open(io.BytesIO(image["bytes"])).convert("RGB"))
    return decoded


def to_chat_messages(messages: Sequence[dict[str, Any]], images: Sequence[Image.Image]) -> list[dict[str, Any]]:
    """Shard messages (image parts refer to `images` by index) -> transformers chat-template messages."""
    chat = []
    for message in messages:
        content = []
        for part in message["content"]:
            if part["type"] == "image":
                content.append({"type": "image", "image": images[part["image_index"]]})
            else:
                content.append({"type": "text", "text": part["text"]})
        chat.append({"role": message["role"], "content": content})
    return chat


def mrope_positions(input_ids: torch.Tensor, image_token_id: int, image_grid_thw: torch.Tensor | None,
                    merge_size: int) -> torch.Tensor:
    """Qwen3-VL position ids [3, L] for one sample: text tokens advance all three axes together; an image's
    tokens take (t, row, column) offsets from the position where the image starts, and the text after it
    continues at that start + max(rows, columns)."""
    ids = input_ids.tolist()
    axes: list[torch.Tensor] = []
    position, index, image = 0, 0, 0
    while index < len(ids):
        if ids[index] == image_token_id:
            t, h, w = (int(v) for v in image_grid_thw[image])
            rows, cols = h // merge_size, w // merge_size
            grid_t, grid_h, grid_w = torch.meshgrid(torch.arange(t), torch.arange(rows), torch.arange(cols),
                                                    indexing="ij")
            axes.append(torch.stack([grid_t, grid_h, grid_w]).reshape(3, -1) + position)
            index += t * rows * cols
            position += max(rows, cols)
            image += 1
        else:
            end = index
            while end < len(ids) and ids[end] != image_token_id:
                end += 1
            axes.append(torch.arange(position, position + end - index).expand(3, -1))
            position += end - index
            index = end
    return torch.cat(axes, dim=1)


class ChatFormatter:
    """Turns (messages, images) into a `ChatExample` with the processor's tokenizer and image processor."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(IMAGE_PAD)
        self.merge_size = processor.image_processor.merge_size

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def format(self, messages: Sequence[dict[str, Any]], images: Sequence[Image.Image], *, general_domain: bool,
               task: str) -> ChatExample:
        pixel_values = image_grid_thw = None
        if images:
            vision = self.processor.image_processor(images=list(images), return_tensors="pt")
            pixel_values, image_grid_thw = vision["pixel_values"], vision["image_grid_thw"]
        ids: list[int] = []
        is_answer: list[bool] = []
        image = 0
        for message in messages:
            answer = message["role"] == "assistant"
            pieces: list[tuple[list[int], bool]] = [(self._encode(f"<|im_start|>{message['role']}\n"), False)]
            for part in message["content"]:
                if part["type"] == "image":
                    tokens = int(image_grid_thw[image].prod()) // self.merge_size**2
                    pieces.append((self._encode(VISION_START) + [self.image_token_id] * tokens
                                   + self._encode(VISION_END), False))
                    image += 1
                else:
                    pieces.append((self._encode(part["text"]), answer))
            pieces += [(self._encode("<|im_end|>"), answer), (self._encode("\n"), False)]
            for tokens, trained in pieces:
                ids += tokens
                is_answer += [trained] * len(tokens)
        input_ids = torch.tensor(ids, dtype=torch.long)
        answer_mask = torch.tensor(is_answer[1:] + [False])
        targets = torch.where(answer_mask, torch.roll(input_ids, -1), torch.full_like(input_ids, IGNORE))
        return ChatExample(input_ids=input_ids, targets=targets,
                           mrope_positions=mrope_positions(input_ids, self.image_token_id, image_grid_thw,
                                                           self.merge_size),
                           pixel_values=pixel_values, image_grid_thw=image_grid_thw,
                           general_domain=general_domain, task=task)
