"""Make the file the no-answer threshold is fitted on: the questions of the last N articles of a
SQuAD v1.1 training file (articles a recipe's ``held_out_articles`` keeps out of training), each
asked twice, once about its own paragraph and once about a passage that does not answer it, made
the way training makes its negatives (``qa.training_data``): another paragraph of its article, the
one BM25 ranks best for the question, or its own paragraph without the sentences that hold the
answer, in turn; with ``--swapped`` also the question with a name or number of its paragraph
swapped for one from elsewhere in the article, asked about its own paragraph. Half the questions
of the output (SQuAD 2.0 layout) are unanswerable.

    python scripts/held_out_negatives.py ../shared/data/squad-v1.1/train.json runs/held-out.json --articles 10
    qa calibrate runs/held-out.json --model runs/default/best
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from qa.data import load_squad
from qa.features import prepare
from qa.training_data import answer_sentences, article_names, other_paragraphs, swapped_question

SUFFIX = {"other paragraph": "other", "answer sentences removed": "removed",  # negative ids: question id + suffix
          "question swapped": "swapped"}
SEED = 13  # which name or number is swapped, and for what


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("train", help="SQuAD v1.1 training file")
    parser.add_argument("output", help="where to write the SQuAD 2.0-layout file")
    parser.add_argument("--articles", type=int, default=10, help="how many of the last articles")
    parser.add_argument("--max-passage-tokens", type=int, default=400, help="longest paragraph used, as in training")
    parser.add_argument("--swapped", action="store_true", help="also make negatives by swapping a name or number "
                        "of the question (a third of them)")
    args = parser.parse_args()
    payload = json.loads(Path(args.train).read_text(encoding="utf-8"))
    held_out = payload["data"][-args.articles:]
    path = Path(args.output)
    with tempfile.TemporaryDirectory() as folder:  # the held-out articles as a file of their own, to load
        articles_file = Path(folder) / "held-out-v1.1.json"
        articles_file.write_text(json.dumps({"version": "v1.1 held out", "data": held_out}), encoding="utf-8")
        records = load_squad(str(articles_file))
    data = prepare(records, cache=False)
    titles = dict(zip(records["context"], records["title"]))
    articles = [titles[c] for c in data.contexts]
    usable = [i for i, e in enumerate(data.examples) if len(data.context_tokens[e.context_index]) <= args.max_passage_tokens]
    others = other_paragraphs(data, articles, usable, args.max_passage_tokens)
    removals = answer_sentences(data, usable)
    paragraphs: dict[str, list] = {}  # title -> paragraphs
    kinds = list(SUFFIX) if args.swapped else list(SUFFIX)[:2]
    counts = dict.fromkeys(["answerable", *kinds], 0)
    pools = article_names(data.contexts, data.context_tokens, articles)
    rng = np.random.default_rng(SEED)
    for k, i in enumerate(usable):
        example = data.examples[i]
        record = records[i]
        title = articles[example.context_index]
        question = {"id": example.id, "question": record["question"], "is_impossible": False,
                    "answers": [{"text": t, "answer_start": s} for t, s in
                                zip(record["answers"]["text"], record["answers"]["answer_start"])]}
        paragraphs.setdefault(title, []).append({"context": record["context"], "qas": [question]})
        counts["answerable"] += 1
        tokens = data.context_tokens[example.context_index]
        made = {}  # kind -> (context, question) of the negatives this question can make
        if others[k]:
            made["other paragraph"] = data.contexts[others[k][0]], record["question"]
        if removals[k] is not None:
            lo, hi = removals[k]
            end = tokens.starts[hi] if hi < len(tokens) else len(record["context"])
            made["answer sentences removed"] = (record["context"][: tokens.starts[lo]] + record["context"][end:]).strip(), \
                record["question"]
        if "question swapped" in kinds:
            swapped = swapped_question(record["question"], example.question, record["context"], pools[title], rng)
            if swapped is not None:
                made["question swapped"] = record["context"], swapped
        turn = kinds[k % len(kinds):] + kinds[: k % len(kinds)]  # this question's kind first, then the others
        kind = next((kind for kind in turn if kind in made), None)
        if kind is None:
            continue
        context, asked = made[kind]
        negative = {"id": f"{example.id}-{SUFFIX[kind]}", "question": asked, "is_impossible": True, "answers": []}
        paragraphs[title].append({"context": context, "qas": [negative]})
        counts[kind] += 1
    out = {"version": "v2.0 held out", "data": [{"title": t, "paragraphs": p} for t, p in paragraphs.items()]}
    path.write_text(json.dumps(out), encoding="utf-8")
    total = sum(counts.values())
    print(f"{path}: {len(paragraphs)} articles, {total} questions: "
          + ", ".join(f"{n} {kind}" for kind, n in counts.items())
          + f"; {100 * (total - counts['answerable']) / total:.1f}% unanswerable")


if __name__ == "__main__":
    main()
