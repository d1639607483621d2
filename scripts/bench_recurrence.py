"""What the LSTMs' recurrence costs in a training step, and so what a recurrence-free encoder could gain.

1. Profiles bfloat16 training steps of the shipped model's config on length-bucketed dev batches
   (``bench_training.training_speed``) and reports the share of CPU time in the LSTM kernels, forward and
   backward.
2. For each LSTM of the model, at a training-batch shape, times one direction's forward and backward
   pass against its input projection alone (``Linear(in, 4H)``, the part an SRU or QRNN keeps as one
   large matrix product). The difference is what the step-by-step recurrence costs.

The largest possible step speed-up from dropping every recurrence, at no cost of its own, is then
``1 / (1 - lstm_share * recurrent_fraction)``.

Usage (from the repository root; needs ``pip install -e ".[bench]"``, an idle machine whose CPU has bfloat16
kernels; journal figures of 2026-11-26 were measured on v3, now ``--model fast``):
    python scripts/bench_recurrence.py [--model fast] [--dev PATH] [--length 140] [--repeats 20] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from torch.profiler import ProfilerActivity, profile

from bench import elapsed_ms  # scripts/ is on the path when a script here runs
from bench_training import TrainingSizes, training_set, training_speed
from qa.errors import run_script


def lstm_share(reader, dev: str, sizes: TrainingSizes) -> dict:
    """Share of self CPU time in the LSTM kernels over profiled bfloat16 training steps (the texts are
    encoded for training before the profiler starts)."""
    training = training_set(reader, dev, sizes)
    with Progress(transient=True) as progress, profile(activities=[ProfilerActivity.CPU]) as prof:
        examples_per_s = training_speed(reader, training, sizes, progress, bfloat16=True)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    forward = sum(e.self_cpu_time_total for e in events if e.key == "aten::mkldnn_rnn_layer")
    backward = sum(e.self_cpu_time_total for e in events if e.key == "aten::mkldnn_rnn_layer_backward")
    return {"profiled_examples_per_s": examples_per_s, "lstm_forward_share": forward / total,
            "lstm_backward_share": backward / total, "lstm_share": (forward + backward) / total}


def forward_backward_ms(module: torch.nn.Module, inputs: torch.Tensor, repeats: int) -> float:
    """Mean milliseconds of one forward and backward pass under bfloat16 autocast."""

    def once():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = module(inputs)
        (out[0] if isinstance(out, tuple) else out).float().sum().backward()

    for _ in range(3):
        once()
    return sum(elapsed_ms(once) for _ in range(repeats)) / repeats


def recurrence_cost(net, batch: int, length: int, question_length: int, repeats: int) -> list[dict]:
    """One row per BiLSTM of the model (its first layer's sizes): one direction vs its input projection."""
    hidden = net.config.hidden
    shapes = [("passage encoder", net.passage_encoder, length), ("question encoder", net.question_encoder,
              question_length), ("matcher", net.matcher, length)]
    rows = []
    for name, encoder, steps in shapes:
        size = encoder.forward_rnns[0].input_size
        inputs = torch.randn(batch, steps, size, requires_grad=True)
        lstm_ms = forward_backward_ms(torch.nn.LSTM(size, hidden, batch_first=True), inputs, repeats)
        projection_ms = forward_backward_ms(torch.nn.Linear(size, 4 * hidden), inputs, repeats)
        flops = 3 * 2 * batch * steps * 4 * hidden  # forward + backward (about 2x forward), per multiply-add 2
        rows.append({"layer": name, "input": size, "steps": steps, "lstm_ms": lstm_ms, "projection_ms": projection_ms,
                     "recurrent_fraction": 1 - projection_ms / lstm_ms,
                     "lstm_gflops": flops * (size + hidden) / lstm_ms / 1e6,
                     "projection_gflops": flops * size / projection_ms / 1e6})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", default="../shared/data/squad-v1.1/dev.json")
    parser.add_argument("--length", type=int, default=140, help="passage tokens per row (SQuAD's mean is about 140)")
    parser.add_argument("--question-length", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--model", default="fast", help="the model whose config is profiled (default: fast)")
    args = parser.parse_args()

    from qa.model import cpu_has_bfloat16_kernels
    from qa.reader import Reader

    if not cpu_has_bfloat16_kernels():  # training would turn autocast off: a float32 profile, titled bfloat16
        raise SystemExit("this CPU has no bfloat16 kernels: the bfloat16 profile would be emulated or float32")
    torch.manual_seed(0)
    reader = Reader.load(args.model)
    sizes = TrainingSizes(steps=20, warmup=5)
    share = lstm_share(reader, args.dev, sizes)
    rows = recurrence_cost(reader.net, sizes.batch, args.length, args.question_length, args.repeats)
    lstm_ms = sum(r["lstm_ms"] for r in rows)
    recurrent = 1 - sum(r["projection_ms"] for r in rows) / lstm_ms  # time-weighted over the model's LSTMs
    bound = 1 / (1 - share["lstm_share"] * recurrent)

    table = Table(title=f"LSTM direction vs its input projection, batch {sizes.batch}, bfloat16 autocast")
    for column in ("layer", "input x steps", "LSTM ms", "projection ms", "recurrence share", "LSTM GFLOP/s",
                   "projection GFLOP/s"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    for r in rows:
        table.add_row(r["layer"], f"{r['input']} x {r['steps']}", f"{r['lstm_ms']:.1f}", f"{r['projection_ms']:.1f}",
                      f"{r['recurrent_fraction']:.0%}", f"{r['lstm_gflops']:.0f}", f"{r['projection_gflops']:.0f}")
    console = Console()
    console.print(table)
    console.print(f"training step ({share['profiled_examples_per_s']:.1f} examples/s under the profiler): "
                  f"LSTM kernels {share['lstm_share']:.1%} of CPU time (forward {share['lstm_forward_share']:.1%}, "
                  f"backward {share['lstm_backward_share']:.1%})")
    console.print(f"recurrence share of LSTM time, time-weighted: {recurrent:.0%}; a free recurrence-free encoder "
                  f"would make a step at most {bound:.2f}x as fast")
    if args.json:
        Path(args.json).write_text(json.dumps({**share, "layers": rows, "recurrent_fraction": recurrent,
                                               "speedup_bound": bound}, indent=2) + "\n")


if __name__ == "__main__":
    run_script(main)
