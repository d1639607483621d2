"""What reading returns: answers with character offsets, the attention maps behind them and the
span logits behind their scores. Plain data (numpy, no torch), so callers, renderers and the
evaluator can use the results without loading the network.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


def token_levels(ratio: np.ndarray, level_ratios: tuple[float, ...]) -> np.ndarray:
    """Level 0..len(level_ratios) of each ratio to the uniform weight: how many of ``level_ratios`` it reaches."""
    return np.searchsorted(np.asarray(level_ratios), ratio, side="right")


@dataclass
class AttentionMaps:
    """The attention weights of the forward pass that produced an answer, trimmed to real tokens.

    ``general[i, j]``: how much passage token i attends to question token j (rows sum to 1);
    ``self_attention[i, j]``: passage token i over passage token j (None when the model has none);
    ``question[j]``: weight of question token j in the question summary used to score spans;
    ``passage_by_question[j, i]``: the softmax over the passage of question word j's general-attention
    scores, i.e. which passage tokens match that word (the same scores ``general`` normalises per row).
    Tokens are ``(text, start, end)`` with character offsets into the passage or question; for a
    long passage the passage tokens are those of the window the answer came from. An array that
    the requested display did not need is None (``qa.heat.attention_maps``); with ``with_attention``
    all are there (``self_attention`` only for a model that has it).
    """

    passage_tokens: list[tuple[str, int, int]]
    question_tokens: list[tuple[str, int, int]]
    general: np.ndarray | None  # (P, Q)
    self_attention: np.ndarray | None  # (P, P)
    question: np.ndarray | None  # (Q,)
    passage_by_question: np.ndarray | None  # (Q, P)

    @cached_property
    def passage_offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """(P,) start and (P,) end character offsets of the passage tokens, made once per window."""
        return (np.array([s for _, s, _ in self.passage_tokens], dtype=np.int64),
                np.array([e for _, _, e in self.passage_tokens], dtype=np.int64))


@dataclass
class Heat:
    """One attention view as a distribution over the passage tokens of the answer's window.

    ``weights`` sums to 1; ``ratio`` is each weight over the uniform 1 / P, so a flat distribution
    is 1 everywhere whatever the passage length. ``starts``/``ends`` are the tokens' character offsets:
    arrays, shared by the answers of one window (``AttentionMaps.passage_offsets``), since a
    question's kept answers each carry a heat and per-answer lists of ints once dominated the
    memory of evaluating long documents."""

    view: str
    starts: np.ndarray  # (P,) integer
    ends: np.ndarray  # (P,) integer
    weights: np.ndarray  # (P,)
    level_ratios: tuple[float, ...]  # level k needs level_ratios[k - 1] times the uniform weight (qa.heat)

    @property
    def ratio(self) -> np.ndarray:
        """(P,) weight / uniform weight."""
        return self.weights * len(self.weights)

    def levels(self) -> np.ndarray:
        """(P,) level of each token: how many of ``level_ratios`` its ratio to uniform reaches (0 not shown)."""
        return token_levels(self.ratio, self.level_ratios)

    def to_dict(self) -> dict:
        return {"view": self.view, "level_ratios": list(self.level_ratios),
                "tokens": [{"start": int(s), "end": int(e), "weight": round(float(w), 5)}
                           for s, e, w in zip(self.starts, self.ends, self.weights)]}


@dataclass
class DocumentHeat:
    """Where in a passage read in several windows the attention lies: for each passage token, the
    highest ratio to uniform that any window's heat (``view``) gave it. Characters ``[start, end)``."""

    view: str
    starts: list[int]
    ends: list[int]
    ratio: np.ndarray  # (tokens of the whole passage,)
    level_ratios: tuple[float, ...]  # as ``Heat``'s

    def levels(self) -> np.ndarray:
        """Level of each token of the whole passage, as ``Heat.levels``."""
        return token_levels(self.ratio, self.level_ratios)


@dataclass
class Evidence:
    """What the answer's own tokens attended to, every weight labelled with its tokens.

    ``passage``: the passage tokens the answer's tokens drew on (their mean self-attention row),
    heaviest first, as ``(text, start, end, weight)``; ``question``: the question words the answer's
    tokens aligned with (their mean general-attention row), as ``(text, start, end, weight)`` with
    offsets into the question, heaviest first."""

    passage: list[tuple[str, int, int, float]]
    question: list[tuple[str, int, int, float]]

    def to_dict(self) -> dict:
        def rows(items):
            return [{"text": t, "start": s, "end": e, "weight": round(w, 4)} for t, s, e, w in items]

        return {"passage": rows(self.passage), "question": rows(self.question)}


