"""Text -> tokens with exact character offsets (spaCy), plus lower-case lemmas.

The tokenizer is spaCy's blank English tokenizer with extra infix rules, so that
answers inside hyphenated or slashed words ("gold" in "gold-themed", "1990" in
"1990/91") and numbers glued to units ("5" in "5km") start and end on token
boundaries. Every token keeps its ``[start, end)`` character span in the original
text, so answers are always slices of the original string.
"""
from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

from spacy.lang.en import English

from qa.inputs import INVISIBLE

# Extra split points: ``INVISIBLE`` characters (spaCy keeps them inside words, "\u200bRollo", so an answer
# would carry them and score 0; the zero-width (non-)joiners are not among them: Persian, Indic scripts and
# emoji need them), any dash, slash, tilde, plus/ampersand/equals between word characters, and the boundary
# between a digit and a letter. The prefixes, suffixes and ``_spans`` drop the invisible ones like spaces.
EXTRA_INFIXES = (
    f"[{INVISIBLE}]",
    r"[\-\u2010-\u2015~/\\+&=\u00b7:;|]",
    r"(?<=[0-9])(?=[A-Za-z])",
    r"(?<=[A-Za-z])(?=[0-9])",
    r"(?<=[0-9])[,.](?=[0-9]{4})",
    r"[\(\)\[\]\"'\u2018\u2019\u201c\u201d]",
    r"(?<=[a-z])\.(?=[A-Za-z])",
)


# Function words of questions: what is left are the question's content words.
STOP_WORDS = frozenset(
    "a an the of in on at to for by with from and or is was are were be been what which who whom "
    "whose when where why how did do does many much that this these those it its as".split()
)


@dataclass(frozen=True)
class Tokens:
    """Tokens of one text: surface strings, lower-case lemmas and ``[start, end)`` offsets."""

    words: list[str]
    lemmas: list[str]
    starts: list[int]
    ends: list[int]

    def __len__(self) -> int:
        return len(self.words)


def _visible_url(text: str):
    """spaCy's URL match, for text without ``INVISIBLE`` characters: a URL is kept whole before any split."""
    return None if any(c in INVISIBLE for c in text) else English.Defaults.url_match(text)


class _ReaderEnglishDefaults(English.Defaults):
    url_match = staticmethod(_visible_url)
    prefixes = [f"[{INVISIBLE}]", *English.Defaults.prefixes]
    suffixes = [f"[{INVISIBLE}]", *English.Defaults.suffixes]
    infixes = list(English.Defaults.infixes) + list(EXTRA_INFIXES)


class _ReaderEnglish(English):
    """spaCy's blank English with our infixes, built into the tokenizer in one pass (setting
    ``infix_finditer`` afterwards would rebuild the special cases a second time)."""

    Defaults = _ReaderEnglishDefaults


@functools.lru_cache(maxsize=1)
def _pipeline() -> English:
    return _ReaderEnglish()


MAX_STRINGS = 1_000_000  # spaCy keeps every distinct token string it has met; past this many, start afresh


def _bounded_pipeline() -> English:
    """The pipeline, built anew once its vocabulary holds ``MAX_STRINGS`` strings: a long ``qa chat``, an index
    of a large folder or a library loop would otherwise grow it without end (500,000 distinct words: +239 MiB).
    Tokens are plain strings, so nothing refers to the old vocabulary."""
    if len(_pipeline().vocab.strings) > MAX_STRINGS:
        _pipeline.cache_clear()
    return _pipeline()


@functools.lru_cache(maxsize=1)
def _lemma_table():
    """spaCy's English lookup lemmatizer table (from spacy-lookups-data); keys are hashed strings."""
    from spacy.lookups import load_lookups

    return load_lookups("en", ["lemma_lookup"]).get_table("lemma_lookup")


def lemma(word: str) -> str:
    """Lower-case lemma of one word (lookup table; the word itself when unknown)."""
    lower = word.lower()
    return _lemma_table().get(lower, lower)


