"""Attention a person can read: the views of the model's own attention as a distribution over
the passage, their levels on an absolute scale, the evidence behind an answer, and how often the
view's heaviest sentence holds the answer.

Every view is a quantity the forward pass computes (``AttentionMaps``); none is made up for
display. Levels are read off the ratio to the uniform weight 1 / P, so a flat distribution shows
nothing and a level means the same on a short paragraph and a long window; the ratio each level
needs is fitted per model and view on dev, so that each level marks the same share of tokens.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from qa.answers import Answer, AttentionMaps, DocumentHeat, Evidence, Heat
from qa.errors import UserError

if TYPE_CHECKING:  # no torch import for the terminal's rendering
    from qa.model import ReaderOutput
    from qa.tokenize import Tokens

VIEWS = {
    "self": "passage token i gets the mean self-attention that the answer's tokens pay to it",
    "question": "passage token i gets sum_j q_j * softmax_i(s_ij): for each question word j, the softmax over "
                "the passage of its general-attention scores s_ij (which passage tokens match it), mixed by "
                "the question summary weights q_j",
    "general": "passage token i gets sum_j q_j * a_ij: its general attention a_ij over question word j (each "
               "row sums to 1 over the question, so this is near flat), weighted by q_j, normalised over the passage",
}
ANSWER_DEPENDENT_VIEWS = frozenset({"self"})  # views that differ from one answer to another in a window
# A model's own view is the one with the best answer-sentence hit rate on SQuAD v1.1 dev, recorded in its
# config.json by scripts/attention_views.py --record; a model that records none is shown this one.
DEFAULT_VIEW = "self"
# Level k (1..4) of a token needs at least level_ratios[k - 1] times the uniform weight; level 0 is not shown.
# Each model records its own per view (fit_level_ratios, by scripts/attention_views.py --record), since one
# model's heat is flatter than another's; a model that records none is shown LEVEL_RATIOS, chosen by hand
# on fast's self view. LEVEL_SHARES are the shares of tokens at or above each level that the fitted ones
# give on SQuAD v1.1 dev: those LEVEL_RATIOS gave on 300 dev questions of fast's self view.
LEVEL_RATIOS = (1.5, 2.0, 3.0, 5.0)
LEVEL_SHARES = (0.13, 0.064, 0.021, 0.005)
LOWEST_LEVEL_RATIO = 1.1  # a fitted level 1 needs at least this, so a flat distribution still shows nothing
EVIDENCE_ROWS = 6


def token_heat(maps: AttentionMaps, view: str, answer_tokens: range) -> np.ndarray:
    """(P,) distribution over the window's passage tokens under ``VIEWS[view]``."""
    if view == "question":
        weights = maps.question @ maps.passage_by_question  # (Q,) @ (Q, P) -> (P,)
    elif view == "general":
        weights = maps.general @ maps.question  # (P, Q) @ (Q,) -> (P,)
    elif view == "self":
        if maps.self_attention is None:
            raise UserError("this model has no passage self-attention: choose another attention view "
                            "(--attention question or general)")
        weights = maps.self_attention[list(answer_tokens)].mean(0)  # (P,)
    else:
        raise ValueError(f"unknown attention view {view!r}")  # options are checked before reading
    return (weights / max(float(weights.sum()), 1e-12)).astype(np.float32)


def answer_token_range(maps: AttentionMaps, start: int, end: int) -> range:
    """Indices of the window's passage tokens inside characters ``[start, end)``."""
    inside = [i for i, (_, s, e) in enumerate(maps.passage_tokens) if s >= start and e <= end]
    return range(inside[0], inside[-1] + 1) if inside else range(0)


def heat_of(maps: AttentionMaps, view: str, start: int, end: int,
            level_ratios: tuple[float, ...] = LEVEL_RATIOS) -> Heat:
    """The ``view`` heat of the answer at characters ``[start, end)``, shown at ``level_ratios``."""
    weights = token_heat(maps, view, answer_token_range(maps, start, end))
    return Heat(view, *maps.passage_offsets, weights, level_ratios)


