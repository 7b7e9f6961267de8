"""MLLM task on the tiny Qwen3-VL: chat formatting, packing goldens, packed == unpacked, KL distillation."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from trainer.core import RunContext, Sample, StepTotals, TrainerError
from trainer.models.qwen_vl import IGNORE, decode_images, to_chat_messages
from trainer.objectives.mllm_sft import MllmSftConfig, MllmSftTask
from trainer.packing import (PackingError, block_diagonal_causal_mask, cu_seqlens, plan_packs,
                             restart_positions)
from trainer.synthetic_qa import synthetic_row


def test_plan_packs_golden() -> None:
    # First fit decreasing: 8 -> A, 6 -> B, 5 -> C, 3 -> B (room 4), 2 -> A (room 2).
    assert plan_packs([5, 3, 8, 2, 6], 10) == [[2, 3], [1, 4], [0]]
    assert plan_packs([4, 4, 4], 8) == [[0, 1], [2]]
    with pytest.raises(PackingError, match="sample 1 has 11 tokens"):
        plan_packs([3, 11], 10)


def test_cu_seqlens_positions_and_mask_golden() -> None:
    assert cu_seqlens([3, 2, 4]).tolist() == [0, 3, 5, 9]
    assert cu_seqlens([3, 2, 4]).dtype == torch.int32
    assert restart_positions([2, 3]).tolist() == [0, 1, 0, 1, 2]
    allowed = block_diagonal_causal_mask([2, 1, 2], torch.float32)[0, 0] == 0
    assert allowed.int().tolist() == [[1, 0, 0, 0, 0],
                                      [1, 1, 0, 0, 0],
                                      [0, 0, 1, 0, 0],
                                      [0, 0, 0, 1, 0],
                                      [0, 0, 0, 1, 1]]


@pytest.fixture(scope="module")
def task() -> MllmSftTask:
    context = RunContext(rank=0, world_size=1, device=torch.device("cpu"), dtype=torch.float32, out_dir=Path("."))
    config = MllmSftConfig(model_path="tiny:qwen3vl", max_length=512, image_min_pixels=1024,
                           image_max_pixels=16384, kd_layers=[0])
    return MllmSftTask(config, context)


@pytest.fixture(scope="module")
def model(task: MllmSftTask):
    torch.manual_seed(0)
    return task.build_model().eval()


def sample(flavour: str, number: int, general: bool = False) -> Sample:
    return Sample(row=synthetic_row(flavour, 0, number), dataset=flavour, general_domain=general, seed=number)


def two_image_sample() -> Sample:
    row = synthetic_row("spatial_qa", 0, 1)
    row["images"] = row["images"] + synthetic_row("general_qa", 0, 2)["images"]
    row["messages"][0]["content"].insert(1, {"type": "image", "text": None, "image_index": 1})
    return Sample(row=row, dataset="spatial", general_domain=False, seed=0)


def test_chat_format_matches_the_chat_template_and_trains_only_answers(task: MllmSftTask) -> None:
    item = two_image_sample()
    example = task.prepare(item)
    images = decode_images(item.row["images"])
    reference = task.processor.apply_chat_template(to_chat_messages(item.row["messages"], images), tokenize=True,
                                                   return_dict=True, return_tensors="pt")
    assert example.input_ids.tolist() == reference["input_ids"][0].tolist()
    assert torch.equal(example.pixel_values, reference["pixel_values"])
    answer = item.row["messages"][1]["content"][0]["text"]
    trained = example.targets[example.targets != IGNORE]
    assert task.processor.tokenizer.decode(trained) == f"{answer}<|im_end|>"


def test_mrope_positions_match_qwen3vl_rope_index(task: MllmSftTask, model) -> None:
    item = two_image_sample()
    example = task.prepare(item)
    images = decode_images(item.row["images"])
    reference = task.processor.apply_chat_template(to_chat_messages(item.row["messages"], images), tokenize=True,
                                                   return_dict=True, return_tensors="pt")
    expected, _ = model.model.get_rope_index(reference["input_ids"], reference["mm_token_type_ids"],
                                             reference["image_grid_thw"])
    assert torch.equal(example.mrope_positions, expected[:, 0])
    assert example.image_grid_thw.shape[0] == 2


def test_collated_pack_positions(task: MllmSftTask) -> None:
    examples = [task.prepare(sample("spatial_qa", n)) for n in (0, 1, 2)]
    batch = task.collate(examples)
    lengths = [e.length for e in examples]
    assert batch["position_ids"].shape == (4, 1, sum(lengths))
    assert batch["position_ids"][0, 0].tolist() == restart_positions(lengths).tolist()
    assert torch.equal(batch["position_ids"][1:, 0], torch.cat([e.mrope_positions for e in examples], dim=1))
    assert batch["seq_lengths"].tolist() == lengths


def test_packed_and_unpacked_forward_agree(task: MllmSftTask, model) -> None:
    examples = [task.prepare(sample("spatial_qa", n)) for n in (0, 1, 2)] + [task.prepare(two_image_sample())]
    with torch.no_grad():
        packed = task.forward(model, task.collate(examples)).logits[0]
        singles = [task.forward(model, task.collate([example])).logits[0] for example in examples]
        packed_loss = task.compute_loss(model, task.collate(examples))["sft"]
    assert torch.allclose(packed, torch.cat(singles), atol=1e-5, rtol=1e-4)
    token_losses = [F.cross_entropy(logits, e.targets, ignore_index=IGNORE, reduction="sum")
                    for logits, e in zip(singles, examples)]
    tokens = sum(int((e.targets != IGNORE).sum()) for e in examples)
    assert torch.allclose(packed_loss, sum(token_losses) / tokens, atol=1e-5)


def test_kl_zero_for_identical_models_and_spatial_samples_positive_after_change(task: MllmSftTask, model) -> None:
    general = task.collate([task.prepare(sample("general_qa", n, general=True)) for n in (0, 1)])
    spatial = task.collate([task.prepare(sample("spatial_qa", n)) for n in (0, 1)])
    assert not spatial["kd_tokens"].any() and general["kd_tokens"].any()
    with torch.no_grad():
        assert abs(float(task.compute_loss(model, general)["kl"])) < 1e-6

    student = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in student.model.language_model.layers[0].parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
        assert float(task.compute_loss(student, spatial)["kl"]) == 0.0
        changed = float(task.compute_loss(student, general)["kl"])
    assert changed > 1e-4


def test_pack_without_images_still_runs_the_vision_tower(task: MllmSftTask, model) -> None:
    row = synthetic_row("general_qa", 0, 3)
    row["images"] = []
    row["messages"][0]["content"] = [part for part in row["messages"][0]["content"] if part["type"] == "text"]
    batch = task.collate([task.prepare(Sample(row=row, dataset="general", general_domain=True, seed=0))])
    assert batch["pixel_values"] is None
    student = copy.deepcopy(model)
    task.compute_loss(student, batch)["loss"].backward()
    vision_grads = [p.grad for p in student.model.visual.parameters()]
    assert all(grad is not None for grad in vision_grads)
    assert all(float(grad.abs().sum()) == 0.0 for grad in vision_grads)


def perturbed(model, scale: float = 0.05):
    student = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for parameter in student.model.language_model.layers[0].parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
    return student


def test_a_kd_layer_naming_the_last_layer_is_a_config_error() -> None:
    context = RunContext(rank=0, world_size=1, device=torch.device("cpu"), dtype=torch.float32, out_dir=Path("."))
    config = MllmSftConfig(model_path="tiny:qwen3vl", kd_layers=[0, 1])  # the tiny model has 2 decoder layers
    with pytest.raises(TrainerError, match=r"kd_layers: 1 is the last decoder layer.*choose from 0-0"):
        MllmSftTask(config, context).build_model()


def test_the_teacher_maps_only_the_distilled_tokens_through_its_lm_head(task: MllmSftTask, model) -> None:
    batch = task.collate([task.prepare(sample("general_qa", n, general=True)) for n in (0, 1)]
                         + [task.prepare(sample("spatial_qa", 0))])
    rows_seen: list[int] = []
    hook = task.teacher.lm_head.register_forward_hook(lambda _m, inputs, _o: rows_seen.append(inputs[0].shape[-2]))
    try:
        with torch.no_grad():
            task.compute_loss(perturbed(model), batch)
    finally:
        hook.remove()
    # one call per kd layer for the student's and one for the teacher's states, each on the selected tokens
    # only; never the whole pack (a full-vocabulary forward of the teacher)
    selected = int(batch["kd_tokens"].sum())
    assert 0 < selected < batch["input_ids"].shape[1]
    assert rows_seen == [selected] * (2 * len(task.config.kd_layers))


def reference_objective(task: MllmSftTask, student, examples) -> torch.Tensor:
    """SFT + lambda * KL written out per sample: cross-entropy summed over every response token of every
    sample / their count, plus lambda x KL(teacher || student) through the teacher's norm and head, summed
    over the response tokens of general samples / their count."""
    head, norm = task.teacher.lm_head, task.teacher.model.language_model.norm
    ce_sum, kl_sum, responses, distilled = 0.0, 0.0, 0, 0
    for example in examples:
        batch = task.collate([example])
        student_out = task.forward(student, batch, hidden_states=True)
        teacher_out = task.forward(task.teacher, batch, hidden_states=True)
        trained = example.targets != IGNORE
        ce_sum += F.cross_entropy(student_out.logits[0][trained], example.targets[trained], reduction="sum")
        responses += int(trained.sum())
        if example.general_domain:
            for layer in task.config.kd_layers:
                p_teacher = F.log_softmax(head(norm(teacher_out.hidden_states[layer + 1][0][trained])), dim=-1)
                p_student = F.log_softmax(head(norm(student_out.hidden_states[layer + 1][0][trained])), dim=-1)
                kl_sum += (p_teacher.exp() * (p_teacher - p_student)).sum() / len(task.config.kd_layers)
            distilled += int(trained.sum())
    return ce_sum / responses + task.config.kd_weight * kl_sum / distilled


def test_packing_and_accumulation_do_not_change_the_objective(task: MllmSftTask, model) -> None:
    """Every response token weighs the same: one pack, pairs, singles or uneven micro-batches of the same six
    samples give the same step objective (the mean of the micro-batch losses, as gradient accumulation
    averages them), equal to the per-sample reference."""
    student = perturbed(model)
    items = [sample("general_qa", n, general=True) for n in (0, 1, 2)] + [sample("spatial_qa", n) for n in (0, 1, 2)]
    examples = [task.prepare(item) for item in items]
    arrangements = {"one pack": [[0, 1, 2, 3, 4, 5]], "pairs": [[0, 3], [1, 4], [2, 5]],
                    "singles": [[n] for n in range(6)], "uneven": [[0, 1, 3, 4], [2], [5]]}
    objectives = {}
    with torch.no_grad():
        expected = reference_objective(task, student, examples)
        for name, groups in arrangements.items():
            batches = [task.collate([examples[n] for n in group]) for group in groups]
            counts = {key: sum(task.loss_counts(batch)[key] for batch in batches) for key in ("sft", "kl")}
            totals = StepTotals(counts, len(batches))
            objectives[name] = sum(task.compute_loss(student, batch, totals)["loss"] for batch in batches) / len(batches)
    assert float(expected) > 0.5
    for name, objective in objectives.items():
        assert torch.allclose(objective, expected, atol=1e-5, rtol=1e-5), (name, float(objective), float(expected))
