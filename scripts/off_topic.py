"""Make an "off-topic" file from a SQuAD v1.1 file, in the SQuAD 2.0 layout: every question asked twice,
once about its own whole article (answerable) and once about another article of the same file
(``is_impossible``: the right outcome is to abstain). ``qa evaluate`` on it gives the official v2.0
figures of abstaining where people meet it: a question about the wrong document.

    python scripts/off_topic.py ../shared/data/squad-v1.1/dev.json runs/dev-off-topic.json
    qa evaluate runs/dev-off-topic.json --output runs/dev-off-topic-eval

Articles are whole (``document_level.whole_article``: paragraphs joined by a blank line). The other
article of each article is drawn at random (``--seed``), never itself, and every article is some
other's exactly once (a random derangement), so each text is asked its own questions and one other
article's. An asked-elsewhere question keeps its id with ``-off`` added.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from document_level import whole_article  # scripts/ is on the path when a script here runs
from qa.errors import run_script
from qa.inputs import read_json_object

SUFFIX = "-off"


def derangement(count: int, seed: int) -> list[int]:
    """A random permutation of range(count) with no fixed point: article i's questions go to article result[i]."""
    if count < 2:
        raise SystemExit("an off-topic file needs at least 2 articles")
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return [order[(order.index(i) + 1) % count] for i in range(count)]  # each to the next in a random cycle


def off_topic(articles: list[dict], seed: int) -> list[dict]:
    """Each whole article with its own questions and, unanswerable, those of the article sent to it."""
    documents = [whole_article(article) for article in articles]
    target = derangement(len(documents), seed)
    elsewhere: list[list[dict]] = [[] for _ in documents]
    for source, document in enumerate(documents):
        for qa in document["paragraphs"][0]["qas"]:
            elsewhere[target[source]].append({"id": qa["id"] + SUFFIX, "question": qa["question"],
                                              "answers": [], "is_impossible": True})
    for document, asked in zip(documents, elsewhere):
        own = [{**qa, "is_impossible": False} for qa in document["paragraphs"][0]["qas"]]
        document["paragraphs"][0]["qas"] = own + asked
    return documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="SQuAD v1.1 file")
    parser.add_argument("output", help="where to write the off-topic file (SQuAD 2.0 layout)")
    parser.add_argument("--articles", type=int, default=0, help="keep only the first N articles (0: all)")
    parser.add_argument("--seed", type=int, default=13, help="which other article each article's questions go to")
    args = parser.parse_args()
    payload = read_json_object(args.source)
    documents = off_topic(payload["data"][: args.articles or None], args.seed)
    Path(args.output).write_text(json.dumps({"version": "v2.0", "data": documents}), encoding="utf-8")
    questions = sum(len(d["paragraphs"][0]["qas"]) for d in documents)
    print(f"{args.output}: {len(documents)} articles, {questions} questions, half of them about another article")


if __name__ == "__main__":
    run_script(main)