def _token_triples(tokens: "Tokens") -> list[tuple[str, int, int]]:
    return list(zip(tokens.words, tokens.starts, tokens.ends))


def attention_maps(output: "ReaderOutput", row: int, window: "Tokens", question: "Tokens",
                   needed: frozenset[str]) -> AttentionMaps:
    """Batch row ``row``'s attention trimmed to its real tokens, copied out of the batch: only the
    arrays named in ``needed`` (``AttentionMaps`` field names), the others None, since a (P, P)
    self-attention copy per row once dominated the time of evaluating with a heat view."""
    p, q = len(window), len(question)
    arrays = {}
    if "general" in needed:
        arrays["general"] = output.general_attention[row, :p, :q]
    if "self_attention" in needed and output.self_attention is not None:
        arrays["self_attention"] = output.self_attention[row, :p, :p]
    if "question" in needed:
        arrays["question"] = output.question_attention[row, :q]
    if "passage_by_question" in needed:  # each question word's softmax over the passage: (Q, P)
        arrays["passage_by_question"] = output.general_scores[row, :p, :q].float().transpose(0, 1).softmax(-1)
    return AttentionMaps(_token_triples(window), _token_triples(question),
                         **{name: arrays[name].float().numpy().copy() if name in arrays else None for name in ALL_MAPS})


# the AttentionMaps arrays each view reads
VIEW_NEEDS = {"self": frozenset({"self_attention"}), "question": frozenset({"question", "passage_by_question"}),
              "general": frozenset({"general", "question"})}
ALL_MAPS = frozenset({"general", "self_attention", "question", "passage_by_question"})


@dataclass(frozen=True)
class HeatDisplay:
    """What reading shows beside the answers (``qa.inference.Display``): the ``view`` heat at ``levels``
    (None: none) and, ``with_attention``, the window's attention maps, the answer's evidence and, for a
    passage read in several windows, the document strip."""

    view: str | None
    levels: tuple[float, ...] = LEVEL_RATIOS
    with_attention: bool = False

    def __post_init__(self):
        if self.view is not None and self.view not in VIEWS:
            raise UserError(f"unknown attention view {self.view!r}; choose {', '.join(VIEWS)} or none")
        try:
            checked_level_ratios(self.levels)
        except ValueError as error:
            raise UserError(str(error)) from None

    @property
    def document_strip(self) -> bool:
        return self.with_attention and self.view is not None

    def decorate(self, output: "ReaderOutput", row: int, window: "Tokens", question: "Tokens",
                 answers: list[Answer]) -> None:
        """Give ``answers`` (found in batch row ``row``) their heat, and their maps and evidence ``with_attention``."""
        needed = ALL_MAPS if self.with_attention else VIEW_NEEDS.get(self.view, frozenset())
        if not answers or not needed:
            return
        maps = attention_maps(output, row, window, question, needed)
        shared = heat_of(maps, self.view, 0, 0, self.levels) if self.view and self.view not in ANSWER_DEPENDENT_VIEWS else None
        for answer in answers:
            if self.view:
                answer.heat = shared or heat_of(maps, self.view, answer.start, answer.end, self.levels)
            if self.with_attention:
                answer.attention, answer.evidence = maps, evidence_of(maps, answer.start, answer.end)

    def document(self, tokens: "Tokens", strip: np.ndarray, answers: list[Answer]) -> None:
        """Give ``answers`` the heat of every window read: ``strip`` holds each passage token's highest ratio."""
        heat = DocumentHeat(self.view, tokens.starts, tokens.ends, strip, self.levels)
        for answer in answers:
            answer.document_heat = heat


