"""Make a document-level SQuAD file: every question of a SQuAD-format file asked about its whole
article, the article's paragraphs joined with a blank line and the answer offsets shifted.

    python scripts/document_level.py ../shared/data/squad-v1.1/dev.json runs/dev-documents.json
    qa evaluate runs/dev-documents.json --output runs/dev-documents-eval

``--articles N`` keeps the first N articles (a quicker sample). The output keeps the official
nested layout, one paragraph per article, so ``qa evaluate`` reads it like any SQuAD file.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from qa.errors import run_script
from qa.inputs import read_json_object

SEPARATOR = "\n\n"


def whole_article(article: dict) -> dict:
    """One article with its paragraphs joined into one context and every answer_start shifted."""
    context, questions = "", []
    for paragraph in article["paragraphs"]:
        offset = len(context) + (len(SEPARATOR) if context else 0)
        context = context + SEPARATOR + paragraph["context"] if context else paragraph["context"]
        for qa in paragraph["qas"]:
            moved = [{**answer, "answer_start": answer["answer_start"] + offset} for answer in qa.get("answers", [])]
            questions.append({**qa, "answers": moved})
    for qa in questions:
        for answer in qa["answers"]:
            assert context[answer["answer_start"]:answer["answer_start"] + len(answer["text"])] == answer["text"]
    return {"title": article.get("title", ""), "paragraphs": [{"context": context, "qas": questions}]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="SQuAD-format JSON file")
    parser.add_argument("output", help="where to write the document-level file")
    parser.add_argument("--articles", type=int, default=0, help="keep only the first N articles (0: all)")
    args = parser.parse_args()
    payload = read_json_object(args.source)
    articles = payload["data"][: args.articles or None]
    documents = [whole_article(article) for article in articles]
    Path(args.output).write_text(json.dumps({"version": payload.get("version", ""), "data": documents}), encoding="utf-8")
    lengths = [len(d["paragraphs"][0]["context"]) for d in documents]
    questions = sum(len(d["paragraphs"][0]["qas"]) for d in documents)
    print(f"{args.output}: {len(documents)} articles, {questions} questions, "
          f"contexts of {min(lengths):,}-{max(lengths):,} characters (mean {sum(lengths) // len(lengths):,})")


if __name__ == "__main__":
    run_script(main)
