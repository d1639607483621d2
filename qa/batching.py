"""Examples -> padded tensor batches with named fields, and length-bucketed batch orders.

Passage features per token (DrQA): exact match of the word with a question word in original
form, in lower case, and by lemma, and the word's normalised term frequency in the passage.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, fields

import numpy as np
import torch

from qa.tokenize import Tokens
from qa.vocab import Vocabulary, char_ids

NUM_FEATURES = 4


@dataclass
class Batch:
    """Padded inputs for B questions; masks are True on real tokens."""

    passage_words: torch.Tensor  # (B, P) word ids
    passage_tuned: torch.Tensor  # (B, P) fine-tuned word slots
    passage_chars: torch.Tensor  # (B, P, C) character ids
    passage_features: torch.Tensor  # (B, P, NUM_FEATURES)
    passage_mask: torch.Tensor  # (B, P) bool
    question_words: torch.Tensor  # (B, Q)
    question_tuned: torch.Tensor  # (B, Q)
    question_chars: torch.Tensor  # (B, Q, C)
    question_mask: torch.Tensor  # (B, Q) bool
    answer_starts: torch.Tensor | None = None  # (B,) token index, training only
    answer_ends: torch.Tensor | None = None  # (B,)

    def __len__(self) -> int:
        return self.passage_words.shape[0]

    def to(self, device: torch.device) -> "Batch":
        """The same batch with every tensor on ``device``."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return Batch(**{k: v.to(device) if v is not None else None for k, v in moved.items()})


def passage_features(passage: Tokens, question: Tokens) -> np.ndarray:
    """(P, 4) exact-match (original, lower, lemma) and term-frequency features of a passage."""
    original = set(question.words)
    lower = {w.lower() for w in question.words}
    lemmas = set(question.lemmas)
    counts = Counter(w.lower() for w in passage.words)
    total = max(len(passage), 1)
    return np.array(
        [
            (w in original, w.lower() in lower, l in lemmas, counts[w.lower()] / total)
            for w, l in zip(passage.words, passage.lemmas)
        ],
        dtype=np.float32,
    ).reshape(len(passage), NUM_FEATURES)


class Batcher:
    """Turns (passage tokens, question tokens) pairs into a ``Batch`` for one vocabulary."""

    def __init__(self, vocab: Vocabulary, max_word_chars: int):
        self.vocab = vocab
        self.max_word_chars = max_word_chars
        self._chars: dict[str, list[int]] = {}

    def _fill_words(self, sequences: list[list[str]]):
        length = max(1, max(len(s) for s in sequences))
        words = np.zeros((len(sequences), length), dtype=np.int64)
        tuned = np.zeros_like(words)
        chars = np.zeros((len(sequences), length, self.max_word_chars), dtype=np.int64)
        for b, sequence in enumerate(sequences):
            for t, word in enumerate(sequence):
                words[b, t] = self.vocab.word_id(word)
                tuned[b, t] = self.vocab.tuned_id(word)
                ids = self._chars.get(word)
                if ids is None:
                    ids = self._chars.setdefault(word, char_ids(word, self.max_word_chars))
                chars[b, t, : len(ids)] = ids
        return torch.from_numpy(words), torch.from_numpy(tuned), torch.from_numpy(chars), torch.from_numpy(words != 0)

    def batch(self, passages: list[Tokens], questions: list[Tokens], spans: list[tuple[int, int]] | None = None) -> Batch:
        p_words, p_tuned, p_chars, p_mask = self._fill_words([p.words for p in passages])
        q_words, q_tuned, q_chars, q_mask = self._fill_words([q.words for q in questions])
        # Empty sequences still need one (masked-in) slot so softmaxes stay finite.
        p_mask[:, 0] = True
        q_mask[:, 0] = True
        features = torch.zeros(p_words.shape + (NUM_FEATURES,))
        for b, (p, q) in enumerate(zip(passages, questions)):
            features[b, : len(p)] = torch.from_numpy(passage_features(p, q))
        batch = Batch(p_words, p_tuned, p_chars, features, p_mask, q_words, q_tuned, q_chars, q_mask)
        if spans is not None:
            batch.answer_starts = torch.tensor([s for s, _ in spans])
            batch.answer_ends = torch.tensor([e for _, e in spans])
        return batch


def bucketed_batches(lengths: list[int], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Batches of similar length (sorted with noise) in random order; fully sorted order hurts."""
    noisy = np.asarray(lengths, dtype=np.float64) + rng.uniform(0, 10, len(lengths))
    order = np.argsort(noisy, kind="stable")
    batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]

