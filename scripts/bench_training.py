"""Training examples/s of a model's config, taking qa train's own step on length-bucketed dev batches.

A fresh net with the model's config and vocabulary takes ``qa.train.train_step`` (Adamax, clipping,
EMA update) on batches of dev questions after a few warm-up steps; the texts are encoded once
beforehand, with any contextual features extracted first, as qa train does (not timed).
``train_examples_per_s`` is in the precision the recipe trains in on this CPU (bfloat16 autocast
where the CPU has bfloat16 kernels, else float32); ``train_examples_per_s_float32`` in float32.

Usage (from the repository root; needs ``pip install -e ".[bench]"``, an idle machine):
    python scripts/bench_training.py [--model default|fast|DIR] [--dev PATH] [--json PATH] [--quick]
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import Progress

from qa.cli import MODEL_HELP
from qa.errors import run_script


@dataclass(frozen=True)
class TrainingSizes:
    """How many steps are timed, after how many warm-up steps, of how many questions each."""

    steps: int = 30
    warmup: int = 3
    batch: int = 32


QUICK = TrainingSizes(steps=2, batch=8)


def training_set(reader, dev: str, sizes: TrainingSizes):
    """The first dev questions that ``sizes`` needs, prepared and encoded for training by qa train's own
    code (``qa.train.contextual_features`` first for a model that reads them)."""
    from qa.data import load_squad
    from qa.features import prepare
    from qa.train import TrainConfig, contextual_features
    from qa.training_data import TrainingSet

    data = prepare(load_squad(dev, limit=(sizes.warmup + sizes.steps + 2) * sizes.batch))
    context = None
    if reader.encoder is not None:
        context = contextual_features(reader.net.config, data, Console(quiet=True))
    return TrainingSet.encode(data, reader.batcher, TrainConfig().max_train_passage_tokens, context=context)


def training_speed(reader, training, sizes: TrainingSizes, progress: Progress, bfloat16: bool) -> float:
    """Examples/s of a fresh net with ``reader``'s config taking ``qa.train.train_step`` on full
    length-bucketed batches of ``training``, after warm-up, in float32 or under the recipe's autocast."""
    from qa.model import ReaderNet
    from qa.train import TrainConfig, Trainer, TrainState, epoch_batches, train_step

    config = TrainConfig(mixed_precision=bfloat16)
    steps = sizes.warmup + sizes.steps
    orders = [b for b in epoch_batches(training.deal(config.seed, 0), sizes.batch, config.seed, ranks=1)
              if len(b) == sizes.batch][:steps]
    if len(orders) < steps:
        raise ValueError(f"only {len(orders)} full training batches of {sizes.batch}; {steps} needed")
    torch.manual_seed(config.seed)
    trainer = Trainer.build(config, ReaderNet(reader.net.config, reader.net.words.vectors).train())
    state = TrainState()
    task = progress.add_task("training steps", total=steps)
    for step, order in enumerate(orders):
        if step == sizes.warmup:
            tic = time.perf_counter()
        train_step(trainer, training, order, state, len(orders))
        progress.advance(task)
    progress.remove_task(task)
    return sizes.steps * sizes.batch / (time.perf_counter() - tic)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help=MODEL_HELP)
    parser.add_argument("--dev", default="../shared/data/squad-v1.1/dev.json", help="SQuAD v1.1 dev file")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--quick", action="store_true", help="2 timed steps of 8 questions (smoke tests)")
    args = parser.parse_args()

    from qa.model import cpu_has_bfloat16_kernels
    from qa.reader import Reader

    sizes = QUICK if args.quick else TrainingSizes()
    reader = Reader.load(args.model)
    kernels = cpu_has_bfloat16_kernels()
    with Progress(transient=True) as progress:
        training = training_set(reader, args.dev, sizes)
        float32 = training_speed(reader, training, sizes, progress, bfloat16=False)
        recipe = training_speed(reader, training, sizes, progress, bfloat16=True) if kernels else float32
    figures = {"model": args.model, "bfloat16_kernels": kernels, "train_examples_per_s": recipe,
               "train_examples_per_s_float32": float32, "sizes": asdict(sizes)}
    Console().print(f"{args.model}: {recipe:.1f} training examples/s as the recipe trains on this CPU "
                    f"({'bfloat16 autocast' if kernels else 'float32: no bfloat16 kernels'}), "
                    f"{float32:.1f} in float32 ({sizes.steps} steps of {sizes.batch} after {sizes.warmup})")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    run_script(main)
