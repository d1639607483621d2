"""Examples -> padded tensor batches with named fields, and length-bucketed batch orders.

Each text is first encoded once into id arrays (``EncodedText``); a batch is then only padding
and array copies. Training encodes its whole set up front, so no step pays for Python loops
over tokens. Passage features per token (DrQA): exact match of the word with a question word
in original form, in lower case, and by lemma, and the word's normalised term frequency in
the passage.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

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
    passage_spellings: torch.Tensor  # (B, P) row of each token in ``spellings``
    passage_features: torch.Tensor  # (B, P, NUM_FEATURES)
    passage_mask: torch.Tensor  # (B, P) bool
    question_words: torch.Tensor  # (B, Q)
    question_tuned: torch.Tensor  # (B, Q)
    question_spellings: torch.Tensor  # (B, Q)
    question_mask: torch.Tensor  # (B, Q) bool
    spellings: torch.Tensor  # (U, C) character ids of the batch's distinct words; row 0 is padding
    passage_context: torch.Tensor | None = None  # (B, P, D) contextual features (qa.contextual), when the model uses them
    question_context: torch.Tensor | None = None  # (B, Q, D)
    answer_starts: torch.Tensor | None = None  # (G,) training target per group: token index (slot * P + token), -1 = none
    answer_ends: torch.Tensor | None = None  # (G,)
    row_group: torch.Tensor | None = None  # (B,) training group of each row; None: each row is its own group
    row_slot: torch.Tensor | None = None  # (B,) the row's place within its group

    def __len__(self) -> int:
        return self.passage_words.shape[0]

    def to(self, device: torch.device) -> "Batch":
        """The same batch with every tensor on ``device``."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return Batch(**{k: v.to(device) if v is not None else None for k, v in moved.items()})


@dataclass
class EncodedText:
    """One text as arrays of length L: what a batch needs from it, computed once.

    ``surface``, ``lower`` and ``lemma`` are 64-bit string hashes, compared only within one
    process, for the exact-match features; ``frequency`` is each token's lower-case word count
    over L (the passage term-frequency feature)."""

    words: np.ndarray  # (L,) int64 word ids
    tuned: np.ndarray  # (L,) int64 fine-tuned slots
    chars: np.ndarray  # (L, C) int16 character ids
    surface: np.ndarray  # (L,) int64
    lower: np.ndarray  # (L,) int64
    lemma: np.ndarray  # (L,) int64
    frequency: np.ndarray  # (L,) float32
    context: np.ndarray | None = None  # (L, D) contextual features (qa.contextual), for a model that reads them

    def __len__(self) -> int:
        return len(self.words)

    def with_context(self, features: np.ndarray) -> "EncodedText":
        """The same text carrying its (L, D) contextual features."""
        if len(features) != len(self):
            raise ValueError(f"{len(features)} feature rows for a text of {len(self)} tokens")
        return replace(self, context=features)


def _pad(arrays: list[np.ndarray], length: int, dtype=np.int64) -> np.ndarray:
    """Arrays of shape (L_b,) or (L_b, C), zero-padded to ``length`` and stacked: (B, L) or (B, L, C)."""
    out = np.zeros((len(arrays), length) + arrays[0].shape[1:], dtype=dtype)
    for b, array in enumerate(arrays):
        out[b, : len(array)] = array
    return out


def _padded(texts: list[EncodedText], name: str, length: int, dtype=np.int64) -> np.ndarray:
    """Field ``name`` of each text, zero-padded to ``length``: (B, L) or (B, L, C)."""
    return _pad([getattr(t, name) for t in texts], length, dtype)


def _padded_context(texts: list[EncodedText], length: int) -> torch.Tensor:
    """The texts' contextual features zero-padded to ``length`` and stacked: (B, length, D) float32."""
    out = np.zeros((len(texts), length, texts[0].context.shape[1]), dtype=np.float32)
    for b, text in enumerate(texts):
        out[b, : len(text)] = text.context
    return torch.from_numpy(out)


