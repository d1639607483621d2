"""Run a reader network over prepared examples and turn token spans into text answers."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from qa.batching import Batcher
from qa.decode import best_spans
from qa.features import PreparedSet
from qa.model import ReaderNet


@dataclass
class AttentionMaps:
    """The attention weights of the forward pass that produced an answer, trimmed to real tokens.

    ``general[i, j]``: how much passage token i attends to question token j (rows sum to 1);
    ``self_attention[i, j]``: passage token i over passage token j (None when the model has none);
    ``question[j]``: weight of question token j in the question summary used to score spans.
    Tokens are ``(text, start, end)`` with character offsets into the passage or question.
    """

    passage_tokens: list[tuple[str, int, int]]
    question_tokens: list[tuple[str, int, int]]
    general: np.ndarray  # (P, Q)
    self_attention: np.ndarray | None  # (P, P)
    question: np.ndarray  # (Q,)


def _token_triples(tokens) -> list[tuple[str, int, int]]:
    return list(zip(tokens.words, tokens.starts, tokens.ends))


@dataclass
class Prediction:
    """Top answers for one question: texts with ``[start, end)`` character offsets and scores."""

    id: str
    texts: list[str]
    starts: list[int]
    ends: list[int]
    scores: list[float]
    attention: AttentionMaps | None = None
    logits: SpanLogits | None = None


@dataclass
class SpanLogits:
    """Raw start/end logits over the passage tokens and the logit sum of the top span, from which
    the top answer's score at any temperature follows (see ``qa.calibration``)."""

    start: np.ndarray  # (P,)
    end: np.ndarray  # (P,)
    best: float  # start[i] + end[j] of the top span


def best_texts(predictions: list[Prediction]) -> dict[str, str]:
    """Question id -> top answer text ("" when there is none): the official predictions format."""
    return {p.id: (p.texts[0] if p.texts else "") for p in predictions}


def _attention_maps(output, row: int, passage, question) -> AttentionMaps:
    p, q = len(passage), len(question)
    self_weights = output.self_attention
    return AttentionMaps(
        _token_triples(passage), _token_triples(question),
        output.general_attention[row, :p, :q].float().numpy().copy(),
        None if self_weights is None else self_weights[row, :p, :p].float().numpy().copy(),
        output.question_attention[row, :q].float().numpy().copy(),
    )


@torch.inference_mode()
def predict(net: ReaderNet, batcher: Batcher, data: PreparedSet, batch_size: int = 64,
            max_answer_len: int = 15, top_k: int = 1, progress=None, with_attention: bool = False,
            temperature: float = 1.0, with_logits: bool = False, bfloat16: bool = False) -> list[Prediction]:
    """Predictions in the order of ``data.examples``; batches group passages of similar length.

    Scores are taken at ``temperature``. With ``with_attention`` each prediction carries its
    ``AttentionMaps``, with ``with_logits`` its ``SpanLogits``. With ``bfloat16`` the network runs
    under bfloat16 autocast (faster on CPUs with AVX512-BF16 or AMX); span scores stay float32."""
    net.eval()
    device = next(net.parameters()).device
    order = sorted(range(len(data.examples)), key=lambda i: len(data.context_tokens[data.examples[i].context_index]))
    results: list[Prediction | None] = [None] * len(order)
    encoded = [batcher.encode(tokens) for tokens in data.context_tokens]  # each passage once, not per question
    for first in range(0, len(order), batch_size):
        chunk = order[first : first + batch_size]
        examples = [data.examples[i] for i in chunk]
        passages = [data.context_tokens[e.context_index] for e in examples]
        batch = batcher.collate([encoded[e.context_index] for e in examples],
                                [batcher.encode(e.question) for e in examples]).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bfloat16):
            output = net(batch)
        starts, ends, scores = best_spans(output.start_logits, output.end_logits,
                                          batch.passage_mask, max_answer_len, top_k, temperature)
        for row, (i, example, tokens) in enumerate(zip(chunk, examples, passages)):
            context = data.contexts[example.context_index]
            keep = [j for j in range(starts.shape[1]) if scores[row, j] > 0 and int(ends[row, j]) < len(tokens)]
            char_starts = [tokens.starts[int(starts[row, j])] if len(tokens) else 0 for j in keep]
            char_ends = [tokens.ends[int(ends[row, j])] if len(tokens) else 0 for j in keep]
            results[i] = Prediction(example.id, [context[s:e] for s, e in zip(char_starts, char_ends)],
                                    char_starts, char_ends, [float(scores[row, j]) for j in keep])
            if with_attention:
                results[i].attention = _attention_maps(output, row, tokens, example.question)
            if with_logits:
                start, end = output.start_logits[row, : len(tokens)], output.end_logits[row, : len(tokens)]
                best = float(start[starts[row, 0]] + end[ends[row, 0]])
                results[i].logits = SpanLogits(start.float().cpu().numpy(), end.float().cpu().numpy(), best)
        if progress is not None:
            progress(len(chunk))
    return results
