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
from qa.features import PreparedSet, prepare
from qa.training_data import answer_sentences, article_names, other_paragraphs, swapped_question
from qa.errors import run_script
from qa.inputs import read_json_object

SUFFIX = {"other paragraph": "other", "answer sentences removed": "removed",  # negative ids: question id + suffix
          "question swapped": "swapped"}
SEED = 13  # which name or number is swapped, and for what


def _arguments() -> argparse.Namespace:
    """The command line's arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("train", help="SQuAD v1.1 training file")
    parser.add_argument("output", help="where to write the SQuAD 2.0-layout file")
    parser.add_argument("--articles", type=int, default=10, help="how many of the last articles")
    parser.add_argument("--max-passage-tokens", type=int, default=400, help="longest paragraph used, as in training")
    parser.add_argument("--swapped", action="store_true", help="also make negatives by swapping a name or number "
                        "of the question (a third of them)")
    return parser.parse_args()


def _last_articles(train: str, count: int) -> PreparedSet:
    """The last ``count`` articles of a SQuAD v1.1 file, prepared (not cached: a one-off subset)."""
    payload = read_json_object(train)
    with tempfile.TemporaryDirectory() as folder:  # the held-out articles as a file of their own, to load
        articles_file = Path(folder) / "held-out-v1.1.json"
        articles_file.write_text(json.dumps({"version": "v1.1 held out", "data": payload["data"][-count:]}),
                                 encoding="utf-8")
        records = load_squad(str(articles_file))
    return prepare(records, cache=False)


def _negatives(data: PreparedSet, i: int, other: int | None, removal: tuple[int, int] | None,
               pool: dict | None, rng: np.random.Generator) -> dict[str, tuple[str, str]]:
    """The negatives question ``i`` can make, kind -> (passage, question): passage ``other`` of its article,
    its own without the answer's sentences (token range ``removal``), and (given its article's names and
    numbers, ``pool``) its own asked with one of them swapped in."""
    example = data.examples[i]
    own, tokens = data.contexts[example.context_index], data.context_tokens[example.context_index]
    asked = example.question_text
    made = {}
    if other is not None:
        made["other paragraph"] = data.contexts[other], asked
    if removal is not None:
        lo, hi = removal
        end = tokens.starts[hi] if hi < len(tokens) else len(own)
        made["answer sentences removed"] = (own[: tokens.starts[lo]] + own[end:]).strip(), asked
    if pool is not None:
        swapped = swapped_question(asked, example.question, own, pool, rng)
        if swapped is not None:
            made["question swapped"] = own, swapped
    return made


def _write(path: Path, paragraphs: dict[str, list], counts: dict[str, int]) -> None:
    """Write the SQuAD 2.0-layout file and print what it holds."""
    out = {"version": "v2.0 held out", "data": [{"title": t, "paragraphs": p} for t, p in paragraphs.items()]}
    path.write_text(json.dumps(out), encoding="utf-8")
    total = sum(counts.values())
    print(f"{path}: {len(paragraphs)} articles, {total} questions: "
          + ", ".join(f"{n} {kind}" for kind, n in counts.items())
          + f"; {100 * (total - counts['answerable']) / total:.1f}% unanswerable")


def main() -> None:
    args = _arguments()
    data = _last_articles(args.train, args.articles)
    usable = [i for i, e in enumerate(data.examples)
              if len(data.context_tokens[e.context_index]) <= args.max_passage_tokens]
    others = other_paragraphs(data, data.titles, usable, args.max_passage_tokens)
    removals = answer_sentences(data, usable)
    paragraphs: dict[str, list] = {}  # title -> paragraphs
    kinds = list(SUFFIX) if args.swapped else list(SUFFIX)[:2]
    counts = dict.fromkeys(["answerable", *kinds], 0)
    pools = article_names(data.contexts, data.context_tokens, data.titles)
    rng = np.random.default_rng(SEED)
    for k, i in enumerate(usable):
        example = data.examples[i]
        title = data.titles[example.context_index]
        question = {"id": example.id, "question": example.question_text, "is_impossible": False,
                    "answers": [{"text": t, "answer_start": s} for t, s in
                                zip(example.answers["text"], example.answers["answer_start"])]}
        paragraphs.setdefault(title, []).append({"context": data.contexts[example.context_index], "qas": [question]})
        counts["answerable"] += 1
        made = _negatives(data, i, others[k][0] if others[k] else None, removals[k],
                          pools[title] if "question swapped" in kinds else None, rng)
        turn = kinds[k % len(kinds):] + kinds[: k % len(kinds)]  # this question's kind first, then the others
        kind = next((kind for kind in turn if kind in made), None)
        if kind is None:
            continue
        context, asked = made[kind]
        negative = {"id": f"{example.id}-{SUFFIX[kind]}", "question": asked, "is_impossible": True, "answers": []}
        paragraphs[title].append({"context": context, "qas": [negative]})
        counts[kind] += 1
    _write(Path(args.output), paragraphs, counts)


if __name__ == "__main__":
    run_script(main)
