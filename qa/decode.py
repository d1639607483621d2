"""Best answer spans from start/end logits: start <= end, at most ``max_answer_len`` tokens."""
from __future__ import annotations

import torch


def best_spans(start_logits: torch.Tensor, end_logits: torch.Tensor, mask: torch.Tensor,
               max_answer_len: int = 15, top_k: int = 1, temperature: float = 1.0):
    """Top-k spans per row, invalid spans set to -inf before top-k.

    Inputs are (B, P) logits and a (B, P) bool mask. Returns ``starts``, ``ends`` (B, k) token
    indices (end inclusive) and ``scores`` (B, k) = p(start) * p(end), the softmaxes of
    logits / ``temperature`` taken over the passage (the temperature changes scores, never the
    ranking). k is at most the number of valid spans of the shortest row.
    """
    if max_answer_len < 1 or top_k < 1:
        raise ValueError("max_answer_len and top_k must be at least 1")
    neg = torch.finfo(start_logits.dtype).min
    log_start = torch.log_softmax((start_logits / temperature).masked_fill(~mask, neg), -1)  # (B, P)
    log_end = torch.log_softmax((end_logits / temperature).masked_fill(~mask, neg), -1)
    length = start_logits.shape[1]
    joint = log_start.unsqueeze(2) + log_end.unsqueeze(1)  # (B, P, P): [b, start, end]
    offsets = torch.arange(length, device=mask.device)
    width = offsets[None, :] - offsets[:, None]  # end - start
    valid = (width >= 0) & (width < max_answer_len)  # (P, P)
    valid = valid.unsqueeze(0) & mask.unsqueeze(2) & mask.unsqueeze(1)  # (B, P, P)
    joint = joint.masked_fill(~valid, float("-inf"))
    k = min(top_k, length * length)
    scores, flat = joint.flatten(1).topk(k, dim=-1)  # (B, k)
    return flat // length, flat % length, scores.exp()
