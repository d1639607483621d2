"""The reader network: embeddings -> encoders -> general attention -> self-attention -> span scores.

``ReaderNet.forward(batch)`` returns raw start/end logits in every mode plus the attention
weights it used, so the terminal can draw exactly what the model looked at.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from qa.attention import (
    Gate,
    GeneralAttention,
    SelfAttention,
    SelfAttentivePooling,
    UniformPooling,
)
from qa.batching import NUM_FEATURES, Batch
from qa.errors import UserError
from qa.inputs import checked_settings
from qa.vocab import GLOVE_OFFSET


@dataclass
class ReaderConfig:
    """Model hyper-parameters; saved as JSON beside the weights and used to rebuild the model."""

    word_dim: int = 50  # GloVe 6B 50d
    char_dim: int = 16  # character embedding size
    char_filters: int = 50  # character CNN output size
    char_width: int = 5  # character CNN window
    max_word_chars: int = 16  # characters kept per word
    hidden: int = 96  # RNN units per direction
    encoder_layers: int = 1  # passage and question BiLSTM layers before the general attention
    score: str = "bilinear"  # general-attention score: dot|scaled_dot|bilinear|additive|cosine
    gate: bool = True  # R-Net gate on [passage; attended question]
    hard_attention: bool = False  # straight-through Gumbel-softmax instead of soft general attention
    passage_self_attention: str = "global"  # off|global|local|multihead
    self_attention_window: int = 15  # tokens each side for local self-attention
    self_attention_heads: int = 4  # heads for multihead self-attention
    question_self_attention: bool = True  # self-attentive question summary (else mean)
    answer_pointer: bool = False  # end query updated from the start-weighted passage (R-Net pointer step)
    no_answer: bool = False  # a learned null score that competes with every span (see NoAnswerScore)
    contextual: str = ""  # contextual features from this frozen encoder (qa.contextual; "" = none)
    contextual_window: int = 128  # the encoder's wordpieces per pass
    contextual_stride: int = 64  # wordpieces between the encoder's windows
    contextual_dim: int = 384  # the encoder's hidden size
    contextual_layers: list[int] = field(default_factory=lambda: [-1])  # its hidden states read (qa.bert; -1 the last)
    contextual_size: int = 128  # the features' projection, concatenated to each token's input
    dropout: float = 0.3
    tuned_words: list[str] = field(default_factory=list)  # fine-tuned frequent words

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ReaderConfig":
        return cls(**checked_settings(cls, values, "model settings"))


class CharCNN(nn.Module):
    """Character CNN: (U, C) char ids of distinct words -> (U, filters), max-pooled over each word."""

    def __init__(self, config: ReaderConfig):
        super().__init__()
        from qa.vocab import MAX_CHAR

        self.embed = nn.Embedding(MAX_CHAR + 2, config.char_dim, padding_idx=0)
        self.conv = nn.Conv1d(config.char_dim, config.char_filters, config.char_width, padding=config.char_width // 2)

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        x = self.embed(chars).transpose(1, 2)  # (U, char_dim, C)
        return F.relu(self.conv(x)).max(dim=-1).values  # (U, filters)


class WordEmbedding(nn.Module):
    """Frozen GloVe rows plus a trainable delta for the fine-tuned frequent words."""

    def __init__(self, vectors: torch.Tensor, tuned: int):
        super().__init__()
        self.register_buffer("vectors", vectors, persistent=False)  # (400000, 50), from the GloVe package
        self.delta = nn.Embedding(tuned + 1, vectors.shape[1], padding_idx=0)
        nn.init.zeros_(self.delta.weight)

    def forward(self, words: torch.Tensor, tuned: torch.Tensor) -> torch.Tensor:
        """Word ids (B, L) -> (B, L, 50); padding and unknown words get the zero vector plus their delta."""
        known = (words >= GLOVE_OFFSET).unsqueeze(-1)
        rows = F.embedding((words - GLOVE_OFFSET).clamp(min=0), self.vectors)
        return rows * known + self.delta(tuned)


class SequenceDropout(nn.Module):
    """Variational dropout: one mask per sequence and feature, shared across time steps.

    (B, L, D) -> (B, L, D). Sampling (B, 1, D) instead of (B, L, D) random numbers is also what
    keeps dropout cheap on CPU, where per-element sampling costs as much as an RNN layer.
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return inputs
        keep = torch.rand(inputs.shape[0], 1, inputs.shape[2], device=inputs.device) >= self.p
        return inputs * keep / (1 - self.p)