def _keeps_final_period(word: str) -> bool:
    """True for abbreviations whose final period belongs to the word ("U.S.", "Mr.", "B.")."""
    stem = word[:-1]
    if len(stem) == 1:
        return stem.isupper()
    return "." in stem or word in _pipeline().tokenizer.rules


def _spans(doc) -> list[tuple[str, int]]:
    """(text, start) of every non-space token, with a sentence-final period split off."""
    spans = []
    for token in doc:
        if token.is_space or not token.text.strip(INVISIBLE):
            continue
        text, start = token.text, token.idx
        if len(text) > 1 and text.endswith(".") and not _keeps_final_period(text):
            spans += [(text[:-1], start), (".", start + len(text) - 1)]
        else:
            spans.append((text, start))
    return spans


def _to_tokens(doc) -> Tokens:
    spans = _spans(doc)
    words = [text for text, _ in spans]
    return Tokens(
        words=words,
        lemmas=[lemma(w) for w in words],
        starts=[start for _, start in spans],
        ends=[start + len(text) for text, start in spans],
    )


def tokenize(text: str) -> Tokens:
    """Tokenize one text, dropping whitespace tokens but keeping offsets exact."""
    return _to_tokens(_bounded_pipeline()(text))


PIECE_CHARS = 100_000  # a longer text is tokenized in pieces of about this many characters, cut at whitespace


def pieces(text: str, size: int = PIECE_CHARS) -> list[int]:
    """The character offsets at which ``text`` is cut into pieces of about ``size`` characters: after a
    line end where there is one, else after a space, else anywhere (no token spans a cut at whitespace)."""
    cuts, first = [0], 0
    while len(text) - first > size:
        cut = max(text.rfind("\n", first, first + size), text.rfind(" ", first, first + size))
        first = cut + 1 if cut > first else first + size
        cuts.append(first)
    return cuts


def _pieces_of(text: str, cuts: list[int]) -> Iterator[str]:
    """The pieces of ``text`` between its ``cuts`` (from ``pieces``)."""
    return (text[a:b] for a, b in zip(cuts, [*cuts[1:], len(text)]))


def tokenize_many(texts: list[str], batch_size: int = 256) -> list[Tokens]:
    """Tokenize many texts with ``nlp.pipe`` (faster than one call per text); a text of any length, cut in
    ``pieces`` under spaCy's limit of 1,000,000 characters."""
    cuts = [pieces(text) for text in texts]
    parts = [_to_tokens(doc) for doc in _bounded_pipeline().pipe(
        (piece for text, c in zip(texts, cuts) for piece in _pieces_of(text, c)), batch_size=batch_size)]
    tokenized, first = [], 0
    for text_cuts in cuts:
        tokenized.append(joined_tokens(parts[first : first + len(text_cuts)], text_cuts))
        first += len(text_cuts)
    return tokenized


def tokenize_in_pieces(text: str) -> Iterator[Tokens]:
    """``text``'s tokens one piece (``pieces``) at a time, offsets into ``text``, the same tokens as
    ``tokenize_many([text])``: for a text whose tokens all at once would not fit in bounded memory."""
    cuts = pieces(text)
    for cut, doc in zip(cuts, _bounded_pipeline().pipe(_pieces_of(text, cuts), batch_size=1)):
        yield joined_tokens([_to_tokens(doc)], [cut])


def joined_tokens(parts: list[Tokens], shifts: list[int]) -> Tokens:
    """The tokens of texts laid end to end as one: each part's offsets moved by its text's first character."""
    words, lemmas, starts, ends = [], [], [], []
    for part, shift in zip(parts, shifts):
        words += part.words
        lemmas += part.lemmas
        starts += [s + shift for s in part.starts]
        ends += [e + shift for e in part.ends]
    return Tokens(words, lemmas, starts, ends)


@functools.lru_cache(maxsize=1)
def _sentencizer() -> English:
    nlp = English()
    nlp.add_pipe("sentencizer")
    return nlp


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``[start, end)`` character spans of the sentences of ``text`` (spaCy's rule-based sentencizer)."""
    return [(s.start_char, s.end_char) for s in _sentencizer()(text).sents]