def checked_level_ratios(values) -> tuple[float, ...]:
    """``values`` as level ratios: one per level (4), each a number above 0 and above the one before;
    otherwise a ValueError that says so."""
    if (not isinstance(values, (list, tuple)) or len(values) != len(LEVEL_RATIOS)
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
        raise ValueError(f"level ratios must be {len(LEVEL_RATIOS)} numbers, got {values!r}")
    ratios = tuple(float(v) for v in values)
    if not 0 < ratios[0] or any(b <= a for a, b in zip(ratios, ratios[1:])):
        raise ValueError(f"level ratios must be positive and increasing, got {list(ratios)}")
    return ratios


def fit_level_ratios(ratios: np.ndarray, shares: tuple[float, ...] = LEVEL_SHARES) -> tuple[float, ...]:
    """Level ratios that put ``shares`` of the tokens of a sample (``ratios``: each token's ratio to the
    uniform weight, pooled over many heats) at or above each level: the sample's (1 - share) quantiles,
    rounded to 2 decimals, at least ``LOWEST_LEVEL_RATIO`` and each above the one before."""
    fitted = []
    for share in shares:
        ratio = max(round(float(np.quantile(ratios, 1.0 - share)), 2), LOWEST_LEVEL_RATIO)
        fitted.append(max(ratio, round(fitted[-1] + 0.01, 2)) if fitted else ratio)
    return tuple(fitted)


def evidence_of(maps: AttentionMaps, start: int, end: int, rows: int = EVIDENCE_ROWS) -> Evidence | None:
    """The passage tokens and question words the answer's tokens attended to (None without answer tokens)."""
    inside = list(answer_token_range(maps, start, end))
    if not inside:
        return None
    passage = []
    if maps.self_attention is not None:
        drawn = maps.self_attention[inside].mean(0)  # (P,)
        passage = [(*maps.passage_tokens[i], float(drawn[i])) for i in np.argsort(-drawn, kind="stable")[:rows]]
    aligned = maps.general[inside].mean(0)  # (Q,)
    question = [(*maps.question_tokens[j], float(aligned[j])) for j in np.argsort(-aligned, kind="stable")[:rows]]
    return Evidence(passage, question)


@dataclass
class SentenceHits:
    """Running answer-sentence hit rate of one view over answerable questions.

    For each question: the passage's sentences (spaCy's sentencizer), each sentence's share of the
    heat, and whether the heaviest sentence holds a gold answer; beside it the chance of that with
    a uniformly chosen sentence (1 / sentences) and with one chosen in proportion to its length."""

    view: str
    questions: int = 0
    hits: int = 0
    chance: float = 0.0
    length_weighted_chance: float = 0.0
    _sentences: dict = field(default_factory=dict, repr=False)  # passage -> its sentence spans

    def add(self, passage: str, heat: Heat, answer_starts: list[int]) -> None:
        """Count one answered question whose gold answers start at ``answer_starts``."""
        from qa.tokenize import sentence_spans

        if passage not in self._sentences:
            self._sentences = {passage: sentence_spans(passage)}  # questions come passage by passage
        # only the sentences the heat's window covers compete
        first, last = heat.starts[0], heat.ends[-1]
        sentences = [(s, e) for s, e in self._sentences[passage] if e > first and s < last]
        if not sentences:
            return
        token_starts = np.asarray(heat.starts)
        mass = [float(heat.weights[(token_starts >= s) & (token_starts < e)].sum()) for s, e in sentences]
        holds = [any(s <= a < e for a in answer_starts) for s, e in sentences]
        lengths = np.array([e - s for s, e in sentences], dtype=np.float64)
        self.questions += 1
        self.hits += holds[int(np.argmax(mass))]
        self.chance += 1 / len(sentences)
        self.length_weighted_chance += float(lengths[holds].sum() / lengths.sum())

    def result(self) -> dict:
        """The figures of ``metrics.json``'s ``attention`` entry."""
        n = max(self.questions, 1)
        return {"view": self.view, "questions": self.questions, "answer_sentence_hit_rate": self.hits / n,
                "chance": self.chance / n, "length_weighted_chance": self.length_weighted_chance / n}
