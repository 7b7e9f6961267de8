"""One attention entry point for every model: picks PyTorch SDPA or flash-attention varlen.

Inputs are `[batch, tokens, heads, head_dim]` (the layout projections produce, no transpose at call sites)
plus an optional boolean `key_mask` `[batch, tokens]` (True = a real token). Padding is assumed to sit at
the end of each sequence, which is how the MMDiT lays out [image tokens, text tokens, text padding]; the
varlen backend relies on it to pack each sample's real tokens contiguously.

Backends:
- `math`: explicit softmax(QK^T / sqrt(d)) V in float32; the reference the others are tested against.
- `sdpa`: `torch.nn.functional.scaled_dot_product_attention`; on CUDA without a mask it is pinned to the
  flash kernel, because an unpinned call may silently fall back to the slower math kernel.
- `flash_varlen`: `flash_attn.flash_attn_varlen_func` over the packed real tokens (GPU, when installed).
- `auto`: `flash_varlen` on CUDA when flash-attn is importable and there is a mask, else `sdpa`.

This module imports torch only, so `benchmarks/mmdit_mfu.py` runs on a bare GPU machine.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Literal

import torch
import torch.nn.functional as F

AttentionBackend = Literal["auto", "math", "sdpa", "flash_varlen"]
BACKENDS: tuple[str, ...] = ("auto", "math", "sdpa", "flash_varlen")


class AttentionBackendError(RuntimeError):
    """The requested attention backend cannot run here (wrong device, library missing, bad mask)."""


def flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def resolve_backend(backend: str, device: torch.device, has_mask: bool) -> str:
    if backend not in BACKENDS:
        raise AttentionBackendError(f"unknown attention backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    if device.type == "cuda" and has_mask and flash_attn_available():
        return "flash_varlen"
    return "sdpa"


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None = None,
              backend: str = "auto") -> torch.Tensor:
    """Full (non-causal) attention; returns `[batch, tokens, heads, head_dim]`.

    Rows of padded query positions are unspecified (zeros for `flash_varlen`); callers drop them.
    """
    if q.shape != k.shape or k.shape != v.shape or q.dim() != 4:
        raise AttentionBackendError(f"q, k, v must share one [batch, tokens, heads, dim] shape, got "
                                    f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if key_mask is not None and key_mask.shape != q.shape[:2]:
        raise AttentionBackendError(f"key_mask shape {tuple(key_mask.shape)} != [batch, tokens] {tuple(q.shape[:2])}")
    if key_mask is not None and bool(key_mask.all()):
        key_mask = None  # nothing padded: the unmasked kernels are the fast ones
    chosen = resolve_backend(backend, q.device, key_mask is not None)
    if chosen == "math":
        return math_attention(q, k, v, key_mask)
    if chosen == "sdpa":
        return sdpa_attention(q, k, v, key_mask)
    return flash_varlen_attention(q, k, v, key_mask)


def math_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    scores = torch.einsum("bqhd,bkhd->bhqk", q.float(), k.float()) / math.sqrt(q.shape[-1])
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    return torch.einsum("bhqk,bkhd->bqhd", scores.softmax(dim=-1), v.float()).to(q.dtype)


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    q, k, v = (x.transpose(1, 2) for x in (q, k, v))
    mask = None if key_mask is None else key_mask[:, None, None, :]
    # Inside torch.compile the compiler chooses the kernel itself; eager calls pin flash explicitly.
    if (q.device.type == "cuda" and mask is None and q.dtype in (torch.float16, torch.bfloat16)
            and not torch.compiler.is_compiling()):
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            out = F.scaled_dot_product_attention(q, k, v)
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out.transpose(1, 2)


def packed_lengths(key_mask: torch.Tensor) -> torch.Tensor:
    """Real tokens per sample; checks that padding is only at the end of each row."""
    lengths = key_mask.sum(dim=1)
    positions = torch.arange(key_mask.shape[1], device=key_mask.device)
    if not torch.equal(key_mask, positions[None, :] < lengths[:, None]):
        raise AttentionBackendError("flash_varlen needs right-padded sequences (real tokens first in every row)")
    return lengths


def cumulative_seqlens(lengths: torch.Tensor) -> torch.Tensor:
    """`cu_seqlens` for flash-attention varlen: [0, l0, l0+l1, ...] as int32."""
    return F.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)


def pack_tokens(x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """[batch, tokens, ...] -> [real tokens of all samples, ...] in sample order."""
    return x[key_mask]


def unpack_tokens(packed: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """Inverse of `pack_tokens`; padded positions become zeros."""
    out = packed.new_zeros(key_mask.shape + packed.shape[1:])
    out[key_mask] = packed
    return out


def flash_varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           key_mask: torch.Tensor | None) -> torch.Tensor:
    if q.device.type != "cuda":
        raise AttentionBackendError("flash_varlen runs on CUDA only; use backend 'sdpa' on this device")
    if not flash_attn_available():
        raise AttentionBackendError("flash_varlen needs the flash-attn package; use backend 'sdpa'")
    from flash_attn import flash_attn_varlen_func

    if key_mask is None:
        key_mask = torch.ones(q.shape[:2], dtype=torch.bool, device=q.device)
    lengths = packed_lengths(key_mask)
    cu_seqlens = cumulative_seqlens(lengths)
    max_len = int(lengths.max())
    out = flash_attn_varlen_func(pack_tokens(q, key_mask), pack_tokens(k, key_mask), pack_tokens(v, key_mask),
                                 cu_seqlens, cu_seqlens, max_len, max_len)
    return unpack_tokens(out, key_mask)
