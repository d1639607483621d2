"""Load SQuAD-format data as flat records: id, title, context, question, answers.

A local file in the official nested layout and a Hugging Face hub dataset both end up as a
``datasets.Dataset`` with the same columns, ``answers`` being ``{"text": [...], "answer_start": [...]}``.
Strict loading stops at the first bad record with an error naming it; lenient loading skips bad
records and counts them by reason (``Dataset.info.description`` is left alone; counts are returned).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import datasets


class DataError(ValueError):
    """A data file that cannot be read as SQuAD; the message names the file and the record."""


def _check_question(qa, context: str, seen: set[str]) -> str | None:
    """The problem with one question record, or None when it is well-formed."""
    if not isinstance(qa, dict) or not isinstance(qa.get("id"), str) or not isinstance(qa.get("question"), str):
        return "missing 'id' or 'question'"
    if qa["id"] in seen:
        return f"duplicate id {qa['id']!r}"
    if not isinstance(qa.get("answers", []), list):
        return "'answers' is not a list"
    for answer in qa.get("answers", []):
        start, text = (answer.get("answer_start"), answer.get("text")) if isinstance(answer, dict) else (None, None)
        if not isinstance(start, int) or not isinstance(text, str):
            return "answer without 'text' and 'answer_start'"
        if context[start : start + len(text)] != text:
            return f"answer {text!r} is not at answer_start {start}"
    return None


def _flatten(payload, source: str, lenient: bool) -> tuple[dict[str, list], Counter]:
    """Nested SQuAD JSON -> column lists; strict mode raises on the first bad record."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise DataError(f"{source}: expected a JSON object with a 'data' list (SQuAD layout)")
    columns: dict[str, list] = {k: [] for k in ("id", "title", "context", "question", "answers")}
    skipped: Counter = Counter()
    seen: set[str] = set()

    def reject(where: str, problem: str) -> None:
        if not lenient:
            raise DataError(f"{source}: {where}: {problem}")
        skipped[problem.split(" '")[0] if problem.startswith("duplicate") else problem.split(" at ")[0]] += 1

    for a, article in enumerate(payload["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            reject(f"article {a}", "missing 'paragraphs'")
            continue
        for p, paragraph in enumerate(paragraphs):
            context = paragraph.get("context") if isinstance(paragraph, dict) else None
            if not isinstance(context, str) or not context.strip():
                reject(f"article {a} paragraph {p}", "missing or empty 'context'")
                continue
            for q, qa in enumerate(paragraph.get("qas", [])):
                problem = _check_question(qa, context, seen)
                if problem:
                    reject(f"article {a} paragraph {p} question {q}", problem)
                    continue
                seen.add(qa["id"])
                answers = qa.get("answers", [])
                columns["id"].append(qa["id"])
                columns["title"].append(article.get("title", ""))
                columns["context"].append(context)
                columns["question"].append(qa["question"])
                columns["answers"].append(
                    {"text": [x["text"] for x in answers], "answer_start": [x["answer_start"] for x in answers]}
                )
    return columns, skipped


def load_squad(source: str, split: str = "validation", lenient: bool = False,
               skipped: Counter | None = None, limit: int = 0) -> datasets.Dataset:
    """Flat SQuAD records from a local JSON file, or from a hub dataset name and split.

    With ``lenient``, bad records are skipped and counted by reason into ``skipped``;
    with ``limit``, only the first ``limit`` questions are kept (0 = all).
    """
    records = _load_records(source, split, lenient, skipped)
    return records.select(range(min(limit, len(records)))) if limit else records


def _load_records(source: str, split: str, lenient: bool, skipped: Counter | None) -> datasets.Dataset:
    path = Path(source)
    if path.is_dir():
        raise DataError(f"{source}: is a folder, not a SQuAD JSON file")
    if path.exists():
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DataError(f"{source}: not a UTF-8 JSON file ({error})") from None
        columns, counts = _flatten(payload, source, lenient)
        if skipped is not None:
            skipped.update(counts)
        return datasets.Dataset.from_dict(columns)
    if source.endswith(".json") or "/" not in source and "." in source:
        raise DataError(f"{source}: no such file")
    try:
        return datasets.load_dataset(source, split=split)
    except Exception as error:  # hub errors vary: offline, unknown name, unknown split
        raise DataError(f"{source}: not a local file, and loading it from the hub failed ({error})") from None
