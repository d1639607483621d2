"""Attention as small parts with one contract.

A *similarity* takes queries (B, Lq, Dq) and keys (B, Lk, Dk) and returns unnormalised scores
(B, Lq, Lk); it never sees a mask. Masking and normalisation live in ``masked_softmax``
(soft, global attention), ``hard_attention`` (one key, straight-through Gumbel-softmax) and
``local_mask`` (a window around each position); ``weighted_sum`` returns the attended values.
Masks are bool tensors, True on real tokens.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SCORES = ("dot", "scaled_dot", "bilinear", "additive", "cosine")


class DotSimilarity(nn.Module):
    """score(q, k) = q . k"""

    def forward(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return queries @ keys.transpose(1, 2)  # (B, Lq, Lk)


class ScaledDotSimilarity(nn.Module):
    """score(q, k) = q . k / sqrt(d)"""

    def forward(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return queries @ keys.transpose(1, 2) / math.sqrt(queries.shape[-1])


class BilinearSimilarity(nn.Module):
    """score(q, k) = q^T W k  (Luong's "general" score)."""

    def __init__(self, query_dim: int, key_dim: int):
        super().__init__()
        self.weight = nn.Linear(key_dim, query_dim, bias=False)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return queries @ self.weight(keys).transpose(1, 2)


class AdditiveSimilarity(nn.Module):
    """score(q, k) = v^T tanh(W q + U k)  (Bahdanau)."""

    def __init__(self, query_dim: int, key_dim: int, hidden: int):
        super().__init__()
        self.query = nn.Linear(query_dim, hidden, bias=False)
        self.key = nn.Linear(key_dim, hidden)
        self.vector = nn.Linear(hidden, 1, bias=False)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        # (B, Lq, 1, H) + (B, 1, Lk, H) -> (B, Lq, Lk, H) -> (B, Lq, Lk)
        mixed = torch.tanh(self.query(queries).unsqueeze(2) + self.key(keys).unsqueeze(1))
        return self.vector(mixed).squeeze(-1)


class CosineSimilarity(nn.Module):
    """score(q, k) = cos(q, k) * scale, with a learned scale so the softmax can sharpen."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(5.0))

    def forward(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return self.scale * (F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).transpose(1, 2))


def similarity(name: str, query_dim: int, key_dim: int, hidden: int) -> nn.Module:
    """Build a similarity by name; dot-style scores need equal query and key sizes."""
    if name in ("dot", "scaled_dot", "cosine") and query_dim != key_dim:
        raise ValueError(f"{name} similarity needs equal query and key sizes, got {query_dim} and {key_dim}")
    builders = {
        "dot": DotSimilarity,
        "scaled_dot": ScaledDotSimilarity,
        "bilinear": lambda: BilinearSimilarity(query_dim, key_dim),
        "additive": lambda: AdditiveSimilarity(query_dim, key_dim, hidden),
        "cosine": CosineSimilarity,
    }
    if name not in builders:
        raise ValueError(f"unknown attention score {name!r}; choose one of {', '.join(SCORES)}")
    return builders[name]()


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis of (B, Lq, Lk) scores, ignoring keys where ``mask`` (B, [Lq,] Lk) is False."""
    if mask.dim() == scores.dim() - 1:
        mask = mask.unsqueeze(-2)
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1)


def hard_attention(scores: torch.Tensor, mask: torch.Tensor, training: bool, tau: float = 1.0) -> torch.Tensor:
    """One-hot weights on one key: straight-through Gumbel-softmax while training, argmax otherwise."""
    if mask.dim() == scores.dim() - 1:
        mask = mask.unsqueeze(-2)
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    if training:
        return F.gumbel_softmax(scores, tau=tau, hard=True, dim=-1)
    return F.one_hot(scores.argmax(-1), scores.shape[-1]).to(scores.dtype)


def local_mask(mask: torch.Tensor, window: int) -> torch.Tensor:
    """(B, L, L) mask allowing position i to see keys j with |i - j| <= window among real tokens."""
    positions = torch.arange(mask.shape[1], device=mask.device)
    near = (positions[:, None] - positions[None, :]).abs() <= window  # (L, L)
    return near.unsqueeze(0) & mask.unsqueeze(1)


