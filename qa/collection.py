"""Documents -> one collection read as one passage, and answers -> the documents they came from.

A collection joins its documents' texts with blank lines into one text and tokenizes each document
on its own (``qa.tokenize.tokenize_many``, which takes any length), so reading (``qa.inference``)
ranks the windows of all documents together by BM25, reads the best of them under one softmax and
one no-answer option, and never lets a window run from one document into the next
(``Passages.breaks``). ``cite`` gives every answer its ``Source``: path, page or heading, and
offsets into its own document.
"""
from __future__ import annotations

import bisect
from itertools import accumulate
from typing import TYPE_CHECKING, Iterable

from qa.answers import Answer, Source
from qa.documents import Document
from qa.errors import UserError
from qa.tokenize import joined_tokens, tokenize_many

if TYPE_CHECKING:  # qa.inference is imported where it is used: it imports torch
    from qa.inference import Passages

SEPARATOR = "\n\n"  # between documents in the joined text
MAX_COLLECTION_CHARS = 20_000_000  # a larger collection is read through an index (``qa index``), not in memory


def checked_size(size: int) -> None:
    """A ``UserError`` for documents of ``size`` characters in all: too many to read in memory."""
    if size > MAX_COLLECTION_CHARS:
        raise UserError(f"the documents hold {size:,} characters; more than {MAX_COLLECTION_CHARS:,} are read "
                        "through an index: qa index PATH... --output DIR, then --index DIR")


class Collection:
    """Documents read together: ``text`` joins them, ``tokens`` are theirs with offsets into ``text``,
    ``breaks`` the first token of each document and ``offsets`` its first character."""

    def __init__(self, documents: list[Document]):
        if not documents:
            raise UserError("the collection has no documents")
        checked_size(sum(len(d.text) for d in documents) + len(SEPARATOR) * (len(documents) - 1))
        self.documents = documents
        self.text = SEPARATOR.join(d.text for d in documents)
        self.offsets = list(accumulate((len(d.text) + len(SEPARATOR) for d in documents[:-1]), initial=0))
        parts = tokenize_many([d.text for d in documents])
        self.breaks = list(accumulate((len(tokens) for tokens in parts[:-1]), initial=0))
        self.tokens = joined_tokens(parts, self.offsets)

    @classmethod
    def of_articles(cls, contexts: list[str], titles: list[str]) -> tuple["Collection", list[int]]:
        """The articles of a SQuAD-format file as a collection (an article: its paragraphs joined by blank
        lines, under its title), and the article of each of ``contexts``: the open setting of ``qa evaluate``."""
        paragraphs: dict[str, list[str]] = {}
        for context, title in zip(contexts, titles):
            paragraphs.setdefault(title, []).append(context)
        article = {title: k for k, title in enumerate(paragraphs)}
        collection = cls([Document(title, SEPARATOR.join(texts)) for title, texts in paragraphs.items()])
        return collection, [article[title] for title in titles]

    @classmethod
    def of_hits(cls, hits: list) -> "Collection":
        """The windows an index found for a question (``qa.index.Hit``s, overlapping ones of a document
        joined by ``qa.index.joined``) as a collection of stretches of their documents."""
        return cls([Document(hit.path, hit.text, hit.sections, hit.start) for hit in hits])

    def __len__(self) -> int:
        return len(self.documents)

    def document_at(self, offset: int) -> int:
        """The index of the document holding character ``offset`` of ``text``."""
        return max(bisect.bisect_right(self.offsets, offset) - 1, 0)

    def source(self, answer: Answer) -> Source:
        """Where ``answer`` (offsets into ``text``) sits: its document, page or heading, and offsets there."""
        k = self.document_at(answer.start)
        document, shift = self.documents[k], self.offsets[k]
        section = document.locate(answer.start - shift)
        shift -= document.offset  # offsets into the whole file's text, for a stretch retrieved from an index
        return Source(document.path, answer.start - shift, answer.end - shift, section.page, section.heading)

    def cite(self, answers: Iterable[Answer]) -> None:
        """Give each answer its ``source``."""
        for answer in answers:
            answer.source = self.source(answer)


def passages_of(collections: list[Collection], queries: list) -> "Passages":
    """Collections as the passages ``queries`` (``qa.inference.Query``) are read in: query.passage n asks
    ``collections[n]``, whose documents are read together, no window running from one into the next."""
    from qa.inference import Passages

    return Passages([c.text for c in collections], [c.tokens for c in collections], queries,
                    breaks={n: c.breaks for n, c in enumerate(collections)})
