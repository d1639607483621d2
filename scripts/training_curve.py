"""Print a run's per-epoch dev curve from its ``log.jsonl`` as a Markdown table.

Usage: python scripts/training_curve.py runs/default
"""
import sys

from qa.errors import run_script
from qa.train import read_log


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    lines = read_log(sys.argv[1])
    start = next(line for line in lines if line["event"] == "start")
    print(f"train: {start['train_stats']}  dev: {start['dev_stats']}\n")
    print("| epoch | steps | training minutes | train examples/s | loss | dev EM | dev F1 | dev eval s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for line in lines:
        if line["event"] == "epoch":
            partial = "" if line["complete"] else " (partial)"
            print(f"| {line['epoch']}{partial} | {line['steps']} | {line['minutes']:.1f} | {line['train_examples_per_s']:.0f} "
                  f"| {line['loss']:.3f} | {line['exact_match']:.2f} | {line['f1']:.2f} | {line['dev_eval_s']:.0f} |")
    return 0


if __name__ == "__main__":
    run_script(main)
