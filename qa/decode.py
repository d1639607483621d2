"""Best answer spans from start/end logits: start <= end, at most ``max_answer_len`` tokens."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Spans:
    """The top-k spans of each row, best first: token indices (end inclusive), scores and which
    entries are real spans (a row with fewer than k valid spans has invalid entries at its end)."""

    starts: torch.Tensor  # (B, k) long
    ends: torch.Tensor  # (B, k) long
    scores: torch.Tensor  # (B, k) p(start) * p(end); may underflow to 0 for a valid span
    valid: torch.Tensor  # (B, k) bool

    def of_row(self, row: int) -> list[tuple[int, int, float]]:
        """The valid ``(start, end, score)`` of one row, best first."""
        keep = self.valid[row].tolist()
        return [(s, e, p) for s, e, p, k in zip(self.starts[row].tolist(), self.ends[row].tolist(),
                                                 self.scores[row].tolist(), keep) if k]


def best_spans(start_logits: torch.Tensor, end_logits: torch.Tensor, mask: torch.Tensor,
               max_answer_len: int = 15, top_k: int = 1) -> Spans:
    """Top-k spans per row of (B, P) logits under a (B, P) bool mask of real tokens.

    Scores are p(start) * p(end), the softmaxes of the logits over the row's real tokens. Validity
    is decided on the log scores, so a span is never lost to underflow and an impossible span is
    never returned as valid.
    """
    if max_answer_len < 1 or top_k < 1:
        raise ValueError("max_answer_len and top_k must be at least 1")
    neg = torch.finfo(start_logits.dtype).min
    log_start = torch.log_softmax(start_logits.masked_fill(~mask, neg), -1)  # (B, P)
    log_end = torch.log_softmax(end_logits.masked_fill(~mask, neg), -1)
    length = start_logits.shape[1]
    joint = log_start.unsqueeze(2) + log_end.unsqueeze(1)  # (B, P, P): [b, start, end]
    offsets = torch.arange(length, device=mask.device)
    width = offsets[None, :] - offsets[:, None]  # end - start
    allowed = (width >= 0) & (width < max_answer_len)  # (P, P)
    allowed = allowed.unsqueeze(0) & mask.unsqueeze(2) & mask.unsqueeze(1)  # (B, P, P)
    joint = joint.masked_fill(~allowed, float("-inf"))
    log_scores, flat = joint.flatten(1).topk(min(top_k, length * length), dim=-1)  # (B, k)
    return Spans(flat // length, flat % length, log_scores.exp(), torch.isfinite(log_scores))
