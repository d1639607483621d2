"""Load SQuAD-format data as flat records: id, title, context, question, answers.

A local file in the official nested layout and a Hugging Face hub dataset both end up as a
``datasets.Dataset`` with the same columns, ``answers`` being ``{"text": [...], "answer_start": [...]}``.
"""
from __future__ import annotations

import json
from pathlib import Path

import datasets


class DataError(ValueError):
    """A data file that cannot be read as SQuAD; the message names the file and the record."""


def _flatten(payload: dict, source: str) -> dict[str, list]:
    """Nested SQuAD JSON -> column lists, checking each record and naming the first bad one."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise DataError(f"{source}: expected a JSON object with a 'data' list (SQuAD layout)")
    columns: dict[str, list] = {k: [] for k in ("id", "title", "context", "question", "answers")}
    seen: set[str] = set()
    for a, article in enumerate(payload["data"]):
        for p, paragraph in enumerate(article.get("paragraphs", [])):
            context = paragraph.get("context")
            if not isinstance(context, str):
                raise DataError(f"{source}: article {a} paragraph {p}: missing 'context'")
            for q, qa in enumerate(paragraph.get("qas", [])):
                where = f"{source}: article {a} paragraph {p} question {q}"
                if not isinstance(qa.get("id"), str) or not isinstance(qa.get("question"), str):
                    raise DataError(f"{where}: missing 'id' or 'question'")
                if qa["id"] in seen:
                    raise DataError(f"{where}: duplicate id {qa['id']!r}")
                seen.add(qa["id"])
                answers = qa.get("answers", [])
                for answer in answers:
                    start, text = answer.get("answer_start"), answer.get("text")
                    if not isinstance(start, int) or not isinstance(text, str):
                        raise DataError(f"{where}: answer without 'text' and 'answer_start'")
                    if context[start : start + len(text)] != text:
                        raise DataError(f"{where}: answer {text!r} is not at answer_start {start}")
                columns["id"].append(qa["id"])
                columns["title"].append(article.get("title", ""))
                columns["context"].append(context)
                columns["question"].append(qa["question"])
                columns["answers"].append(
                    {"text": [x["text"] for x in answers], "answer_start": [x["answer_start"] for x in answers]}
                )
    return columns


def load_squad(source: str, split: str = "validation") -> datasets.Dataset:
    """Flat SQuAD records from a local JSON file, or from a hub dataset name and split."""
    path = Path(source)
    if path.exists():
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DataError(f"{source}: not a UTF-8 JSON file ({error})") from None
        return datasets.Dataset.from_dict(_flatten(payload, source))
    if source.endswith(".json"):
        raise DataError(f"{source}: no such file")
    return datasets.load_dataset(source, split=split)
