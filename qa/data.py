"""Load SQuAD-format data as flat records: id, title, context, question, answers.

A local file in the official nested layout and a Hugging Face hub dataset both end up as a
``datasets.Dataset`` with the same columns, ``answers`` being ``{"text": [...], "answer_start": [...]}``.
Question ids are text; numeric ids (found in some files in the wild) are converted to text.
SQuAD 2.0 files are read the same way: an unanswerable question (``"is_impossible": true``) has
no answers, and an ``is_impossible`` that contradicts the answers is a bad record.
Strict loading stops at the first bad record with an error naming it; lenient loading skips bad
records and counts them by category (``Dataset.info.description`` is left alone; counts are returned).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import datasets

from qa.errors import UserError
from qa.inputs import is_unicode


class DataError(UserError):
    """A data file that cannot be read as SQuAD; the message names the file and the record."""


@dataclass(frozen=True)
class Problem:
    """Why a record is bad: ``category`` keys lenient mode's skip counts, ``message`` says it in full."""

    category: str
    message: str

    @classmethod
    def of(cls, category: str) -> "Problem":
        """A problem whose category says all there is to say."""
        return cls(category, category)


def _whole_number(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true/false are not numbers


def _check_question(qa, context: str, seen: dict[str, str | int]) -> Problem | None:
    """The problem with one question record, or None when it is well-formed.

    ``seen`` maps each earlier id, as text, to the id as written; numeric ids count by their text.
    """
    qid = qa.get("id") if isinstance(qa, dict) else None
    if not (isinstance(qid, str) or _whole_number(qid)) or not isinstance(qa.get("question"), str):
        return Problem.of("missing 'id' or 'question'")
    if not (is_unicode(qa["question"]) and is_unicode(str(qid))):
        return Problem.of("text that is not valid Unicode (a lone surrogate)")
    key = str(qid)
    if key in seen:
        mixed = isinstance(seen[key], str) != isinstance(qid, str)  # one of the two was written as a number
        note = f" (after converting the number {key} to text)" if mixed else ""
        return Problem("duplicate id", f"duplicate id {key!r}{note}")
    if not isinstance(qa.get("answers", []), list):
        return Problem.of("'answers' is not a list")
    for answer in qa.get("answers", []):
        start, text = (answer.get("answer_start"), answer.get("text")) if isinstance(answer, dict) else (None, None)
        if not _whole_number(start) or not isinstance(text, str):
            return Problem.of("answer without 'text' and 'answer_start'")
        if not text.strip():  # an empty span would match anywhere; an unanswerable question has no answers
            return Problem.of("empty answer text")
        if not 0 <= start <= len(context) - len(text) or context[start : start + len(text)] != text:
            return Problem("answer not at its answer_start", f"answer {text!r} is not at answer_start {start}")
    impossible = qa.get("is_impossible", not qa.get("answers"))
    if not isinstance(impossible, bool) or impossible == bool(qa.get("answers")):
        return Problem("is_impossible contradicts the answers",
                       f"is_impossible is {impossible!r} but the question has {len(qa.get('answers', []))} answers")
    return None


class _Rejections:
    """The bad records met while flattening a file: the first raised (strict), or all counted by kind (lenient)."""

    def __init__(self, source: str, lenient: bool):
        self.source, self.lenient = source, lenient
        self.skipped: Counter = Counter()

    def __call__(self, where: str, problem: Problem) -> None:
        if not self.lenient:
            raise DataError(f"{self.source}: {where}: {problem.message}")
        self.skipped[problem.category] += 1


def _named(qa, a: int, p: int, q: int) -> str:
    """Where a question sits in the file, with its id when it has a usable one."""
    where = f"article {a} paragraph {p} question {q}"
    qid = qa.get("id") if isinstance(qa, dict) else None
    return f"{where} (id {qid!r})" if isinstance(qid, (str, int)) and not isinstance(qid, bool) else where


def _flatten(payload, source: str, lenient: bool) -> tuple[dict[str, list], Counter]:
    """Nested SQuAD JSON -> column lists (ids as text); strict mode raises on the first bad record."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise DataError(f"{source}: expected a JSON object with a 'data' list (SQuAD layout)")
    columns: dict[str, list] = {k: [] for k in ("id", "title", "context", "question", "answers")}
    reject = _Rejections(source, lenient)
    seen: dict[str, str | int] = {}
    for a, article in enumerate(payload["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            reject(f"article {a}", Problem.of("missing 'paragraphs'"))
            continue
        title = "" if article.get("title") is None else article["title"]  # a title is optional
        if not isinstance(title, str) or not is_unicode(title):
            reject(f"article {a}", Problem.of("a 'title' that is not text"))
            continue
        for p, paragraph in enumerate(paragraphs):
            context = paragraph.get("context") if isinstance(paragraph, dict) else None
            if not isinstance(context, str) or not context.strip():
                reject(f"article {a} paragraph {p}", Problem.of("missing or empty 'context'"))
                continue
            if not is_unicode(context):
                reject(f"article {a} paragraph {p}", Problem.of("text that is not valid Unicode (a lone surrogate)"))
                continue
            questions = paragraph.get("qas", [])
            if not isinstance(questions, list):
                reject(f"article {a} paragraph {p}", Problem.of("'qas' is not a list"))
                continue
            for q, qa in enumerate(questions):
                problem = _check_question(qa, context, seen)
                if problem:
                    reject(_named(qa, a, p, q), problem)
                    continue
                qid = str(qa["id"])
                seen[qid] = qa["id"]
                answers = qa.get("answers", [])
                columns["id"].append(qid)
                columns["title"].append(title)
                columns["context"].append(context)
                columns["question"].append(qa["question"])
                columns["answers"].append(
                    {"text": [x["text"] for x in answers], "answer_start": [x["answer_start"] for x in answers]}
                )
    return columns, reject.skipped


def has_unanswerable(records: datasets.Dataset) -> bool:
    """Whether ``records`` are SQuAD 2.0 data: some question has no answer (``is_impossible``)."""
    return any(not answers["text"] for answers in records["answers"])


def load_squad(source: str, split: str = "validation", lenient: bool = False,
               skipped: Counter | None = None, limit: int = 0) -> datasets.Dataset:
    """Flat SQuAD records from a local JSON file, or from a hub dataset name and split.

    With ``lenient``, bad records are skipped and counted by reason into ``skipped``;
    with ``limit``, only the first ``limit`` questions are kept (0 = all).
    """
    if limit < 0:
        raise DataError(f"the question limit must be 0 (all) or a count, not {limit}")
    records = _load_records(source, split, lenient, skipped)
    if not len(records):
        raise DataError(f"{source}: no questions" + (" that could be read" if skipped else ""))
    return records.select(range(min(limit, len(records)))) if limit else records


RECORDS_PER_PIECE = 500  # records converted to Arrow at a time
FEATURES = datasets.Features({  # the flat records' columns, as the hub's SQuAD datasets have them
    "id": datasets.Value("string"), "title": datasets.Value("string"), "context": datasets.Value("string"),
    "question": datasets.Value("string"),
    "answers": datasets.Sequence({"text": datasets.Value("string"), "answer_start": datasets.Value("int64")}),
})


def _as_dataset(columns: dict[str, list]) -> datasets.Dataset:
    """The column lists as one Dataset, converted a few hundred records at a time: at once, a file whose
    contexts are whole documents (each repeated for every question) peaks near 2 GB in the conversion
    of a 35 MB file (10,570 questions about 48 articles); in pieces, under 0.8 GB."""
    count = len(columns["id"])
    pieces = [datasets.Dataset.from_dict({name: values[i : i + RECORDS_PER_PIECE] for name, values in columns.items()},
                                         features=FEATURES)
              for i in range(0, max(count, 1), RECORDS_PER_PIECE)]
    return datasets.concatenate_datasets(pieces) if len(pieces) > 1 else pieces[0]


def _load_records(source: str, split: str, lenient: bool, skipped: Counter | None) -> datasets.Dataset:
    """The flat records of a local SQuAD JSON file, or of a hub dataset's split (see ``load_squad``)."""
    path = Path(source)
    if path.is_dir():
        raise DataError(f"{source}: is a folder, not a SQuAD JSON file")
    if path.exists():
        try:
            payload = json.loads(path.read_text(encoding="utf-8-sig"))  # -sig: a byte-order mark as Windows tools write
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DataError(f"{source}: not a UTF-8 JSON file ({error})") from None
        except RecursionError:
            raise DataError(f"{source}: JSON nested too deeply to be a SQuAD file") from None
        except OSError as error:
            raise DataError(f"{source}: cannot read ({error.strerror})") from None
        columns, counts = _flatten(payload, source, lenient)
        if skipped is not None:
            skipped.update(counts)
        return _as_dataset(columns)
    if source.endswith(".json") or "/" not in source and "." in source:
        raise DataError(f"{source}: no such file")
    try:
        return datasets.load_dataset(source, split=split)
    except Exception as error:  # hub errors vary: offline, unknown name, unknown split
        raise DataError(f"{source}: not a local file, and loading it from the hub failed ({error})") from None
