"""MLLM spatial SFT (report 3.2, Table 2): Qwen3-VL, packed samples, loss = SFT + kd_weight * KL.

Micro-batches are packs: greedy first-fit-decreasing bins of at most `max_length` tokens over a data window,
one row of concatenated samples with per-sample position ids (text positions restart at 0; M-RoPE positions
computed per sample) and attention confined to each sample (a block-diagonal causal mask for SDPA/eager on
CPU, `cu_seqlens` varlen kwargs for flash attention on GPU).

Loss = SFT + kd_weight * KL, each a mean over tokens of the whole global batch (every pack of the step on
every rank, `StepTotals`): SFT is the cross-entropy summed over assistant tokens divided by the step's
assistant tokens; KL (trainer/objectives/distillation.py) is the layer-averaged KL summed over the response
tokens of `general_domain` samples divided by the step's such tokens. So every response token weighs the
same whatever pack or micro-batch it lands in: packing and gradient accumulation do not change the
objective. The teacher is a frozen copy of the base model; its forward returns hidden states only (its
LM head maps just the selected tokens of the `kd_layers`).

Datasets are `qa_conversation` shards or `caption` shards; a caption row becomes one turn "image + the
captioning instruction of a caption type and language -> that caption", the type and language drawn with
the probabilities stored in the row (trainer/captions.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from data_engine.captioning.prompts import PromptFileError, load_prompt_set
from data_engine.model_refs import resolve_model_path
from trainer.captions import caption_sft_messages
from trainer.core import ExampleError, Sample, StepTotals, Task, TaskConfig, TrainerError, register_task
from trainer.evaluation.spatial_qa import answer_metric, score_answer, summarise
from trainer.models import qwen_vl
from trainer.objectives.distillation import layer_kl
from trainer.packing import block_diagonal_causal_mask, cu_seqlens, plan_packs, restart_positions
from trainer.synthetic_qa import write_spatial_qa  # noqa: F401  (registers the synthetic QA datasets)


class MllmSftConfig(TaskConfig):
    model_path: str  # a local directory, or "tiny:qwen3vl" for the model from `make tiny-models`
    max_length: int = Field(8192, ge=16)
    packing: bool = True
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    image_min_pixels: int | None = Field(None, ge=1)
    image_max_pixels: int | None = Field(None, ge=1)
    kd_weight: float = Field(10.0, ge=0)  # lambda; 0 turns distillation (and the teacher) off
    # Decoder layer indices (0-based), the last layer excluded: transformers returns its state already normed.
    kd_layers: list[int] = Field(default_factory=lambda: [0])
    eval_max_new_tokens: int = Field(16, ge=1)
    # Caption shards train as "image + caption instruction -> caption": the instruction wording of each
    # drawn caption type and language comes from this prompt set (data_engine/prompts/).
    caption_prompts: str = "caption/v1"


def check_kd_layers(config: MllmSftConfig, layers: int) -> None:
    bad = [layer for layer in config.kd_layers if not 0 <= layer < layers]
    if bad:
        raise TrainerError(f"task.config.kd_layers: {bad} out of range (the model has {layers} layers)")
    if config.kd_weight > 0 and layers - 1 in config.kd_layers:
        raise TrainerError(f"task.config.kd_layers: {layers - 1} is the last decoder layer, whose hidden state "
                           f"transformers returns already through the final norm; choose from 0-{layers - 2}")


@register_task("mllm_sft")
class MllmSftTask(Task):
    schema = "qa_conversation"
    extra_schemas = ("caption",)
    config_model = MllmSftConfig
    config: MllmSftConfig

    def __init__(self, config: MllmSftConfig, context: Any, micro_batch_size: int = 1) -> None:
        super().__init__(config, context, micro_batch_size)
        if micro_batch_size != 1:
            raise TrainerError("engine.micro_batch_size: the MLLM packs samples into one row; set it to 1")
        self.model_path = resolve_model_path(config.model_path)
        self.processor = qwen_vl.load_processor(self.model_path, config.image_min_pixels, config.image_max_pixels)
        self.formatter = qwen_vl.ChatFormatter(self.processor)
        try:
            self.caption_prompts = load_prompt_set(config.caption_prompts)
        except PromptFileError as exc:
            raise TrainerError(f"task.config.caption_prompts: {exc}") from None
        self.teacher: Any = None

    def _load(self) -> Any:
        model = qwen_vl.load_model(self.model_path, self.context.dtype, self.config.attn_implementation)
        return model.to(self.context.device)

    def build_model(self) -> Any:
        model = self._load().train()
        check_kd_layers(self.config, model.config.text_config.num_hidden_layers)
        if self.config.kd_weight > 0:
            self.teacher = self._load().eval().requires_grad_(False)
        return model

    @classmethod
    def meta_model(cls, config: MllmSftConfig) -> Any:
        try:
            model = qwen_vl.meta_model(resolve_model_path(config.model_path))
        except FileNotFoundError as exc:
            raise TrainerError(f"task.config.model_path: {exc}") from None
        check_kd_layers(config, model.config.text_config.num_hidden_layers)
        return model

    @classmethod
    def parameter_groups(cls, model: Any) -> dict[str, list[torch.nn.Parameter]]:
        return qwen_vl.parameter_groups(model)

    def prepare(self, sample: Sample) -> qwen_vl.ChatExample:
        row = sample.row
        if "captions" in row:  # a caption shard row; caption type and language drawn per sample
            key, messages = caption_sft_messages(row, sample.seed, self.caption_prompts)
            image_refs, task = [{"bytes": row["image_bytes"]}], f"caption:{key}"
        else:
            messages, image_refs, task = row["messages"], row["images"], row["task"] or "unknown"
        try:
            images = qwen_vl.decode_images(image_refs)
        except (ValueError, OSError) as exc:
            raise ExampleError(f"bad_image: row {row['id']}: {exc}") from None
        example = self.formatter.format(messages, images, general_domain=sample.general_domain, task=task)
        if not bool((example.targets != qwen_vl.IGNORE).any()):
            raise ExampleError(f"no_answer: row {row['id']} has no assistant tokens to train on")
        if example.length > self.config.max_length:
            raise ExampleError(f"too_long: row {row['id']} has {example.length} tokens > {self.config.max_length}")
        return example

    def plan_micro_batches(self, examples: Sequence[qwen_vl.ChatExample]) -> list[list[int]]:
        if not self.config.packing:
            return [[index] for index in range(len(examples))]
        return plan_packs([example.length for example in examples], self.config.max_length)

    def collate(self, examples: Sequence[qwen_vl.ChatExample]) -> dict[str, Any]:
        lengths = [example.length for example in examples]
        with_images = [example for example in examples if example.pixel_values is not None]
        text_positions = restart_positions(lengths)
        mrope = torch.cat([example.mrope_positions for example in examples], dim=1)
        general = torch.cat([torch.full((example.length,), example.general_domain) for example in examples])
        targets = torch.cat([example.targets for example in examples])
        return {
            "input_ids": torch.cat([example.input_ids for example in examples])[None],
            "targets": targets[None],
            "position_ids": torch.cat([text_positions[None], mrope])[:, None],  # [4, 1, L]: text, t, h, w
            "pixel_values": torch.cat([e.pixel_values for e in with_images]) if with_images else None,
            "image_grid_thw": torch.cat([e.image_grid_thw for e in with_images]) if with_images else None,
            "seq_lengths": torch.tensor(lengths),
            "kd_tokens": ((targets != qwen_vl.IGNORE) & general)[None],
        }

    def _attention_inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        lengths = batch["seq_lengths"].tolist()
        if self.config.attn_implementation == "flash_attention_2":
            boundaries = cu_seqlens(lengths).to(self.context.device)
            longest = max(lengths)
            return {"attention_mask": None, "cu_seq_lens_q": boundaries, "cu_seq_lens_k": boundaries,
                    "max_length_q": longest, "max_length_k": longest}
        return {"attention_mask": block_diagonal_causal_mask(lengths, self.context.dtype, self.context.device)}

    def _model_inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"],
                "pixel_values": batch["pixel_values"], "image_grid_thw": batch["image_grid_thw"], "use_cache": False,
                **self._attention_inputs(batch)}

    def forward(self, model: Any, batch: dict[str, Any], *, hidden_states: bool = False,
                logits_to_keep: int | torch.Tensor = 0) -> Any:
        """One packed forward pass; `logits_to_keep` (token indices) limits the LM head to those tokens."""
        return model(**self._model_inputs(batch), output_hidden_states=hidden_states, logits_to_keep=logits_to_keep)

    def teacher_hidden_states(self, batch: dict[str, Any]) -> tuple[torch.Tensor, ...]:
        """The teacher's per-layer hidden states, without its LM head: full-vocabulary logits of every token of
        an 8192-token pack would take about 2.5 GB in bf16 and go unused."""
        with torch.no_grad():
            return self.teacher.model(**self._model_inputs(batch), output_hidden_states=True).hidden_states

    def _vision_keepalive(self, model: Any, batch: dict[str, Any]) -> torch.Tensor:
        """A pack without images still runs the vision tower (weight 0) so every ZeRO rank reduces the same
        gradients."""
        if batch["pixel_values"] is not None:
            return torch.zeros((), device=self.context.device)
        visual = getattr(model, "module", model).model.visual
        merge = visual.spatial_merge_size
        patch_dim = visual.patch_embed.proj.weight[0].numel()
        grid = torch.tensor([[1, merge, merge]], device=self.context.device)
        pixels = torch.zeros(merge * merge, patch_dim, device=self.context.device, dtype=self.context.dtype)
        output = visual(pixels, grid_thw=grid)
        return 0.0 * sum(tensor.float().sum() for tensor in [output.pooler_output, *output.deepstack_features])

    def loss_counts(self, batch: dict[str, Any]) -> dict[str, float]:
        return {"sft": float((batch["targets"] != qwen_vl.IGNORE).sum()), "kl": float(batch["kd_tokens"].sum())}

    def compute_loss(self, model: Any, batch: dict[str, Any], totals: StepTotals | None = None) -> dict[str, torch.Tensor]:
        totals = self.step_totals(batch, totals)
        use_kd = self.teacher is not None
        # Only tokens with a target go through the LM head: a 152K vocabulary times 8192 tokens would not fit.
        trained = (batch["targets"][0] != qwen_vl.IGNORE).nonzero()[:, 0]
        outputs = self.forward(model, batch, hidden_states=use_kd, logits_to_keep=trained)
        token_sum = F.cross_entropy(outputs.logits[0].float(), batch["targets"][0, trained], reduction="sum")
        sft = totals.share("sft", token_sum)
        losses = {"sft": sft}
        loss = sft + self._vision_keepalive(model, batch)
        if use_kd:
            kl = totals.share("kl", self.kl_term(outputs.hidden_states, self.teacher_hidden_states(batch),
                                                 batch["kd_tokens"]))
            losses["kl"] = kl
            loss = loss + self.config.kd_weight * kl
        losses["loss"] = loss
        return {key: value if key == "loss" else value.detach() for key, value in losses.items()}

    def kl_term(self, student_hidden: Sequence[torch.Tensor], teacher_hidden: Sequence[torch.Tensor],
                selected: torch.Tensor) -> torch.Tensor:
        norm, head = self.teacher.model.language_model.norm, self.teacher.lm_head
        return layer_kl(student_hidden, teacher_hidden, self.config.kd_layers, selected,
                        lambda hidden: head(norm(hidden)))

    @torch.no_grad()
    def evaluate(self, model: Any, samples: Iterable[Sample]) -> dict[str, Any]:
        model.eval()
        records = []
        for sample in samples:
            row = sample.row
            if "messages" not in row:
                raise TrainerError(f"{sample.dataset}: evaluation scores QA shards; caption rows have no "
                                   "reference answer")
            metadata = json.loads(row["metadata"] or "{}")
            *prompt, answer = row["messages"]
            if answer["role"] != "assistant":
                raise ExampleError(f"row {row['id']}: the last message is not the assistant's answer")
            reference = "".join(part["text"] or "" for part in answer["content"] if part["type"] == "text")
            chat = qwen_vl.to_chat_messages(prompt, qwen_vl.decode_images(row["images"]))
            inputs = self.processor.apply_chat_template(chat, tokenize=True, return_dict=True, return_tensors="pt",
                                                        add_generation_prompt=True).to(self.context.device)
            generated = model.generate(**inputs, max_new_tokens=self.config.eval_max_new_tokens, do_sample=False)
            prediction = self.processor.tokenizer.decode(generated[0, inputs["input_ids"].shape[1]:],
                                                         skip_special_tokens=True)
            metric = answer_metric(metadata, row["id"])
            records.append({"id": row["id"], "task": row["task"] or "unknown", "prediction": prediction,
                            "reference": reference, "metric": metric,
                            "score": score_answer(prediction, reference, metric)})
        return summarise(records)

    def export(self, model: Any, out_dir: Path) -> None:
        model.save_pretrained(out_dir, safe_serialization=True)
        self.processor.save_pretrained(out_dir)
