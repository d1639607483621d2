"""Which attention view points at the answer? The answer-sentence hit rate of every view in
``qa.heat.VIEWS`` on a SQuAD file, over all questions and split by whether the model's answer is
an exact match (a view that follows the chosen answer, such as ``self``, scores well where the
answer is right by construction; where it is wrong, only a view that reads the question can).

Usage: python scripts/attention_views.py [--data PATH] [--model DIR] [--json docs/attention-views.json]
"""
from __future__ import annotations

import argparse
import json
from itertools import compress
from dataclasses import replace
from pathlib import Path

from qa.answers import best_texts
from qa.checkpoint import write_json
from qa.cli import MODEL_HELP
from qa.data import load_squad
from qa.features import prepare
from qa.evaluation import sentence_hits
from qa.heat import VIEWS
from qa.inference import read_examples
from qa.metric import squad_scores
from qa.reader import Reader


def view_hits(data: str, model: str | None) -> dict:
    """{view: {"all" | "right" | "wrong": SentenceHits.result()}}."""
    records = load_squad(data)
    reader = Reader.load(model)
    prepared = prepare(records)
    references = [{"id": i, "answers": a} for i, a in zip(records["id"], records["answers"])]
    context = reader.context_features(prepared.contexts, prepared.context_tokens, list(records["question"]),
                                      [e.question for e in prepared.examples])  # None for a model without them
    results = {}
    for view in VIEWS:
        predictions = read_examples(reader.net, reader.batcher, prepared, replace(reader.options, heat_view=view),
                                    context=context)
        exact = [q["exact_match"] for q in squad_scores(best_texts(predictions), references, per_question=True)["per_question"]]
        right = [bool(e) for e in exact]
        parts = {"all": [True] * len(right), "right": right, "wrong": [not r for r in right]}
        results[view] = {name: sentence_hits(*(list(compress(column, keep)) for column in
                                               (predictions, records["context"], references)), view)
                         for name, keep in parts.items()}
        print(view, json.dumps(results[view]), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/squad-v1.1/dev.json")
    parser.add_argument("--model", help=MODEL_HELP)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    results = view_hits(args.data, args.model)
    if args.json:
        write_json(Path(args.json), {"data": args.data, "model": args.model or "shipped", "views": results})


if __name__ == "__main__":
    main()