def reverse_padded(inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Reverse each row's real tokens in place, leaving padding where it is: (B, L, D) -> (B, L, D)."""
    lengths = mask.sum(-1, keepdim=True)  # (B, 1)
    positions = torch.arange(inputs.shape[1], device=inputs.device).unsqueeze(0)  # (1, L)
    index = torch.where(positions < lengths, lengths - 1 - positions, positions)  # (B, L)
    return inputs.gather(1, index.unsqueeze(-1).expand_as(inputs))


@functools.lru_cache(maxsize=None)
def cpu_has_bfloat16_kernels() -> bool:
    """Whether this CPU has bfloat16 kernels (AVX512-BF16, AMX), probed through the LSTM: oneDNN builds
    its bfloat16 LSTM only there and raises elsewhere, where ``BiLSTM`` runs in float32 and bfloat16
    autocast as a whole is emulated, several times slower (``BFLOAT16_SLOW``)."""
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            nn.LSTM(1, 1)(torch.zeros(1, 1, 1))
        return True
    except RuntimeError:
        return False


BFLOAT16_SLOW = ("this CPU has no bfloat16 kernels (AVX512-BF16 or AMX): bfloat16 autocast runs several times "
                 "slower than float32 here (5x measured on an AVX2-only CPU)")


def _float32_lstm(inputs: torch.Tensor) -> bool:
    """Whether ``BiLSTM`` must step out of bfloat16 autocast for ``inputs`` (see ``cpu_has_bfloat16_kernels``)."""
    return (inputs.device.type == "cpu" and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16 and not cpu_has_bfloat16_kernels())


class BiLSTM(nn.Module):
    """Stacked bidirectional LSTM layers, each with sequence dropout on its input.

    The backward direction runs a forward LSTM over each row reversed within its own length, so
    padding never reaches a real token (batched and single answers agree) while keeping the fast
    fused kernel that packed sequences lose on CPU.
    """

    def __init__(self, input_dim: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        sizes = [input_dim] + [2 * hidden] * (layers - 1)
        self.forward_rnns = nn.ModuleList(nn.LSTM(size, hidden, batch_first=True) for size in sizes)
        self.backward_rnns = nn.ModuleList(nn.LSTM(size, hidden, batch_first=True) for size in sizes)
        self.dropout = SequenceDropout(dropout)

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        exact = _float32_lstm(inputs)
        with torch.autocast("cpu", enabled=False) if exact else contextlib.nullcontext():
            inputs = inputs.float() if exact else inputs
            for forward_rnn, backward_rnn in zip(self.forward_rnns, self.backward_rnns):
                inputs = self.dropout(inputs)
                ahead = forward_rnn(inputs)[0]  # (B, L, H)
                behind = reverse_padded(backward_rnn(reverse_padded(inputs, mask))[0], mask)  # (B, L, H)
                inputs = torch.cat([ahead, behind], -1)  # (B, L, 2H)
        return inputs


@dataclass
class ReaderOutput:
    """Raw span logits (B, P) and the attention weights of this forward pass."""

    start_logits: torch.Tensor
    end_logits: torch.Tensor
    general_attention: torch.Tensor  # (B, P, Q) passage tokens over question tokens
    self_attention: torch.Tensor | None  # (B, P, P) passage over passage
    question_attention: torch.Tensor  # (B, Q) question summary weights
    general_scores: torch.Tensor  # (B, P, Q) the raw scores general_attention is the row softmax of
    null_logits: torch.Tensor | None = None  # (B,) each row's no-answer logit, with ``no_answer``


class NoAnswerScore(nn.Module):
    """A row's no-answer logit from its passage states pooled three ways: weighted by the start
    softmax, by the end softmax, and by a learned attention (DocumentQA's no-answer option).

    states (B, P, 2H), start and end logits (B, P), mask (B, P) -> (B,)."""

    def __init__(self, size: int, hidden: int):
        super().__init__()
        self.attend = nn.Linear(size, 1)
        self.score = nn.Sequential(nn.Linear(3 * size, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, states, start, end, mask):
        own = self.attend(states).squeeze(-1).masked_fill(~mask, torch.finfo(states.dtype).min)  # (B, P)
        pooled = [(weights.softmax(-1).unsqueeze(1) @ states).squeeze(1) for weights in (start, end, own)]
        return self.score(torch.cat(pooled, -1)).squeeze(-1)


class ReaderNet(nn.Module):
    """Passage and question BiLSTM encoders linked by general and self-attention."""

    def __init__(self, config: ReaderConfig, vectors: torch.Tensor):
        """The layers ``config`` names, stage by stage; ``vectors`` (V, word_dim) are the frozen GloVe rows."""
        super().__init__()
        self.config = config
        h2 = 2 * config.hidden
        token_dim = config.word_dim + config.char_filters + (config.contextual_size if config.contextual else 0)
        self.words = WordEmbedding(vectors, len(config.tuned_words))
        self.chars = CharCNN(config)
        # a learned mix of the chosen layers: one projection of their states side by side
        self.context = (nn.Linear(config.contextual_dim * len(config.contextual_layers), config.contextual_size)
                        if config.contextual else None)
        # Stage 1: aligned question embedding (general attention at the word level, DrQA).
        self.aligned = GeneralAttention(token_dim, token_dim, config.score, config.hidden, project=True)
        self.passage_encoder = BiLSTM(2 * token_dim + NUM_FEATURES, config.hidden, config.encoder_layers, config.dropout)
        self.question_encoder = BiLSTM(token_dim, config.hidden, config.encoder_layers, config.dropout)
        # Stage 2: gated passage-to-question attention over encoded states (R-Net), then a matching RNN.
        self.general = GeneralAttention(h2, h2, config.score, config.hidden, project=False, hard=config.hard_attention)
        self.gate = Gate(2 * h2) if config.gate else nn.Identity()
        self.matcher = BiLSTM(2 * h2, config.hidden, 1, config.dropout)
        # Stage 3: self-matching attention within the passage, fused with a residual connection.
        mode = config.passage_self_attention
        if mode not in ("off", "global", "local", "multihead"):
            raise UserError(f"unknown passage_self_attention {mode!r}")
        self.self_attention = None
        if mode != "off":
            self.self_attention = SelfAttention(
                h2, config.score, config.hidden,
                window=config.self_attention_window if mode == "local" else 0,
                heads=config.self_attention_heads if mode == "multihead" else 1,
            )
            self.fuse = nn.Linear(3 * h2, h2)
        # Stage 4: question summary and bilinear start/end scores against it (optionally a pointer step).
        self.pool = SelfAttentivePooling(h2) if config.question_self_attention else UniformPooling()
        self.start = nn.Linear(h2, h2, bias=False)
        self.end = nn.Linear(h2, h2, bias=False)
        self.pointer = nn.GRUCell(h2, h2) if config.answer_pointer else None
        self.null = NoAnswerScore(h2, config.hidden) if config.no_answer else None
        self.dropout = SequenceDropout(config.dropout)

    def _embed(self, words, tuned, spellings, spelled, context):
        """Word vectors, the character features of each token's spelling and, with ``contextual``, the
        projected contextual features: (B, L, 50 + filters [+ contextual_size])."""
        parts = [self.words(words, tuned), F.embedding(spellings, spelled)]
        if self.context is not None:
            parts.append(F.relu(self.context(context)))
        return torch.cat(parts, dim=-1)

    def forward(self, batch: Batch) -> ReaderOutput:
        """A batch of (passage, question) rows -> span and null logits with the attention weights used."""
        if self.context is not None and batch.passage_context is None:
            raise ValueError("this model reads contextual features: the batch carries none")
        p_mask, q_mask = batch.passage_mask, batch.question_mask
        spelled = self.chars(batch.spellings)  # (U, filters), once per distinct word of the batch
        passage = self._embed(batch.passage_words, batch.passage_tuned, batch.passage_spellings, spelled,
                              batch.passage_context)  # (B, P, E)
        question = self._embed(batch.question_words, batch.question_tuned, batch.question_spellings, spelled,
                               batch.question_context)  # (B, Q, E)
        aligned, _, _ = self.aligned(passage, question, q_mask)  # (B, P, E)
        p = self.passage_encoder(torch.cat([passage, aligned, batch.passage_features], -1), p_mask)  # (B, P, 2H)
        q = self.question_encoder(question, q_mask)  # (B, Q, 2H)
        attended, general_weights, general_scores = self.general(p, q, q_mask)  # (B, P, 2H), (B, P, Q) twice
        matched = self.matcher(self.gate(torch.cat([p, attended], -1)), p_mask)  # (B, P, 2H)
        self_weights = None
        if self.self_attention is not None:
            context, self_weights = self.self_attention(self.dropout(matched), p_mask)  # (B, P, 2H), (B, P, P)
            fused = torch.cat([matched, context, matched * context], -1)  # (B, P, 6H)
            matched = matched + F.relu(self.fuse(self.dropout(fused)))
        summary, question_weights = self.pool(q, q_mask)  # (B, 2H), (B, Q)
        start, end, null = self._span_logits(self.dropout(matched), summary, p_mask)
        return ReaderOutput(start, end, general_weights, self_weights, question_weights, general_scores, null)

    def _span_logits(self, matched: torch.Tensor, summary: torch.Tensor, mask: torch.Tensor):
        """Bilinear start and end logits (B, P) of passage states (B, P, 2H) against the question
        summary (B, 2H). With ``answer_pointer`` a GRU cell first reads the start-weighted passage
        into the end's query, so the end is scored knowing where the answer starts. With ``no_answer``
        also each row's null logit (B,), else None."""
        with torch.autocast(matched.device.type, enabled=False):  # the scores that rank answers stay float32
            matched, summary = matched.float(), summary.float()
            neg = torch.finfo(matched.dtype).min
            start = (matched @ self.start(summary).unsqueeze(-1)).squeeze(-1).masked_fill(~mask, neg)
            if self.pointer is not None:
                read = (start.softmax(-1).unsqueeze(1) @ matched).squeeze(1)  # (B, 2H)
                summary = self.pointer(read, summary)
            end = (matched @ self.end(summary).unsqueeze(-1)).squeeze(-1).masked_fill(~mask, neg)
            null = None if self.null is None else self.null(matched, start, end, mask)
        return start, end, null


def glove_tensor() -> torch.Tensor:
    """The (400000, 50) GloVe rows without a copy (memory-mapped; see ``qa.vocab.glove_matrix``)."""
    from qa.vocab import glove_matrix

    return torch.from_numpy(glove_matrix())


def grouped_logits(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Row logits (R, P) laid out per training group: (G, S * P), slot s of group g at [s * P, (s + 1) * P),
    empty slots at the lowest float, so one softmax over a row of the result spans the whole group."""
    rows, length = logits.shape
    groups, slots = batch.row_group, batch.row_slot
    if groups is None:  # every row its own group
        return logits
    grouped = logits.new_full((len(batch.answer_starts), int(slots.max()) + 1, length), torch.finfo(logits.dtype).min)
    grouped[groups, slots] = logits
    return grouped.flatten(1)


def group_null_logits(null: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Each group's null logit (G,): the log-mean-exp of its rows' (R,)."""
    if batch.row_group is None:
        return null
    counts = torch.bincount(batch.row_group, minlength=len(batch.answer_starts)).to(null.dtype)
    top = null.new_full(counts.shape, torch.finfo(null.dtype).min).scatter_reduce(0, batch.row_group, null, "amax")
    total = torch.zeros_like(counts).index_add(0, batch.row_group, (null - top[batch.row_group]).exp())
    return top + total.log() - counts.log()


def span_loss(output: ReaderOutput, batch: Batch, over: float | None = None) -> torch.Tensor:
    """Cross-entropy of the gold start and end, summed over the training groups and divided by ``over``
    (default: the number of groups, i.e. the mean; a data-parallel rank passes its share of the global batch).

    Shared normalization: one start and one end softmax over all positions of all rows of a group
    (``batch.row_group``; without it each row is a group). With a null logit the softmaxes also hold
    the group's null option, which is the target of a group whose ``answer_starts`` is -1."""
    starts, ends = grouped_logits(output.start_logits.float(), batch), grouped_logits(output.end_logits.float(), batch)
    start_target, end_target = batch.answer_starts, batch.answer_ends
    if output.null_logits is not None:
        null = group_null_logits(output.null_logits.float(), batch).unsqueeze(-1)  # (G, 1)
        starts, ends = torch.cat([starts, null], -1), torch.cat([ends, null], -1)
        no_answer = start_target < 0
        start_target = start_target.masked_fill(no_answer, starts.shape[1] - 1)
        end_target = end_target.masked_fill(no_answer, ends.shape[1] - 1)
    elif bool((start_target < 0).any()):
        raise UserError("a training group without an answer needs a model with the no_answer option")
    total = F.cross_entropy(starts, start_target, reduction="sum") + F.cross_entropy(ends, end_target, reduction="sum")
    return total / (over or len(start_target))
