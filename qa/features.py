"""Flat SQuAD records -> tokenized examples with answer token spans (cached on disk).

Each unique passage is tokenized once. Gold answers map from character spans to token spans;
an answer whose text occurs more than once in its passage is re-aligned to the occurrence
nearest the question's words (the local data gives the first occurrence). Answers that do not
start and end on token boundaries are kept with the smallest covering token span and counted.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from qa.tokenize import EXTRA_INFIXES, STOP_WORDS, Tokens, tokenize_many

if TYPE_CHECKING:  # imported lazily: answering a single question never needs it
    import datasets

PREPARE_VERSION = "5"  # raise when the code of tokenizing or answer alignment changes


@dataclass
class Example:
    """One question about one passage; ``answer_span`` is the training target in token indices."""

    id: str
    context_index: int
    question: Tokens
    question_text: str
    answer_span: tuple[int, int]
    answers: dict


@dataclass
class PreparedSet:
    """Tokenized passages (each once), the article title of each, and the questions that point at them."""

    contexts: list[str]
    context_tokens: list[Tokens]
    titles: list[str]  # the article of each passage (the last record's title where records disagree)
    examples: list[Example]
    stats: dict = field(default_factory=dict)


def covering_span(tokens: Tokens, start: int, end: int) -> tuple[tuple[int, int], bool]:
    """Token span covering characters ``[start, end)`` and whether it matches them exactly: the last
    token starting at or before ``start`` to the first ending at or after ``end`` (token offsets ascend,
    so both are binary searches; a whole article's answers are found in log time)."""
    first = max(bisect.bisect_right(tokens.starts, start) - 1, 0)
    last = min(bisect.bisect_left(tokens.ends, end), len(tokens) - 1)
    last = max(first, last)
    exact = tokens.starts[first] == start and tokens.ends[last] == end
    return (first, last), exact


def _answer_span(context: str, tokens: Tokens, question: Tokens, text: str, start: int):
    """Best token span for one gold answer: aligned occurrences first, then nearest the question."""
    stripped = text.strip()
    start += len(text) - len(text.lstrip())
    starts = [m.start() for m in re.finditer(re.escape(stripped), context)] or [start]
    cues = {lemma for lemma in question.lemmas if lemma not in STOP_WORDS and lemma.isalnum()}
    best = None
    for candidate in starts:
        span, exact = covering_span(tokens, candidate, candidate + len(stripped))
        window = tokens.lemmas[max(0, span[0] - 20) : span[1] + 21]
        overlap = len(cues.intersection(window))
        key = (exact, overlap, candidate == start)
        if best is None or key > best[0]:
            best = (key, span, exact)
    return best[1], best[2], len(starts) > 1


def _tokens_to_row(tokens: Tokens) -> dict:
    return {"words": tokens.words, "lemmas": tokens.lemmas, "starts": tokens.starts, "ends": tokens.ends}


def _row_to_tokens(row: dict) -> Tokens:
    return Tokens(row["words"], row["lemmas"], row["starts"], row["ends"])


def _tokenize_rows(rows: dict) -> dict:
    tokens = [_tokens_to_row(t) for t in tokenize_many(rows["text"])]
    return {k: [t[k] for t in tokens] for k in ("words", "lemmas", "starts", "ends")}


def _tokenize(texts: list[str], workers: int) -> list[Tokens]:
    """Tokenize in this process, or in ``workers`` processes through ``datasets`` ``map``."""
    import datasets

    if workers <= 1:
        return tokenize_many(texts)
    rows = datasets.Dataset.from_dict({"text": texts}).map(
        _tokenize_rows, batched=True, batch_size=1000, num_proc=workers, remove_columns=["text"])
    return [_row_to_tokens(r) for r in rows]


def _prepare(records: "datasets.Dataset", workers: int) -> tuple["datasets.Dataset", "datasets.Dataset"]:
    """Records -> (one row per distinct passage: its tokens; one row per question: its tokens, passage index
    and the gold answer's token span), each passage tokenized once."""
    import datasets

    contexts = list(dict.fromkeys(records["context"]))
    index = {c: i for i, c in enumerate(contexts)}
    titles = dict(zip(records["context"], records["title"]))
    context_tokens = _tokenize(contexts, workers)
    question_tokens = _tokenize(records["question"], workers)
    rows = []
    for record, question in zip(records, question_tokens):
        i = index[record["context"]]
        answers = record["answers"]
        span, exact, repeated = (0, 0), True, False
        if answers["text"]:
            span, exact, repeated = _answer_span(
                record["context"], context_tokens[i], question, answers["text"][0], answers["answer_start"][0]
            )
        rows.append(
            {"id": record["id"], "context_index": i, "question": _tokens_to_row(question), "question_text": record["question"],
             "answer_start": span[0], "answer_end": span[1], "exact": exact, "repeated": repeated,
             "answers": answers}
        )
    context_rows = [dict(context=c, title=titles[c], **_tokens_to_row(t)) for c, t in zip(contexts, context_tokens)]
    return datasets.Dataset.from_list(context_rows), datasets.Dataset.from_list(rows)


def cache_root() -> Path:
    """Where prepared files and contextual features are cached: ``$QA_CACHE``, else ``~/.cache/qa``."""
    return Path(os.environ.get("QA_CACHE", Path.home() / ".cache" / "qa"))


def tokenizer_fingerprint() -> str:
    """What decides the tokens and answer spans besides the text: our rules, the code version and
    the spaCy and lemma-table versions."""
    from importlib.metadata import version

    return "|".join([PREPARE_VERSION, version("spacy"), version("spacy-lookups-data"), *EXTRA_INFIXES,
                     *sorted(STOP_WORDS)])


def dataset_key(records: "datasets.Dataset") -> str:
    """Hash of everything that decides a preparation: the records' ids, passages, questions and gold
    answers, and the tokenizer's rules and versions; a cached preparation is reused only when all match."""
    digest = hashlib.sha256(tokenizer_fingerprint().encode())
    for column in ("id", "title", "context", "question"):
        for value in records[column]:
            digest.update(value.encode("utf-8", "surrogatepass") + b"\0")
    for answers in records["answers"]:
        digest.update(json.dumps(answers, sort_keys=True).encode() + b"\0")
    return digest.hexdigest()[:32]


def _save_prepared(folder: Path, contexts: "datasets.Dataset", examples: "datasets.Dataset") -> None:
    """Both datasets saved into ``NAME.partial`` beside ``folder``, which then takes its place: an
    interruption (Ctrl-C, a full disk) leaves no half-saved cache that every later run would fail to load."""
    for stale in folder.parent.glob(f"{folder.name}.partial-*"):  # of processes killed while saving
        if not _running(stale.name.rsplit("-", 1)[1]):
            shutil.rmtree(stale, ignore_errors=True)
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")  # one per process: two may prepare at once
    contexts.save_to_disk(str(partial / "contexts"))
    examples.save_to_disk(str(partial / "examples"))
    if (folder / "examples").exists():  # another process saved the same preparation first: keep its
        shutil.rmtree(partial, ignore_errors=True)
        return
    shutil.rmtree(folder, ignore_errors=True)  # incomplete (one left by a version that saved in place)
    partial.rename(folder)


def _running(pid: str) -> bool:
    """Whether the process ``pid`` (text) may still be running on this machine (not a number: assumed so)."""
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def prepare(records: "datasets.Dataset", cache: bool = True, workers: int = 0) -> PreparedSet:
    """Tokenize records (or reuse the on-disk cache for identical records), in ``workers``
    processes when more than one."""
    import datasets

    datasets.disable_progress_bars()
    folder = cache_root() / "features" / dataset_key(records)
    if cache and (folder / "examples").exists():
        context_ds = datasets.load_from_disk(str(folder / "contexts"))
        example_ds = datasets.load_from_disk(str(folder / "examples"))
    else:
        context_ds, example_ds = _prepare(records, workers)
        if cache:
            _save_prepared(folder, context_ds, example_ds)
    contexts = context_ds.to_list()
    rows = example_ds.to_list()
    examples = [
        Example(r["id"], r["context_index"], _row_to_tokens(r["question"]), r["question_text"],
                (r["answer_start"], r["answer_end"]), r["answers"])
        for r in rows
    ]
    with_answers = [r for r in rows if r["answers"]["text"]]
    stats = {
        "questions": len(rows),
        "passages": len(contexts),
        "misaligned_answers": sum(not r["exact"] for r in with_answers),
        "repeated_answers": sum(r["repeated"] for r in with_answers),
    }
    return PreparedSet([c["context"] for c in contexts], [_row_to_tokens(c) for c in contexts],
                       [c["title"] for c in contexts], examples, stats)
