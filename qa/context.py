"""What ``qa ask`` and ``qa chat`` answer from: one pasted passage, the documents of files and folders read
as one collection (``qa.collection``) with the files that could not be read, or an index (``qa.index``)."""
from __future__ import annotations

import os
from pathlib import Path

from qa.answers import Prediction
from qa.errors import UserError
from qa.inputs import checked_passage


class Context:
    """A passage, a collection of documents (with the files skipped loading it) or an index."""

    def __init__(self, passage: str | None = None, collection=None, skipped: list[tuple[str, str]] | None = None,
                 index=None):
        self.passage = passage
        self.collection = collection
        self.skipped = skipped or []  # (path, one-line reason) of each file left out
        self.index = index  # qa.index.Index: each question reads the windows it retrieves

    @classmethod
    def of_passage(cls, text: str) -> "Context":
        return cls(passage=checked_passage(text))

    @classmethod
    def of_paths(cls, paths: list[str | Path]) -> "Context":
        """The readable documents of ``paths`` (files and folders); a single file that cannot be read, files
        none of which can, or more text than a collection holds in memory (checked as the files are read,
        so memory stays bounded) is a ``UserError``."""
        from qa.collection import SEPARATOR, Collection, checked_size
        from qa.documents import read_documents

        skipped: list[tuple[str, str]] = []
        documents, size = [], -len(SEPARATOR)
        for document in read_documents(paths, lambda path, reason: skipped.append((str(path), reason))):
            size += len(SEPARATOR) + len(document.text)
            checked_size(size)
            documents.append(document)
        if not documents:
            if len(skipped) == 1:
                raise UserError("{}: {}".format(*skipped[0]))
            raise UserError(f"none of the {len(skipped)} files found could be read as a document" if skipped
                            else "no documents found in " + ", ".join(map(str, paths)))
        return cls(collection=Collection(documents), skipped=skipped)

    @classmethod
    def of_index(cls, folder: str | Path) -> "Context":
        """The index ``qa index`` built in ``folder``."""
        from qa.index import Index

        return cls(index=Index.open(folder))

    @property
    def text(self) -> str:
        """The passage, or the collection's documents joined (what answers' offsets index); "" for an index."""
        if self.collection is not None:
            return self.collection.text
        return self.passage or ""

    @property
    def documents(self) -> int | None:
        """How many documents the collection or index holds (None: a passage)."""
        if self.index is not None:
            return len(self.index)
        return None if self.collection is None else len(self.collection)

    def predict(self, reader, question: str, **options) -> tuple[str, Prediction]:
        """``reader``'s prediction for ``question`` (``Reader.predict`` options), and the text its answers'
        offsets index: the passage, the collection's joined text, or the windows retrieved from the index."""
        if self.index is not None:
            [(collection, prediction)] = reader.predict_index([question], self.index, **options)
            return ("" if collection is None else collection.text), prediction
        if self.collection is None:
            return self.text, reader.predict(question, self.text, **options)
        return self.text, reader.predict_documents([question], self.collection, **options)[0]

    def refuse_overwriting(self, path: str | Path) -> None:
        """A ``UserError`` when writing ``path`` would replace a file this context read (or skipped), its index
        or a document in it: ``--html FILE`` must not destroy a document being asked."""
        from qa.index import DATABASE

        if not os.path.exists(path):
            return
        sources = [] if self.collection is None else [d.path for d in self.collection.documents]
        sources += [skipped for skipped, _ in self.skipped]
        if self.index is not None:
            sources.append(Path(self.index.folder) / DATABASE)
        if (self.index is not None and path in self.index
                or any(os.path.exists(s) and os.path.samefile(s, path) for s in sources)):
            raise UserError(f"{path}: is one of the files being read; write the page to another file")

    def summary(self) -> dict:
        """The documents read and the files skipped, for ``--json`` (empty for a passage)."""
        if self.index is not None:
            return {"index": str(self.index.folder), "documents": len(self.index)}
        if self.collection is None:
            return {}
        return {"documents": [d.path for d in self.collection.documents],
                "skipped": [{"path": path, "reason": reason} for path, reason in self.skipped]}

    def warnings(self) -> list[str]:
        """One line for each file skipped: its path and why."""
        from qa.documents import skip_warnings

        return skip_warnings(self.skipped)

    def described(self) -> str:
        """One line: how many documents were read and how many files skipped."""
        return f"{self.documents:,} documents read" + (f", {len(self.skipped):,} files skipped" if self.skipped else "")
