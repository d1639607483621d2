"""Cross-fitted no-answer threshold on a SQuAD 2.0 file, as its README allows: fit the threshold on
the articles with an even index, apply it to the odd ones, and the reverse; report the combined
official figures. Reads the files ``qa evaluate --output DIR`` wrote (the top answer of each
question in ``nbest.json``, kept even where the reader abstained, and ``na_prob.json``).

    qa evaluate ../shared/data/squad-v2.0/dev-v2.0.json --model M --output runs/v2-eval
    python scripts/cross_fit_threshold.py ../shared/data/squad-v2.0/dev-v2.0.json runs/v2-eval
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from qa.squad.squad import best_threshold, score_pairs, v2_figures
from qa.errors import run_script
from qa.inputs import read_json_object


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="the SQuAD 2.0 file")
    parser.add_argument("results", help="folder with nbest.json and na_prob.json from qa evaluate --output")
    args = parser.parse_args()
    payload = read_json_object(args.data)
    nbest = read_json_object(Path(args.results) / "nbest.json")
    probability = read_json_object(Path(args.results) / "na_prob.json")
    folds: dict[int, list[dict]] = {0: [], 1: []}
    for index, article in enumerate(payload["data"]):
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                answers = qa.get("answers", [])
                folds[index % 2].append({"id": qa["id"], "answers": {"text": [a["text"] for a in answers],
                                                                      "answer_start": [a["answer_start"] for a in answers]}})
    forced = {i: found[0]["text"] if found else "" for i, found in nbest.items()}
    chosen: dict[str, str] = {}
    report = {}
    for fit, apply in ((0, 1), (1, 0)):
        references = folds[fit]
        pairs = score_pairs([{"id": r["id"], "prediction_text": forced[r["id"]]} for r in references], references, v2=True)
        _, threshold = best_threshold([f for _, f in pairs], [probability[r["id"]] for r in references],
                                      [bool(r["answers"]["text"]) for r in references],
                                      [not forced[r["id"]] for r in references])
        report[f"threshold_fitted_on_{'even' if fit == 0 else 'odd'}_articles"] = threshold
        for r in folds[apply]:
            chosen[r["id"]] = "" if probability[r["id"]] > threshold else forced[r["id"]]
    references = folds[0] + folds[1]
    figures = v2_figures([{"id": r["id"], "prediction_text": chosen[r["id"]]} for r in references], references)
    report.update({k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()})
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    run_script(main)