def weighted_sum(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """(B, Lq, Lk) weights times (B, Lk, D) values -> (B, Lq, D)."""
    return weights @ values


class GeneralAttention(nn.Module):
    """External-query attention: each passage token (query) attends over the question (keys/values).

    Returns the attended question vectors (B, P, Dq), the weights (B, P, Q) and the raw scores
    (B, P, Q) they are the row softmax of (read per question word, the scores say which passage
    tokens match that word). With ``hard``, each passage token picks one question token
    (straight-through Gumbel-softmax in training).
    """

    def __init__(self, query_dim: int, key_dim: int, score: str, hidden: int, project: bool, hard: bool = False):
        super().__init__()
        self.project = nn.Sequential(nn.Linear(query_dim, hidden), nn.ReLU()) if project else None
        size = hidden if project else query_dim
        self.similarity = similarity(score, size, hidden if project else key_dim, hidden)
        self.hard = hard

    def forward(self, passage, question, question_mask):
        if self.project is not None:  # shared ReLU projection of both sides (DrQA's aligned embedding)
            scores = self.similarity(self.project(passage), self.project(question))  # (B, P, Q)
        else:
            scores = self.similarity(passage, question)
        if self.hard:
            weights = hard_attention(scores, question_mask, self.training)
        else:
            weights = masked_softmax(scores, question_mask)  # (B, P, Q)
        return weighted_sum(weights, question), weights, scores


class Gate(nn.Module):
    """R-Net gate: x * sigmoid(W x), letting the model suppress parts of a fused input."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, dim, bias=False)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs * torch.sigmoid(self.linear(inputs))


class SelfAttention(nn.Module):
    """Self-matching attention within one text: every token attends over the same text.

    Modes: ``global`` (all tokens), ``local`` (a window of ``window`` tokens each side), or
    ``heads`` > 1 for multi-head scaled-dot attention. A token never attends to itself, so the
    result carries evidence from elsewhere in the text. Returns (B, L, D) and weights (B, L, L)
    (averaged over heads).
    """

    def __init__(self, dim: int, score: str, hidden: int, window: int = 0, heads: int = 1):
        super().__init__()
        self.window, self.heads = window, heads
        if heads > 1:
            if hidden % heads:
                raise ValueError(f"hidden size {hidden} is not divisible by {heads} heads")
            self.query = nn.Linear(dim, hidden, bias=False)
            self.key = nn.Linear(dim, hidden, bias=False)
            self.value = nn.Linear(dim, dim, bias=False)
        else:
            self.project = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU())
            self.similarity = similarity(score, hidden, hidden, hidden)

    def _scores(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.heads == 1:
            projected = self.project(inputs)
            return self.similarity(projected, projected).unsqueeze(1)  # (B, 1, L, L)
        b, length, _ = inputs.shape
        q = self.query(inputs).view(b, length, self.heads, -1).transpose(1, 2)  # (B, h, L, d)
        k = self.key(inputs).view(b, length, self.heads, -1).transpose(1, 2)
        return q @ k.transpose(2, 3) / math.sqrt(q.shape[-1])  # (B, h, L, L)

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor):
        length = inputs.shape[1]
        allowed = local_mask(mask, self.window) if self.window else mask.unsqueeze(1).expand(-1, length, -1)
        allowed = allowed & ~torch.eye(length, dtype=torch.bool, device=mask.device)
        allowed[:, :, 0] |= ~allowed.any(-1)  # a one-token text attends to its first slot
        weights = masked_softmax(self._scores(inputs), allowed.unsqueeze(1))  # (B, h, L, L)
        if self.heads == 1:
            return weighted_sum(weights.squeeze(1), inputs), weights.squeeze(1)
        b, _, _ = inputs.shape
        values = self.value(inputs).view(b, length, self.heads, -1).transpose(1, 2)  # (B, h, L, d)
        attended = (weights @ values).transpose(1, 2).reshape(b, length, -1)  # (B, L, D)
        return attended, weights.mean(1)


class SelfAttentivePooling(nn.Module):
    """Question self-attention summary: softmax(w . q_j) weights -> one vector (B, D), weights (B, L)."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor):
        scores = self.score(inputs).squeeze(-1)  # (B, L)
        weights = masked_softmax(scores.unsqueeze(1), mask).squeeze(1)  # (B, L)
        return (weights.unsqueeze(1) @ inputs).squeeze(1), weights


class UniformPooling(nn.Module):
    """Question summary without self-attention: the mean of real tokens (B, D), weights (B, L)."""

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor):
        weights = mask.float() / mask.float().sum(-1, keepdim=True)
        return (weights.unsqueeze(1) @ inputs).squeeze(1), weights
