"""The figures of abstaining at other no-answer thresholds, from one ``qa evaluate --output`` run: the
official v2.0 figures (for a file with unanswerable questions) and the answerable questions refused,
at each threshold given. Reads ``nbest.json`` (the forced top answer of each question) and
``na_prob.json``, so a threshold costs no second reading.

    qa evaluate runs/dev-off-topic.json --output runs/off-topic-eval
    python scripts/abstention_at.py runs/dev-off-topic.json runs/off-topic-eval 0.0009 0.05 0.2
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from qa.data import load_squad
from qa.evaluation import abstention
from qa.squad.squad import v2_figures
from qa.errors import run_script
from qa.inputs import read_json_object


def figures_at(references: list[dict], forced: dict[str, str], probability: dict[str, float], threshold: float) -> dict:
    """Abstain where the probability is above ``threshold``: ``qa evaluate``'s abstention figures, and with
    unanswerable questions the official v2.0 figures."""
    result = abstention(probability, references, threshold)
    if "unanswerable" in result:
        chosen = [{"id": r["id"], "prediction_text": "" if probability[r["id"]] > threshold else forced[r["id"]]}
                  for r in references]
        official = v2_figures(chosen, references)
        result.update({k: round(official[k], 2) for k in ("exact", "f1", "HasAns_f1", "NoAns_f1") if k in official})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="the SQuAD-format file qa evaluate read")
    parser.add_argument("results", help="its --output folder (nbest.json, na_prob.json)")
    parser.add_argument("thresholds", type=float, nargs="+", help="no-answer thresholds to abstain above")
    args = parser.parse_args()
    records = load_squad(args.data)
    references = [{"id": i, "answers": a} for i, a in zip(records["id"], records["answers"])]
    nbest = read_json_object(Path(args.results) / "nbest.json")
    probability = read_json_object(Path(args.results) / "na_prob.json")
    forced = {i: found[0]["text"] if found else "" for i, found in nbest.items()}
    for threshold in args.thresholds:
        print(json.dumps(figures_at(references, forced, probability, threshold)))


if __name__ == "__main__":
    run_script(main)