@dataclass
class SpanLogits:
    """Raw start/end logits of the passage's tokens that were read (each from the window that owns it)
    and the logit sum of the top span, from which the top answer's score at any temperature follows
    (see ``qa.calibration``)."""

    start: np.ndarray  # (tokens read,)
    end: np.ndarray  # (tokens read,)
    best: float  # start[i] + end[j] of the top span
    null: float | None = None  # the passage's null logit, with the no-answer option

    def log_normalizers(self, temperature: float) -> tuple[float, float]:
        """log of the start and end softmaxes' denominators at ``temperature``, the null option's included."""
        start = float(np.logaddexp.reduce(self.start.astype(np.float64) / temperature))
        end = float(np.logaddexp.reduce(self.end.astype(np.float64) / temperature))
        if self.null is None:
            return start, end
        return float(np.logaddexp(start, self.null / temperature)), float(np.logaddexp(end, self.null / temperature))

    def no_answer(self, temperature: float) -> float | None:
        """The probability that the passage holds no answer (null as both start and end), None without the option."""
        if self.null is None:
            return None
        return math.exp(2 * self.null / temperature - sum(self.log_normalizers(temperature)))


@dataclass(frozen=True)
class Source:
    """Where an answer read from a collection of documents comes from: the document's path, the page
    (PDF) or heading it sits under, and its character offsets into that document's text."""

    path: str
    start: int
    end: int
    page: int | None = None
    heading: str | None = None

    def __str__(self) -> str:
        """As the terminal shows it: "annual-report.pdf, page 12" or "notes.md, under Results"."""
        where = f", page {self.page}" if self.page is not None else ""
        return self.path + where + (f", under {self.heading}" if self.heading else "")

    def to_dict(self) -> dict:
        return {"path": self.path, "page": self.page, "heading": self.heading, "start": self.start, "end": self.end}


@dataclass
class Answer:
    """One answer: ``context[start:end] == text``; ``score`` is p(start) * p(end) at the model's
    calibrated temperature, the softmaxes taken over the whole passage (all its windows together)."""

    text: str
    start: int
    end: int
    score: float
    attention: AttentionMaps | None = field(default=None, repr=False)  # with ``with_attention=True``
    logits: SpanLogits | None = field(default=None, repr=False)  # with ``with_logits=True`` (calibration)
    heat: Heat | None = field(default=None, repr=False)  # with ``heat_view``: where the model looked
    evidence: Evidence | None = field(default=None, repr=False)  # with ``with_attention=True``
    # with ``with_attention=True``, a heat view and a passage of several windows: the heat of all of them
    document_heat: DocumentHeat | None = field(default=None, repr=False)
    source: Source | None = None  # read from a collection (``qa.collection``): the document it came from

    def to_dict(self) -> dict:
        """The keys of the Hugging Face question-answering pipeline, and the source of an answer read
        from a collection (``start``/``end`` then index the collection's joined text)."""
        keys = {"answer": self.text, "score": self.score, "start": self.start, "end": self.end}
        return keys if self.source is None else {**keys, "source": self.source.to_dict()}


@dataclass
class Prediction:
    """The ranked answers (best first, each character span once) to one question: with the
    no-answer option, ``no_answer`` is the probability that the passage does not answer it, and
    ``abstained`` says whether the reader stood by that (the answers then stay as best guesses);
    ``threshold`` is the probability above which it abstains, shown beside ``no_answer``."""

    id: str
    answers: list[Answer]
    no_answer: float | None = None  # None: a model without the no-answer option
    abstained: bool = False
    threshold: float | None = None  # None: a model without the no-answer option

    @property
    def text(self) -> str:
        """The top answer's text, "" when there is none or the reader abstained: the official
        predictions format (SQuAD 2.0's "" for no answer)."""
        return self.answers[0].text if self.answers and not self.abstained else ""


def best_texts(predictions: list[Prediction]) -> dict[str, str]:
    """Question id -> top answer text: the official ``predictions.json``."""
    return {p.id: p.text for p in predictions}


def na_prob(predictions: list[Prediction]) -> dict[str, float]:
    """Question id -> the probability that the passage does not answer: the model's, or for a model without
    the option 1 - its top answer's score (the official ``na_prob.json``)."""
    return {p.id: p.no_answer if p.no_answer is not None else 1.0 - (p.answers[0].score if p.answers else 0.0)
            for p in predictions}
