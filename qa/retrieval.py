"""Cheap lexical ranking of texts for a question: BM25 (``rank_bm25``'s Okapi) over content lemmas.

Inference reads only the best-ranked windows of a long passage (``ReadingOptions.max_windows``);
training draws the other paragraphs of a question's article from those most like the question.
"""
from __future__ import annotations

import numpy as np

from qa.tokenize import STOP_WORDS, Tokens


def content_term(lemma: str) -> str | None:
    """A token's ranking term: its lemma lower-cased, or None for a stop word or punctuation."""
    term = lemma.lower()
    return term if lemma.isalnum() and term not in STOP_WORDS else None


def content_terms(tokens: Tokens) -> list[str]:
    """The lower-case lemmas of a text's content words: the terms texts are ranked by."""
    return [term for term in map(content_term, tokens.lemmas) if term is not None]


class Ranker:
    """BM25 over a fixed list of texts, asked with question after question."""

    def __init__(self, texts: list[Tokens]):
        from rank_bm25 import BM25Okapi

        corpus = [content_terms(text) for text in texts]
        self.size = len(texts)
        self._bm25 = BM25Okapi(corpus) if any(corpus) else None  # BM25 needs at least one term

    def __len__(self) -> int:
        return self.size

    def scores(self, question: Tokens) -> np.ndarray:
        """Each text's BM25 score for the question's content terms: (texts,)."""
        if self._bm25 is None:
            return np.zeros(self.size)
        return self._bm25.get_scores(content_terms(question))

    def best(self, question: Tokens, keep: int) -> list[int]:
        """The indices of the ``keep`` best-scoring texts, best first; ties go to the earlier text."""
        return np.argsort(-self.scores(question), kind="stable")[:keep].tolist()
