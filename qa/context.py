"""What ``qa ask`` and ``qa chat`` answer from: one pasted passage, or the documents of files and folders
read as one collection (``qa.collection``), and the files that could not be read."""
from __future__ import annotations

from pathlib import Path

from qa.answers import Prediction
from qa.errors import UserError
from qa.inputs import checked_passage


class Context:
    """A passage (``collection`` None) or a collection of documents, with the files skipped loading it."""

    def __init__(self, text: str, collection=None, skipped: list[tuple[str, str]] | None = None):
        self.text = text  # the passage, or the collection's documents joined (answers' offsets index it)
        self.collection = collection
        self.skipped = skipped or []  # (path, one-line reason) of each file left out

    @classmethod
    def of_passage(cls, text: str) -> "Context":
        return cls(checked_passage(text))

    @classmethod
    def of_paths(cls, paths: list[str | Path]) -> "Context":
        """The readable documents of ``paths`` (files and folders); a single file that cannot be read, or
        files none of which can, is a ``UserError``."""
        from qa.collection import Collection
        from qa.documents import read_documents

        skipped: list[tuple[str, str]] = []
        documents = list(read_documents(paths, lambda path, reason: skipped.append((str(path), reason))))
        if not documents:
            if len(skipped) == 1:
                raise UserError("{}: {}".format(*skipped[0]))
            raise UserError(f"none of the {len(skipped)} files found could be read as a document" if skipped
                            else "no documents found in " + ", ".join(map(str, paths)))
        collection = Collection(documents)
        return cls(collection.text, collection, skipped)

    @property
    def documents(self) -> int | None:
        """How many documents the collection holds (None: a passage)."""
        return None if self.collection is None else len(self.collection)

    def predict(self, reader, question: str, **options) -> Prediction:
        """``reader``'s prediction for ``question`` (``Reader.predict`` or ``Reader.predict_documents`` options)."""
        if self.collection is None:
            return reader.predict(question, self.text, **options)
        return reader.predict_documents([question], self.collection, **options)[0]

    def summary(self) -> dict:
        """The documents read and the files skipped, for ``--json`` (empty for a passage)."""
        if self.collection is None:
            return {}
        return {"documents": [d.path for d in self.collection.documents],
                "skipped": [{"path": path, "reason": reason} for path, reason in self.skipped]}

    def warnings(self) -> list[str]:
        """One line for each file skipped: its path and why."""
        return [f"skipped {path}: {reason}" for path, reason in self.skipped]

    def described(self) -> str:
        """One line: how many documents were read and how many files skipped."""
        return f"{self.documents:,} documents read" + (f", {len(self.skipped):,} files skipped" if self.skipped else "")
