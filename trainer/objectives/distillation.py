"""Layer-averaged KL distillation against a frozen teacher (report 3.2: loss = SFT + lambda * KL, lambda = 10).

For each configured decoder layer, the student's and the teacher's hidden states at that layer are mapped to
token distributions through the teacher's frozen final norm and LM head; the term is the token-level
KL(teacher || student) over the selected tokens (response tokens of general-domain samples), averaged over
layers and summed over tokens (the caller divides by the selected tokens of the whole global batch). It is
zero when no token is selected, and zero when the two models agree.

The last decoder layer is not a valid choice: transformers returns its hidden state already through the
final norm, and mapping it through the norm again would distil a doubly normed distribution.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F


def layer_kl(student_hidden: Sequence[torch.Tensor], teacher_hidden: Sequence[torch.Tensor],
             layers: Sequence[int], selected: torch.Tensor,
             to_logits: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Sum over selected tokens of the layer-averaged KL. `*_hidden[i + 1]` is the output of decoder layer i
    ([B, L, H]; index 0 is the embeddings);
    `selected` [B, L] marks the tokens that count; `to_logits` is the teacher's frozen norm + LM head."""
    if not bool(selected.any()):
        return student_hidden[0].sum() * 0.0  # keeps the graph (and ZeRO's gradient hooks) identical
    terms = []
    for layer in layers:
        student_log_probs = F.log_softmax(to_logits(student_hidden[layer + 1][selected]).float(), dim=-1)
        with torch.no_grad():
            teacher_log_probs = F.log_softmax(to_logits(teacher_hidden[layer + 1][selected]).float(), dim=-1)
        terms.append(F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="sum"))
    return torch.stack(terms).mean()
