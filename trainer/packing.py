"""Sequence packing: several samples in one row of at most `max_length` tokens, causally independent.

- `plan_packs`: greedy first-fit decreasing over sample lengths (longest first, each into the first pack it
  fits), deterministic for equal lengths (ties keep input order).
- `cu_seqlens`: cumulative sub-sequence boundaries `[0, l0, l0+l1, ...]` (int32), what varlen flash attention
  takes on GPU.
- `block_diagonal_causal_mask`: the same structure as an additive `[1, 1, L, L]` mask for SDPA/eager attention
  on CPU: token i attends to token j iff both are in one sub-sequence and j <= i.
- `restart_positions`: text position ids that restart at 0 in every sub-sequence.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class PackingError(ValueError):
    """A sample is longer than a pack."""


def plan_packs(lengths: Sequence[int], max_length: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda index: (-lengths[index], index))
    packs: list[list[int]] = []
    room: list[int] = []
    for index in order:
        length = lengths[index]
        if length > max_length:
            raise PackingError(f"sample {index} has {length} tokens, more than the pack length {max_length}")
        for pack, free in enumerate(room):
            if length <= free:
                packs[pack].append(index)
                room[pack] -= length
                break
        else:
            packs.append([index])
            room.append(max_length - length)
    return [sorted(pack) for pack in packs]


def packing_efficiency(lengths: Sequence[int], packs: list[list[int]], max_length: int) -> float:
    """Real tokens over slot tokens (packs x max_length)."""
    return sum(lengths) / (len(packs) * max_length) if packs else 0.0


def cu_seqlens(lengths: Sequence[int]) -> torch.Tensor:
    return torch.cumsum(torch.tensor([0, *lengths], dtype=torch.int32), dim=0, dtype=torch.int32)


def restart_positions(lengths: Sequence[int]) -> torch.Tensor:
    return torch.cat([torch.arange(length) for length in lengths])


def block_diagonal_causal_mask(lengths: Sequence[int], dtype: torch.dtype,
                               device: torch.device | str = "cpu") -> torch.Tensor:
    segment = torch.repeat_interleave(torch.arange(len(lengths), device=device),
                                      torch.tensor(list(lengths), device=device))
    total = int(segment.numel())
    causal = torch.ones(total, total, dtype=torch.bool, device=device).tril()
    allowed = causal & (segment[:, None] == segment[None, :])
    mask = torch.zeros(total, total, dtype=dtype, device=device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]
