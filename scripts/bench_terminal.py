"""Terminal-experience timings with a shipped model (``--model``, default ``default``).

1. cold start: ``qa ask`` from process launch to printed answer (median of --runs);
2. a long passage: the first dev article's paragraphs joined (5,000+ words), answered in-process
   through the same windowing as the terminal;
3. the largest passage ``qa ask`` accepts (1,000,000 characters of dev paragraphs, in a file):
   wall time and the peak RSS of that ``qa ask`` process.

Usage: python scripts/bench_terminal.py [--model default|fast|DIR] [--runs 5] [--dev ../shared/data/squad-v1.1/dev.json]
"""
import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import timed_process  # scripts/ is on the path when a script here runs

from qa.cli import MODEL_HELP

PASSAGE = ("The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, "
           "a region in France. They were led by Rollo, a Viking chieftain.")


def cold_start(model: str, runs: int) -> list[float]:
    """Seconds of each of ``runs`` ``qa ask`` processes, from launch to exit."""
    command = [sys.executable, "-m", "qa", "ask", "Who led the Normans?", "--context", PASSAGE, "--model", model]
    return [timed_process(command)[0] for _ in range(runs)]


def long_passage(model: str, dev: str, min_words: int = 5000) -> tuple[int, float, str]:
    from qa.reader import Reader

    articles = json.loads(Path(dev).read_text())["data"]
    for article in articles:
        paragraphs = article["paragraphs"]
        text = "\n\n".join(p["context"] for p in paragraphs)
        if len(text.split()) >= min_words:
            question = paragraphs[-1]["qas"][0]["question"]
            break
    reader = Reader.load(model)
    reader.answer("warm up?", PASSAGE)
    tic = time.perf_counter()
    answer = reader.answer(question, text)[0]
    return len(text.split()), time.perf_counter() - tic, f"{question} -> {answer.text}"


def largest_passage(model: str, dev: str, folder: Path) -> tuple[int, float, float]:
    """Characters, seconds and peak RSS (MB) of ``qa ask --file`` on a passage at the size limit."""
    from qa.inputs import MAX_PASSAGE_CHARS

    paragraphs = [p["context"] for a in json.loads(Path(dev).read_text())["data"] for p in a["paragraphs"]]
    text = ""
    for paragraph in paragraphs * 2:
        if len(text) + len(paragraph) + 2 > MAX_PASSAGE_CHARS:
            break
        text += paragraph + "\n\n"
    path = folder / "largest-passage.txt"
    path.write_text(text)
    seconds, peak_mb = timed_process([sys.executable, "-m", "qa", "ask", "Who led the Normans?", "--file", str(path),
                                     "--model", model])
    return len(text), seconds, peak_mb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help=MODEL_HELP)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dev", default="../shared/data/squad-v1.1/dev.json")
    args = parser.parse_args()
    seconds = cold_start(args.model, args.runs)
    print(f"qa ask cold start: median {statistics.median(seconds):.2f} s over {args.runs} runs "
          f"({', '.join(f'{s:.2f}' for s in seconds)})")
    words, elapsed, example = long_passage(args.model, args.dev)
    print(f"{words:,}-word passage answered in {elapsed:.2f} s ({example})")
    with tempfile.TemporaryDirectory() as folder:
        chars, elapsed, peak = largest_passage(args.model, args.dev, Path(folder))
    print(f"{chars:,}-character passage (the limit is 1,000,000): qa ask took {elapsed:.1f} s, peak RSS {peak:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
