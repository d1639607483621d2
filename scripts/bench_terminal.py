"""Terminal-experience timings with a shipped model (``--model``, default ``default``).

1. cold start: ``qa ask`` from process launch to exit (median of --runs), its peak RSS, and
   where the time of a fresh process answering the same question goes, stage by stage;
2. a long passage: the first dev article's paragraphs joined (5,000+ words), answered in-process
   through the same windowing as the terminal;
3. the largest passage ``qa ask`` accepts (1,000,000 characters of dev paragraphs, in a file):
   wall time and the peak RSS of that ``qa ask`` process.

Usage: python scripts/bench_terminal.py [--model default|fast|DIR] [--runs 5] [--dev PATH] [--json PATH] [--cold-only]

``--json`` writes the cold-start figures under the keys ``scripts/bench.py`` used to give them
(``cold_start_s``, ``cold_start_runs``, ``peak_rss_mb``, ``cold_start_stages_s``).
"""
import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from qa.cli import MODEL_HELP
from qa.errors import run_script
from qa.inputs import read_json_object

QUESTION = "Who led the Normans?"
PASSAGE = ("The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, "
           "a region in France. They were led by Rollo, a Viking chieftain.")
# Runs one command and prints its launch-to-exit seconds and peak RSS. Forked straight from a large
# process, the child's ru_maxrss would start at that process's RSS (Linux carries it across exec).
LAUNCHER = """\
import resource, subprocess, sys, time
tic = time.perf_counter()
code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)
print(time.perf_counter() - tic, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(code)
"""
# What ``qa ask`` does before it renders, in a fresh process, printing each stage's seconds as JSON.
COLD_STAGES = """import json, sys, time
marks = [("start", time.perf_counter())]
import torch
marks.append(("import torch", time.perf_counter()))
from qa.reader import Reader
from qa import render, tokenize
marks.append(("import spaCy, rich and qa", time.perf_counter()))
reader = Reader.load(sys.argv[1])
marks.append(("load the model (GloVe index and rows, weights)", time.perf_counter()))
reader.answer(sys.argv[2], sys.argv[3], with_attention=True)
marks.append(("first answer (tokenizer and lemma table build, forward pass)", time.perf_counter()))
print(json.dumps({b[0]: b[1] - a[1] for a, b in zip(marks, marks[1:])}))
"""


def timed_process(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one process, from launch to exit. A launcher process runs
    it, so that the launcher's RUSAGE_CHILDREN holds that one process only."""
    done = subprocess.run([sys.executable, "-c", LAUNCHER, *command], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{shlex.join(command[1:4])} failed ({done.returncode}): {done.stderr.strip()}")
    seconds, max_rss = done.stdout.split()
    kilobytes = int(max_rss) / (1024 if sys.platform == "darwin" else 1)  # macOS reports bytes
    return float(seconds), kilobytes / 1024


def cold_start(model: str, runs: int) -> dict:
    """Median launch-to-exit seconds and the largest peak RSS of ``runs`` ``qa ask`` processes, and the
    median seconds of each start-up stage of ``runs`` fresh processes (``COLD_STAGES``)."""
    command = [sys.executable, "-m", "qa", "ask", QUESTION, "--context", PASSAGE, "--model", model]
    launches = [timed_process(command) for _ in range(runs)]
    stages = [json.loads(subprocess.run([sys.executable, "-c", COLD_STAGES, model, QUESTION, PASSAGE],
                                        capture_output=True, text=True, check=True).stdout) for _ in range(runs)]
    return {"cold_start_s": statistics.median(s for s, _ in launches), "cold_start_runs": runs,
            "cold_start_runs_s": [s for s, _ in launches], "peak_rss_mb": max(mb for _, mb in launches),
            "cold_start_stages_s": {k: statistics.median(r[k] for r in stages) for k in stages[0]}}


def long_passage(model: str, dev: str, min_words: int = 5000) -> tuple[int, float, str]:
    """Words, seconds and the answer of one in-process question about the first dev article of at
    least ``min_words`` words, its paragraphs joined, after a warm-up question."""
    from qa.reader import Reader

    articles = read_json_object(dev)["data"]
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

    paragraphs = [p["context"] for a in read_json_object(dev)["data"] for p in a["paragraphs"]]
    text = ""
    for paragraph in paragraphs * 2:
        if len(text) + len(paragraph) + 2 > MAX_PASSAGE_CHARS:
            break
        text += paragraph + "\n\n"
    path = folder / "largest-passage.txt"
    path.write_text(text)
    seconds, peak_mb = timed_process([sys.executable, "-m", "qa", "ask", QUESTION, "--file", str(path),
                                     "--model", model])
    return len(text), seconds, peak_mb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help=MODEL_HELP)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dev", default="../shared/data/squad-v1.1/dev.json")
    parser.add_argument("--json", help="also write the cold-start figures here")
    parser.add_argument("--cold-only", action="store_true", help="measure the cold start only")
    args = parser.parse_args()
    cold = cold_start(args.model, args.runs)
    print(f"qa ask cold start: median {cold['cold_start_s']:.2f} s over {args.runs} runs "
          f"({', '.join(f'{s:.2f}' for s in cold['cold_start_runs_s'])}), peak RSS {cold['peak_rss_mb']:.0f} MB")
    print("where it goes (medians; Python's own start-up is the rest): "
          + ", ".join(f"{stage} {s:.2f} s" for stage, s in cold["cold_start_stages_s"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, **cold}, indent=2) + "\n")
    if args.cold_only:
        return 0
    words, elapsed, example = long_passage(args.model, args.dev)
    print(f"{words:,}-word passage answered in {elapsed:.2f} s ({example})")
    with tempfile.TemporaryDirectory() as folder:
        chars, elapsed, peak = largest_passage(args.model, args.dev, Path(folder))
    print(f"{chars:,}-character passage (the limit is 1,000,000): qa ask took {elapsed:.1f} s, peak RSS {peak:.0f} MB")
    return 0


if __name__ == "__main__":
    run_script(main)