def _matches(passage_keys: np.ndarray, question_keys: np.ndarray, question_real: np.ndarray) -> np.ndarray:
    """(B, P) whether each passage key equals one of its own question's real keys (B, Q)."""
    return ((passage_keys[:, :, None] == question_keys[:, None, :]) & question_real[:, None, :]).any(-1)


def passage_features(passages: list[EncodedText], questions: list[EncodedText], length: int) -> np.ndarray:
    """(B, P, 4) exact-match (original, lower, lemma) and term-frequency features, zero on padding."""
    q_length = max(1, max(len(q) for q in questions))
    question_real = np.arange(q_length) < np.array([len(q) for q in questions])[:, None]  # (B, Q)
    passage_real = np.arange(length) < np.array([len(p) for p in passages])[:, None]  # (B, P)
    matches = [
        _matches(_padded(passages, key, length), _padded(questions, key, q_length), question_real) & passage_real
        for key in ("surface", "lower", "lemma")
    ]
    return np.stack(matches + [_padded(passages, "frequency", length, np.float32)], axis=-1).astype(np.float32)


def rounded_up(count: int, multiple: int) -> int:
    """``count`` rounded up to a multiple of ``multiple``."""
    return -(-count // multiple) * multiple


def distinct_spellings(groups: list[list[EncodedText]], lengths: list[int],
                       multiple: int = 1) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The character rows (U, C) of the distinct words in all ``groups`` of texts (row 0: the
    padding word; U padded with padding words up to a multiple of ``multiple``), and for each group a
    (B, L) index of every token's row, padding at 0.

    A batch repeats most words (passages are shared by several questions), so the character CNN
    runs once per distinct word instead of once per token."""
    texts = [t for group in groups for t in group]
    keys = np.concatenate([t.surface for t in texts])
    chars = np.concatenate([t.chars for t in texts])
    _, first, rows = np.unique(keys, return_index=True, return_inverse=True)
    # rows in order of first appearance: string hashes are salted per process, and a batch must
    # be the same batch in every process (a resumed run repeats the uninterrupted one bit for bit)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    rows = rank[rows.reshape(-1)]
    spellings = np.zeros((rounded_up(len(first) + 1, multiple), chars.shape[1]), dtype=np.int64)
    spellings[1: len(first) + 1] = chars[first[order]]
    per_text = iter(np.split(rows + 1, np.cumsum([len(t) for t in texts])[:-1]))  # each text's rows
    indices = [torch.from_numpy(_pad([next(per_text) for _ in group], length)) for group, length in zip(groups, lengths)]
    return torch.from_numpy(spellings), indices


# Reading pads a batch's lengths and distinct words up to a multiple of this. oneDNN builds an LSTM or
# convolution kernel for each new input shape, and kept most single questions' shapes new: the reader's
# network took 11.4 ms a question, 7.8 ms with shapes rounded to 32 (EPYC with AVX512-BF16, bfloat16).
SHAPE_MULTIPLE = 32


def term_frequency(lower: np.ndarray) -> np.ndarray:
    """Each token's share of the text's tokens that are the same word, lower-cased (``lower``: their hashes):
    (L,) float32, the passage feature DrQA calls term frequency."""
    _, inverse, counts = np.unique(lower, return_inverse=True, return_counts=True)
    return (counts[inverse.reshape(-1)] / max(len(lower), 1)).astype(np.float32)


class Batcher:
    """Encodes texts for one vocabulary and pads encoded (passage, question) pairs into a ``Batch``."""

    CACHED_WORDS = 200_000  # the per-word cache is emptied when it grows past this

    def __init__(self, vocab: Vocabulary, max_word_chars: int):
        self.vocab = vocab
        self.max_word_chars = max_word_chars
        self._rows: dict[str, tuple[int, ...]] = {}

    def _word_row(self, word: str) -> tuple[int, ...]:
        """Word id, tuned slot, surface hash, lower-case hash and ``max_word_chars`` character
        ids (zero-padded) of one word, cached: most tokens are words seen before."""
        row = self._rows.get(word)
        if row is None:
            if len(self._rows) >= self.CACHED_WORDS:
                self._rows.clear()
            chars = char_ids(word, self.max_word_chars)
            row = (self.vocab.word_id(word), self.vocab.tuned_id(word), hash(word), hash(word.lower()),
                   *chars, *[0] * (self.max_word_chars - len(chars)))
            self._rows[word] = row
        return row

    def encode(self, tokens: Tokens) -> EncodedText:
        """The arrays of one tokenized text."""
        rows = np.array([self._word_row(w) for w in tokens.words], dtype=np.int64)
        rows = rows.reshape(len(tokens), 4 + self.max_word_chars)  # (L, 4 + C), also when L = 0
        lower = np.ascontiguousarray(rows[:, 3])
        return EncodedText(
            words=np.ascontiguousarray(rows[:, 0]),
            tuned=np.ascontiguousarray(rows[:, 1]),
            chars=rows[:, 4:].astype(np.int16),
            surface=np.ascontiguousarray(rows[:, 2]),
            lower=lower,
            lemma=np.fromiter(map(hash, tokens.lemmas), dtype=np.int64, count=len(tokens)),
            frequency=term_frequency(lower),
        )

    def _inputs(self, texts: list[EncodedText], multiple: int) -> tuple[torch.Tensor, ...]:
        """Word ids, tuned slots and the mask (B, L), L padded up to a multiple of ``multiple``; an empty
        text still gets one (masked-in) slot so softmaxes stay finite."""
        length = rounded_up(max(1, max(len(t) for t in texts)), multiple)
        words = _padded(texts, "words", length)
        mask = words != 0
        mask[:, 0] = True
        return torch.from_numpy(words), torch.from_numpy(_padded(texts, "tuned", length)), torch.from_numpy(mask)

    def collate(self, passages: list[EncodedText], questions: list[EncodedText],
                spans: list[tuple[int, int]] | None = None, multiple: int = 1) -> Batch:
        """One padded batch of encoded pairs, with answer token spans when training. Lengths and distinct
        words are padded up to a multiple of ``multiple``: reading sees fewer distinct shapes (see
        ``SHAPE_MULTIPLE``), and no real token's output depends on padding."""
        p_words, p_tuned, p_mask = self._inputs(passages, multiple)
        q_words, q_tuned, q_mask = self._inputs(questions, multiple)
        spellings, (p_spellings, q_spellings) = distinct_spellings([passages, questions], [p_words.shape[1], q_words.shape[1]],
                                                                   multiple)
        features = torch.from_numpy(passage_features(passages, questions, p_words.shape[1]))
        batch = Batch(passage_words=p_words, passage_tuned=p_tuned, passage_spellings=p_spellings,
                      passage_features=features, passage_mask=p_mask, question_words=q_words,
                      question_tuned=q_tuned, question_spellings=q_spellings, question_mask=q_mask,
                      spellings=spellings)
        if passages[0].context is not None:
            batch.passage_context = _padded_context(passages, p_words.shape[1])
            batch.question_context = _padded_context(questions, q_words.shape[1])
        if spans is not None:
            batch.answer_starts = torch.tensor([s for s, _ in spans])
            batch.answer_ends = torch.tensor([e for _, e in spans])
        return batch

    def batch(self, passages: list[Tokens], questions: list[Tokens], spans: list[tuple[int, int]] | None = None) -> Batch:
        """``collate`` for texts not encoded yet."""
        return self.collate([self.encode(p) for p in passages], [self.encode(q) for q in questions], spans)


def bucketed_batches(lengths: list[int], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Batches of similar length (sorted with noise) in random order; fully sorted order hurts."""
    noisy = np.asarray(lengths, dtype=np.float64) + rng.uniform(0, 10, len(lengths))
    order = np.argsort(noisy, kind="stable")
    batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]
