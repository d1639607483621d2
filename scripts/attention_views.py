"""Which attention view points at the answer? The answer-sentence hit rate of every view in
``qa.heat.VIEWS`` on a SQuAD file, over all questions and split by whether the model's answer is
an exact match (a view that follows the chosen answer, such as ``self``, scores well where the
answer is right by construction; where it is wrong, only a view that reads the question can).
A contextual model's features are encoded once, for all views, into training's on-disk cache
(``qa.train.contextual_features``: whole passages, as training's dev evaluation reads them).

Each view's heat levels are fitted on the same questions (``qa.heat.fit_level_ratios``: the ratios to
the uniform weight that put ``qa.heat.LEVEL_SHARES`` of the top answers' passage tokens at or above
each level), since one model's heat is flatter than another's.

With ``--record`` the view with the best hit rate over all questions and every view's levels are
written into the model folder's config.json (``attention``): the view ``qa ask``, ``qa chat``,
``qa evaluate`` and ``Reader`` show for that model unless told another, and the levels they shade at.

Usage: python scripts/attention_views.py [--data PATH] [--model DIR] [--json docs/attention-views-default.json] [--record]
"""
from __future__ import annotations

import argparse
import json
from itertools import compress
from pathlib import Path

import numpy as np
from rich.console import Console

from qa.answers import best_texts
from qa.checkpoint import CONFIG_FILE, read_json, write_json
from qa.cli import MODEL_HELP
from qa.data import load_squad
from qa.features import prepare
from qa.evaluation import sentence_hits
from qa.heat import LEVEL_RATIOS, LEVEL_SHARES, VIEWS, HeatDisplay, fit_level_ratios
from qa.inference import Passages
from qa.metric import squad_scores
from qa.reader import Reader, model_folder
from qa.train import contextual_features
from qa.errors import run_script


def view_hits(data: str, model: str | None) -> dict:
    """{view: {"all" | "right" | "wrong": SentenceHits.result(), "level_ratios": fitted levels,
    "level_shares": the share of tokens at or above each}}."""
    reader = Reader.load(model)
    prepared = prepare(load_squad(data))
    references = [{"id": e.id, "answers": e.answers} for e in prepared.examples]
    contexts = [prepared.contexts[e.context_index] for e in prepared.examples]
    context = None  # a contextual model's features are encoded once, into training's on-disk cache, for all views
    if reader.encoder is not None:
        context = contextual_features(reader.net.config, prepared, Console(stderr=True))
    results = {}
    for view in VIEWS:
        display = HeatDisplay(view, reader.level_ratios.get(view, LEVEL_RATIOS))
        predictions = reader.read(Passages.of(prepared), features=context, display=display, force=True)
        exact = [q["exact_match"] for q in squad_scores(best_texts(predictions), references, per_question=True)["per_question"]]
        right = [bool(e) for e in exact]
        parts = {"all": [True] * len(right), "right": right, "wrong": [not r for r in right]}
        results[view] = {name: sentence_hits(*(list(compress(column, keep)) for column in
                                               (predictions, contexts, references)), view)
                         for name, keep in parts.items()}
        ratios = np.concatenate([p.answers[0].heat.ratio for p in predictions if p.answers])
        levels = fit_level_ratios(ratios)
        results[view]["level_ratios"] = list(levels)
        results[view]["level_shares"] = [round(float((ratios >= r).mean()), 4) for r in levels]
        print(view, json.dumps(results[view]), flush=True)
    return results


def record_view(folder: Path, results: dict, data: str) -> str:
    """Write the view of ``results`` (``view_hits``) with the best hit rate over all questions, the
    figures that chose it and every view's levels into the model folder's config.json; returns that view."""
    rates = {view: parts["all"]["answer_sentence_hit_rate"] for view, parts in results.items()}
    best = max(rates, key=rates.get)
    chance = next(iter(results.values()))["all"]["length_weighted_chance"]
    settings = read_json(folder / CONFIG_FILE)
    write_json(folder / CONFIG_FILE, {**settings, "attention": {
        "view": best, "measured_on": data, "answer_sentence_hit_rate": {v: round(r, 4) for v, r in rates.items()},
        "length_weighted_chance": round(chance, 4), "levels": {v: parts["level_ratios"] for v, parts in results.items()},
        "level_shares_aimed_at": list(LEVEL_SHARES)}})
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/squad-v1.1/dev.json")
    parser.add_argument("--model", help=MODEL_HELP)
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--record", action="store_true",
                        help="write the best view into the model folder's config.json (its default view from then on)")
    args = parser.parse_args()
    results = view_hits(args.data, args.model)
    if args.json:
        write_json(Path(args.json), {"data": args.data, "model": args.model or "default", "views": results})
    if args.record:
        folder = model_folder(args.model)
        print(f"recorded {record_view(folder, results, args.data)!r} in {folder / CONFIG_FILE}")


if __name__ == "__main__":
    run_script(main)
