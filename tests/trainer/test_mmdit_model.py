"""MMDiT blocks: parameter count per Table 1, attention dispatch, RoPE layout, modulation, edit tokens, export."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.models import attention as attn
from trainer.models.mmdit import (MMDiT, PRESETS, MMDiTConfig, apply_rope, count_parameters, grid_positions,
                                  preset_config, rope_angles, with_text_positions)


@pytest.fixture(scope="module")
def tiny() -> MMDiT:
    torch.manual_seed(0)
    model = MMDiT(preset_config("tiny")).eval()
    # The zero-initialised head would make every output 0; give it weights so outputs depend on inputs.
    torch.nn.init.normal_(model.head.weight, std=0.02)
    return model


def tiny_inputs(batch: int = 2, text_len: int = 5, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, 16, 1, 8, 6, generator=generator)
    text = torch.randn(batch, text_len, 64, generator=generator)
    mask = torch.ones(batch, text_len, dtype=torch.bool)
    mask[0, 3:] = False
    return latents, torch.rand(batch, generator=generator), text, mask


def test_16b_preset_matches_table_1():
    config = PRESETS["16b"]
    assert (config.num_layers, config.hidden_size, config.num_heads) == (40, 4096, 32)
    assert config.patch_size == (1, 2, 2) and config.in_channels == config.out_channels == 16
    assert config.rope_axes_dim == (16, 56, 56) and config.rope_theta == 10_000 and config.text_dim == 4096
    with torch.device("meta"):
        model = MMDiT(config)
    assert count_parameters(model) == table_1_parameter_count(config)
    assert abs(count_parameters(model) - 16e9) / 16e9 < 0.01  # 16.096B: "a 16B-parameter MMDiT"


def table_1_parameter_count(config: MMDiTConfig) -> int:
    """Parameters counted by hand from the layer list: 39 dual-stream blocks, a last block whose text stream
    only gives keys and values, the embedders and the head."""
    h, d, patch = config.hidden_size, config.head_dim, math.prod(config.patch_size)
    full_stream = 6 * h + (3 * h * h + 3 * h) + 2 * d + (h * h + h) + (4 * h * h + 4 * h) + (4 * h * h + h)
    pre_only_text = 2 * h + (2 * h * h + 2 * h) + d
    blocks = (config.num_layers - 1) * 2 * full_stream + full_stream + pre_only_text
    embedders = ((config.in_channels * patch + 1) * h + (config.text_dim + 1) * h + (h + 1) * h
                 + (config.timestep_freq_dim + 1) * h + (h + 1) * h + (h + 1) * 6 * h)
    head = 2 * h + (h + 1) * config.out_channels * patch
    return blocks + embedders + head


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = MMDiT(preset_config("tiny")).train()
    torch.nn.init.normal_(model.head.weight, std=0.02)  # a zero head would zero every upstream gradient
    latents, t, text, mask = tiny_inputs()
    model(latents, t, text, mask).square().mean().backward()
    dead = [name for name, parameter in model.named_parameters()
            if parameter.grad is None or not bool(parameter.grad.abs().sum() > 0)]
    assert dead == []


def test_1b_preset_is_about_one_billion():
    with torch.device("meta"):
        model = MMDiT(PRESETS["1b"])
    assert 0.9e9 < count_parameters(model) < 1.2e9


@pytest.mark.parametrize("masked", [False, True])
def test_sdpa_matches_math_attention(masked: bool):
    generator = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 11, 3, 8, generator=generator) for _ in range(3))
    mask = torch.ones(2, 11, dtype=torch.bool)
    if masked:
        mask[1, 7:] = False
    reference = attn.attention(q, k, v, mask, backend="math")
    fast = attn.attention(q, k, v, mask, backend="sdpa")
    torch.testing.assert_close(fast[mask], reference[mask], atol=1e-5, rtol=1e-5)
    if masked:  # masked keys must not influence real queries
        v_changed = v.clone()
        v_changed[1, 7:] += 100
        torch.testing.assert_close(attn.attention(q, k, v_changed, mask, backend="sdpa")[1, :7], fast[1, :7])


def test_varlen_packing_matches_per_sample_attention():
    """The packing flash_varlen uses: cu_seqlens over right-padded rows, pack/unpack round trip, and
    attention run per packed segment equals masked attention."""
    generator = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(3, 9, 2, 4, generator=generator) for _ in range(3))
    mask = torch.arange(9)[None, :] < torch.tensor([9, 4, 6])[:, None]
    lengths = attn.packed_lengths(mask)
    cu = attn.cumulative_seqlens(lengths)
    assert cu.tolist() == [0, 9, 13, 19] and cu.dtype == torch.int32
    packed_q, packed_k, packed_v = (attn.pack_tokens(x, mask) for x in (q, k, v))
    segments = [attn.sdpa_attention(packed_q[None, s:e], packed_k[None, s:e], packed_v[None, s:e], None)[0]
                for s, e in zip(cu[:-1].tolist(), cu[1:].tolist())]
    unpacked = attn.unpack_tokens(torch.cat(segments), mask)
    reference = attn.attention(q, k, v, mask, backend="math")
    torch.testing.assert_close(unpacked[mask], reference[mask], atol=1e-5, rtol=1e-5)
    assert torch.all(unpacked[~mask] == 0)
    with pytest.raises(attn.AttentionBackendError, match="right-padded"):
        attn.packed_lengths(torch.tensor([[True, False, True]]))


def test_backend_selection_and_errors():
    assert attn.resolve_backend("auto", torch.device("cpu"), has_mask=True) == "sdpa"
    with pytest.raises(attn.AttentionBackendError, match="unknown attention backend"):
        attn.resolve_backend("xformers", torch.device("cpu"), has_mask=False)
    q = torch.zeros(1, 2, 1, 4)
    with pytest.raises(attn.AttentionBackendError, match="CUDA"):
        attn.attention(q, q, q, torch.tensor([[True, False]]), backend="flash_varlen")


def test_model_output_same_for_sdpa_and_math(tiny: MMDiT):
    latents, t, text, mask = tiny_inputs()
    with torch.no_grad():
        tiny.attention_backend = "math"
        reference = tiny(latents, t, text, mask)
        tiny.attention_backend = "sdpa"
        fast = tiny(latents, t, text, mask)
        tiny.attention_backend = "auto"
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-4)


def test_rope_layout_axes_own_their_head_dim_blocks():
    axes = (4, 6, 6)
    base = rope_angles(torch.tensor([[0, 0, 0]]), axes, 10_000.0)[0]
    assert base.shape == (8,) and torch.all(base == 0)
    for axis, (start, stop) in enumerate([(0, 2), (2, 5), (5, 8)]):
        position = torch.zeros(1, 3, dtype=torch.long)
        position[0, axis] = 3
        angles = rope_angles(position, axes, 10_000.0)[0]
        inside = torch.zeros(8, dtype=torch.bool)
        inside[start:stop] = True
        assert torch.all(angles[~inside] == 0) and torch.all(angles[inside] != 0)
        # first pair of each block turns at frequency 1, the rest at theta^(-2i/d)
        assert angles[start] == pytest.approx(3.0)
        dim = axes[axis]
        assert angles[start + 1] == pytest.approx(3.0 * 10_000.0 ** (-2 / dim))


def test_rope_scores_depend_on_relative_position_only():
    generator = torch.Generator().manual_seed(3)
    q, k = torch.randn(1, 1, 1, 16, generator=generator), torch.randn(1, 1, 1, 16, generator=generator)
    axes = (4, 6, 6)

    def score(pos_q, pos_k):
        rq = apply_rope(q, rope_angles(torch.tensor([pos_q]), axes, 10_000.0))
        rk = apply_rope(k, rope_angles(torch.tensor([pos_k]), axes, 10_000.0))
        return float((rq * rk).sum())

    assert score([0, 1, 2], [1, 3, 5]) == pytest.approx(score([2, 4, 6], [3, 6, 9]), abs=1e-4)
    assert score([0, 1, 2], [1, 3, 5]) != pytest.approx(score([0, 1, 2], [0, 3, 5]), abs=1e-3)


def test_grid_positions_row_major_with_frame_offset():
    positions = grid_positions(1, 2, 3, frame_offset=4, device=torch.device("cpu"))
    assert positions.tolist() == [[4, 0, 0], [4, 0, 1], [4, 0, 2], [4, 1, 0], [4, 1, 1], [4, 1, 2]]


def test_patchify_round_trip(tiny: MMDiT):
    latents = torch.randn(2, 16, 1, 8, 6)
    tokens = tiny.patchify(latents)
    assert tokens.shape == (2, 12, 64)
    torch.testing.assert_close(tiny.unpatchify(tokens, (1, 4, 3)), latents)
    with pytest.raises(ValueError, match="not divisible"):
        tiny.patchify(torch.randn(1, 16, 1, 5, 6))


def test_modulation_tables_are_per_stream_and_shared_projection_drives_them(tiny: MMDiT):
    block = tiny.blocks[0]
    assert block.image.modulation.shape == block.text.modulation.shape == (1, 6, 128)
    assert not torch.equal(block.image.modulation, block.text.modulation)
    projection = torch.randn(2, 6, 128)
    shift, scale, gate, *_ = block.image.modulation_terms(projection)
    torch.testing.assert_close(shift, (block.image.modulation[:, 0] + projection[:, 0])[:, None])
    torch.testing.assert_close(gate, (block.image.modulation[:, 2] + projection[:, 2])[:, None])
    # the timestep reaches the output only through modulation: changing t changes the prediction
    latents, t, text, mask = tiny_inputs()
    with torch.no_grad():
        assert not torch.allclose(tiny(latents, t, text, mask), tiny(latents, 1 - t, text, mask))


def test_padding_text_tokens_do_not_change_the_prediction(tiny: MMDiT):
    latents, t, text, mask = tiny_inputs()
    text_changed = text.clone()
    text_changed[0, 3:] = 50.0  # padded positions of sample 0
    with torch.no_grad():
        torch.testing.assert_close(tiny(latents, t, text, mask)[0], tiny(latents, t, text_changed, mask)[0],
                                   atol=1e-5, rtol=1e-5)


def test_edit_conditions_are_told_apart_by_frame_index(tiny: MMDiT):
    latents, t, text, mask = tiny_inputs()
    source_a = torch.randn(2, 16, 1, 4, 4)
    source_b = torch.randn(2, 16, 1, 4, 4)
    with torch.no_grad():
        plain = tiny(latents, t, text, mask)
        one = tiny(latents, t, text, mask, condition_latents=[source_a])
        swapped = tiny(latents, t, text, mask, condition_latents=[source_b, source_a])
        ordered = tiny(latents, t, text, mask, condition_latents=[source_a, source_b])
    assert one.shape == plain.shape
    assert not torch.allclose(one, plain, atol=1e-4)
    # identical token content in another frame slot is a different input: the frame index separates them
    assert not torch.allclose(swapped, ordered, atol=1e-5)


def test_diffusers_export_round_trip(tmp_path, tiny: MMDiT):
    pytest.importorskip("diffusers")
    from trainer.models.mmdit_diffusers import MMDiTTransformerModel

    exported = MMDiTTransformerModel.from_mmdit_config(tiny.mmdit_config)
    exported.load_state_dict(tiny.state_dict())  # plain-module weights load unchanged
    exported.save_pretrained(tmp_path)
    reloaded = MMDiTTransformerModel.from_pretrained(tmp_path).eval()
    assert reloaded.mmdit_config == tiny.mmdit_config
    latents, t, text, mask = tiny_inputs()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(latents, t, text, mask), tiny(latents, t, text, mask))


def test_preset_errors_are_one_line():
    with pytest.raises(ValueError, match="unknown MMDiT preset 'huge'"):
        preset_config("huge")
    with pytest.raises(ValueError, match="rope_axes_dim"):
        preset_config("tiny", rope_axes_dim=(8, 8, 8))
    assert math.prod(PRESETS["tiny"].patch_size) == 4


def test_mfu_benchmark_imports_torch_only_and_runs_on_cpu():
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    probe = ("import sys, benchmarks.mmdit_mfu; "
             "print(','.join(m for m in ('deepspeed', 'ray', 'diffusers', 'pydantic', 'transformers') "
             "if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=repo, capture_output=True, text=True, check=True,
                            env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"})
    assert loaded.stdout.strip() == ""

    from benchmarks.mmdit_mfu import main

    result = main(["--preset", "tiny", "--steps", "5", "--warmup", "0", "--resolution", "64", "--batch-size", "1",
                   "--text-tokens", "8", "--device", "cpu", "--peak-tflops", "1e-6"])  # a peak the tiny step nears
    notes, mfu = result["notes"], result["metrics"]["mfu"]
    assert 0 < mfu["min"] <= mfu["median"] <= mfu["max"] and notes["image_tokens"] == 16
    # mfu is the analytic (useful) FLOPs' share, mfu_counted the counter's, over the same step times
    counted_share = notes["flops_per_step_counted"] / notes["flops_per_step_analytic"]
    assert result["metrics"]["mfu_counted"]["median"] / mfu["median"] == pytest.approx(counted_share, rel=0.01)
    # the counted FLOPs agree with the analytic count of the blocks within the embeddings' share
    assert abs(notes["flops_per_step_counted"] / notes["flops_per_step_analytic"] - 1) < 0.2


def test_text_tokens_follow_the_image_on_all_three_axes():
    image = grid_positions(1, 2, 3, frame_offset=0, device=torch.device("cpu"))
    condition = grid_positions(1, 2, 2, frame_offset=1, device=torch.device("cpu"))
    positions = with_text_positions(torch.cat([image, condition]), 3)
    # hand-labelled: the largest image position is 2 (column), so text starts at 3 on every axis
    assert positions[-3:].tolist() == [[3, 3, 3], [4, 4, 4], [5, 5, 5]]
    assert positions[:10].tolist() == torch.cat([image, condition]).tolist()


def test_image_text_attention_is_invariant_to_a_common_position_shift(tiny: MMDiT):
    """With text present, scores depend on relative positions only: shifting image and text positions
    together leaves the block's output unchanged, and moving the text relative to the image changes it."""
    block = tiny.blocks[0]
    generator = torch.Generator().manual_seed(3)
    image = torch.randn(2, 12, 128, generator=generator)
    text = torch.randn(2, 5, 128, generator=generator)
    projection = torch.randn(2, 6, 128, generator=generator)
    image_positions = grid_positions(1, 3, 4, frame_offset=0, device=torch.device("cpu"))
    config = tiny.mmdit_config

    def run(positions: torch.Tensor) -> torch.Tensor:
        rope = rope_angles(positions, config.rope_axes_dim, config.rope_theta)
        with torch.no_grad():
            out_image, out_text = block(image, text, projection, rope, None, "math")
        return torch.cat([out_image, out_text], dim=1)

    positions = with_text_positions(image_positions, 5)
    reference = run(positions)
    torch.testing.assert_close(run(positions + torch.tensor([7, 11, 5])), reference, atol=2e-6, rtol=1e-5)
    moved_text = positions.clone()
    moved_text[12:] += 9
    assert (run(moved_text) - reference).abs().max() > 1e-3
