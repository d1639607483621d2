"""What reading returns: answers with character offsets, the attention maps behind them and the
span logits behind their scores. Plain data (numpy, no torch), so callers, renderers and the
evaluator can use the results without loading the network.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class AttentionMaps:
    """The attention weights of the forward pass that produced an answer, trimmed to real tokens.

    ``general[i, j]``: how much passage token i attends to question token j (rows sum to 1);
    ``self_attention[i, j]``: passage token i over passage token j (None when the model has none);
    ``question[j]``: weight of question token j in the question summary used to score spans.
    Tokens are ``(text, start, end)`` with character offsets into the passage or question; for a
    long passage the passage tokens are those of the window the answer came from.
    """

    passage_tokens: list[tuple[str, int, int]]
    question_tokens: list[tuple[str, int, int]]
    general: np.ndarray  # (P, Q)
    self_attention: np.ndarray | None  # (P, P)
    question: np.ndarray  # (Q,)


@dataclass
class SpanLogits:
    """Raw start/end logits over one window's tokens and the logit sum of its top span, from which
    the top answer's score at any temperature follows (see ``qa.calibration``)."""

    start: np.ndarray  # (P,)
    end: np.ndarray  # (P,)
    best: float  # start[i] + end[j] of the top span


@dataclass
class Answer:
    """One answer: ``context[start:end] == text``; ``score`` is p(start) * p(end) at the model's
    calibrated temperature, within the window the answer was read from."""

    text: str
    start: int
    end: int
    score: float
    attention: AttentionMaps | None = None  # with ``with_attention=True``
    logits: SpanLogits | None = field(default=None, repr=False)  # with ``with_logits=True`` (calibration)

    def to_dict(self) -> dict:
        """The keys of the Hugging Face question-answering pipeline."""
        return {"answer": self.text, "score": self.score, "start": self.start, "end": self.end}


@dataclass
class Prediction:
    """The ranked answers (best first, each character span once) to one question."""

    id: str
    answers: list[Answer]

    @property
    def text(self) -> str:
        """The top answer's text, "" when there is none: the official predictions format."""
        return self.answers[0].text if self.answers else ""


def best_texts(predictions: list[Prediction]) -> dict[str, str]:
    """Question id -> top answer text: the official ``predictions.json``."""
    return {p.id: p.text for p in predictions}

