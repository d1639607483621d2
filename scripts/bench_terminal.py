"""Terminal-experience timings with the shipped model.

1. cold start: ``qa ask`` from process launch to printed answer (median of --runs);
2. a long passage: the first dev article's paragraphs joined (5,000+ words), answered in-process
   through the same windowing as the terminal.

Usage: python scripts/bench_terminal.py [--runs 5] [--dev ../shared/data/squad-v1.1/dev.json]
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

PASSAGE = ("The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, "
           "a region in France. They were led by Rollo, a Viking chieftain.")


def cold_start(runs: int) -> list[float]:
    seconds = []
    for _ in range(runs):
        tic = time.perf_counter()
        subprocess.run([sys.executable, "-m", "qa", "ask", "Who led the Normans?", "--context", PASSAGE],
                       check=True, capture_output=True)
        seconds.append(time.perf_counter() - tic)
    return seconds


def long_passage(dev: str, min_words: int = 5000) -> tuple[int, float, str]:
    from qa.reader import Reader

    articles = json.loads(Path(dev).read_text())["data"]
    for article in articles:
        paragraphs = article["paragraphs"]
        text = "\n\n".join(p["context"] for p in paragraphs)
        if len(text.split()) >= min_words:
            question = paragraphs[-1]["qas"][0]["question"]
            break
    reader = Reader.load()
    reader.answer("warm up?", PASSAGE)
    tic = time.perf_counter()
    answer = reader.answer(question, text)[0]
    return len(text.split()), time.perf_counter() - tic, f"{question} -> {answer.text}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dev", default="../shared/data/squad-v1.1/dev.json")
    args = parser.parse_args()
    seconds = cold_start(args.runs)
    print(f"qa ask cold start: median {statistics.median(seconds):.2f} s over {args.runs} runs "
          f"({', '.join(f'{s:.2f}' for s in seconds)})")
    words, elapsed, example = long_passage(args.dev)
    print(f"{words:,}-word passage answered in {elapsed:.2f} s ({example})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
