"""Training loop: length-bucketed batches, Adamax, clipping, EMA weights, per-epoch dev EM/F1,
best-checkpoint keeping, resumable checkpoints and a time budget.

A run folder holds ``log.jsonl`` (config, then one line per epoch), ``last.safetensors`` (the
resumable state in one atomically replaced file: model, EMA, optimizer, RNG, position in the
epoch) and ``best/`` (the EMA weights with the best dev F1, in the shipped-model format).
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from qa.batching import Batcher, bucketed_batches
from qa.checkpoint import (
    optimizer_tensors,
    read_checkpoint,
    restore_optimizer,
    save_model,
    write_checkpoint,
)
from qa.data import load_squad
from qa.features import PreparedSet, prepare
from qa.metric import squad_scores
from qa.model import ReaderConfig, ReaderNet, glove_tensor, span_loss
from qa.predict import predict
from qa.vocab import Vocabulary, most_frequent_words


@dataclass
class TrainConfig:
    """Training settings; read from a JSON recipe in ``pipelines/`` (keys ``training`` and ``model``)."""

    train: str = "../shared/data/squad-v1.1/train.json"
    dev: str = "../shared/data/squad-v1.1/dev.json"
    run_dir: str = "runs/default"
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 0.002
    grad_clip: float = 10.0
    ema_decay: float = 0.999  # 0 disables the moving average
    tune_top_words: int = 1000  # most frequent question words whose vectors are fine-tuned
    max_train_passage_tokens: int = 400  # longer training passages are skipped (rare in SQuAD)
    max_answer_len: int = 15
    max_minutes: float = 0.0  # 0 = no budget
    max_steps: int = 0  # stop after this many optimizer steps in all (0 = no limit); a load-independent budget
    checkpoint_minutes: float = 10.0
    seed: int = 13
    threads: int = 0  # 0 = torch default
    limit_train: int = 0  # use only the first N training questions (0 = all); for smoke tests
    limit_dev: int = 0
    model: ReaderConfig = field(default_factory=ReaderConfig)

    @classmethod
    def from_file(cls, path: str, overrides: dict | None = None) -> "TrainConfig":
        recipe = json.loads(Path(path).read_text())
        values = {**recipe.get("training", {}), **(overrides or {})}
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{path}: unknown training settings: {', '.join(sorted(unknown))}")
        return cls(**values, model=ReaderConfig.from_dict(recipe.get("model", {})))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class EMA:
    """Exponential moving average of trainable weights; evaluation uses the averaged copy."""

    def __init__(self, net: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in net.state_dict().items()}

    def update(self, net: torch.nn.Module) -> None:
        with torch.no_grad():
            for k, v in net.state_dict().items():
                if v.dtype.is_floating_point:
                    self.shadow[k].mul_(self.decay).add_(v.detach(), alpha=1 - self.decay)
                else:
                    self.shadow[k].copy_(v)



@contextlib.contextmanager
def averaged_weights(net: torch.nn.Module, ema: EMA | None):
    """Inside the block the net carries the EMA weights (unchanged when there is no EMA)."""
    if ema is None:
        yield
        return
    saved = {k: v.detach().clone() for k, v in net.state_dict().items()}
    net.load_state_dict(ema.shadow)
    try:
        yield
    finally:
        net.load_state_dict(saved)


class InterruptRequest:
    """Turns Ctrl-C (SIGINT) into a request honoured between optimizer steps, so a checkpoint is
    always taken at a step boundary and resuming stays exact."""

    def __enter__(self) -> "InterruptRequest":
        self.requested = False
        self.previous = signal.signal(signal.SIGINT, self._request)
        return self

    def _request(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self.previous)


def _training_pairs(data: PreparedSet, max_tokens: int) -> list[int]:
    """Indices of training examples whose passage fits ``max_tokens`` tokens."""
    return [i for i, e in enumerate(data.examples) if len(data.context_tokens[e.context_index]) <= max_tokens]


def _load(path: str, limit: int, console) -> PreparedSet:
    records = load_squad(path)
    if limit:
        records = records.select(range(min(limit, len(records))))
    with console.status(f"preparing {path} ({len(records)} questions)"):
        data = prepare(records)
    console.print(f"{path}: {data.stats}")
    return data


def evaluate_dev(net, batcher, dev: PreparedSet, max_answer_len: int) -> dict:
    predictions = predict(net, batcher, dev, max_answer_len=max_answer_len)
    texts = {p.id: (p.texts[0] if p.texts else "") for p in predictions}
    return squad_scores(texts, [{"id": e.id, "answers": e.answers} for e in dev.examples])


def _save_last(path: Path, net, ema, optimizer, position: dict, config: dict) -> None:
    """The resumable state (weights, EMA, optimizer, RNG, position) as one atomic file."""
    opt_tensors, opt_meta = optimizer_tensors(optimizer)
    groups = {"model": net.state_dict(), "ema": ema.shadow if ema else {}, "optimizer": opt_tensors,
              "rng": {"torch": torch.get_rng_state()}}
    write_checkpoint(path, groups, {"position": position, "optimizer": opt_meta, "config": config})


def _sync_log(path: Path, history: list[dict]) -> None:
    """Make the log's epoch lines equal the checkpoint's history: a run killed between the
    checkpoint and the log write would otherwise lose or (re-evaluating on resume) repeat a line."""
    def is_start(line: str) -> bool:
        try:
            return json.loads(line).get("event") == "start"
        except json.JSONDecodeError:  # a line cut short by the kill
            return False

    kept = [line for line in (path.read_text().splitlines() if path.exists() else []) if is_start(line)]
    path.write_text("".join(line + "\n" for line in kept + [json.dumps(r) for r in history]))


def train(config: TrainConfig, console=None) -> dict:
    """Train (or resume) a reader as configured; returns the best dev metrics."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = console or Console()
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    run = Path(config.run_dir)
    last = run / "last.safetensors"
    train_data = _load(config.train, config.limit_train, console)
    dev_data = _load(config.dev, config.limit_dev, console)

    resume = last.exists()
    if resume:
        groups, state = read_checkpoint(last)
        model_config = ReaderConfig.from_dict(state["config"]["model"])
        position = state["position"]
    else:
        tuned = most_frequent_words([e.question.words for e in train_data.examples], config.tune_top_words)
        model_config = ReaderConfig.from_dict({**config.model.to_dict(), "tuned_words": tuned})
        position = {"epoch": 0, "step": 0, "minutes": 0.0, "best_f1": -1.0, "history": []}
    full_config = {"training": {k: v for k, v in asdict(config).items() if k != "model"}, "model": model_config.to_dict()}

    net = ReaderNet(model_config, glove_tensor())
    optimizer = torch.optim.Adamax([p for p in net.parameters() if p.requires_grad], lr=config.learning_rate)
    ema = EMA(net, config.ema_decay) if config.ema_decay else None
    if resume:
        net.load_state_dict(groups["model"])
        if ema:
            ema.shadow = groups["ema"]
        torch.set_rng_state(groups["rng"]["torch"])
        restore_optimizer(optimizer, groups.get("optimizer", {}), state["optimizer"])
        _sync_log(run / "log.jsonl", position["history"])
        console.print(f"resuming {run} at epoch {position['epoch'] + 1}, step {position['step']}")
    parameters = sum(p.numel() for p in net.parameters() if p.requires_grad)
    if not resume:
        run.mkdir(parents=True, exist_ok=True)
        with open(run / "log.jsonl", "a") as log:
            log.write(json.dumps({"event": "start", "config": full_config, "parameters": parameters,
                                  "train_stats": train_data.stats, "dev_stats": dev_data.stats}) + "\n")
    console.print(f"model: {parameters:,} trainable parameters; threads {torch.get_num_threads()}")

    batcher = Batcher(Vocabulary(model_config.tuned_words), model_config.max_word_chars)
    usable = _training_pairs(train_data, config.max_train_passage_tokens)
    lengths = [len(train_data.context_tokens[train_data.examples[i].context_index]) for i in usable]
    started = time.monotonic() - position["minutes"] * 60
    last_save = time.monotonic()
    out_of_time = False  # the minutes or steps budget is spent

    def minutes() -> float:
        return (time.monotonic() - started) / 60

    with InterruptRequest() as interrupt:  # Ctrl-C is honoured at the next step or epoch boundary
        while position["epoch"] < config.epochs and not out_of_time and not interrupt.requested \
                and not (config.max_steps and position.get("total_steps", 0) >= config.max_steps):
            epoch = position["epoch"]
            batches = bucketed_batches(lengths, config.batch_size, np.random.default_rng(config.seed + epoch))
            net.train()
            columns = [TextColumn(f"epoch {epoch + 1}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("loss {task.fields[loss]:.3f}  {task.fields[speed]:.0f} ex/s"),
                       TimeElapsedColumn(), TimeRemainingColumn()]
            running, seen, tic = None, 0, time.monotonic()
            with Progress(*columns, console=console, transient=False) as progress:
                task = progress.add_task("train", total=len(batches), completed=position["step"], loss=0.0, speed=0.0)
                for step in range(position["step"], len(batches)):
                    chosen = [train_data.examples[usable[i]] for i in batches[step]]
                    batch = batcher.batch([train_data.context_tokens[e.context_index] for e in chosen],
                                          [e.question for e in chosen], [e.answer_span for e in chosen])
                    loss = span_loss(net(batch), batch)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"non-finite loss at epoch {epoch + 1} step {step}; last checkpoint kept in {last}")
                    optimizer.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
                    optimizer.step()
                    if ema:
                        ema.update(net)
                    running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
                    seen += len(batch)
                    position["step"] = step + 1
                    progress.update(task, advance=1, loss=running, speed=seen / (time.monotonic() - tic))
                    if interrupt.requested:
                        break
                    position["total_steps"] = position.get("total_steps", 0) + 1
                    if (config.max_minutes and minutes() >= config.max_minutes) or \
                            (config.max_steps and position["total_steps"] >= config.max_steps):
                        out_of_time = True
                        break
                    if time.monotonic() - last_save > config.checkpoint_minutes * 60:
                        position["minutes"] = minutes()
                        _save_last(last, net, ema, optimizer, position, full_config)
                        last_save = time.monotonic()
            if interrupt.requested:
                break
            speed = seen / max(time.monotonic() - tic, 1e-9)
            eval_tic = time.monotonic()
            with averaged_weights(net, ema):
                metrics = evaluate_dev(net, batcher, dev_data, config.max_answer_len)
            record = {"event": "epoch", "epoch": epoch + 1, "steps": position["step"], "complete": not out_of_time,
                      "minutes": round(minutes(), 2), "train_examples_per_s": round(speed, 1), "loss": running,
                      "dev_eval_s": round(time.monotonic() - eval_tic, 1), **metrics}
            console.print(f"epoch {epoch + 1}: dev EM {metrics['exact_match']:.2f} F1 {metrics['f1']:.2f} "
                          f"({record['minutes']:.1f} min, {speed:.0f} ex/s)")
            position["history"].append(record)
            if metrics["f1"] > position["best_f1"]:
                position["best_f1"] = metrics["f1"]
                with averaged_weights(net, ema):
                    save_model(run / "best", net, {"model": model_config.to_dict(), "dev": metrics})
            if not out_of_time:
                position["epoch"], position["step"] = epoch + 1, 0
            position["minutes"] = minutes()
            _save_last(last, net, ema, optimizer, position, full_config)
            last_save = time.monotonic()
            with open(run / "log.jsonl", "a") as log:  # after the checkpoint; a resume repairs a lost line
                log.write(json.dumps(record) + "\n")
        if interrupt.requested:
            position["minutes"] = minutes()
            _save_last(last, net, ema, optimizer, position, full_config)
            raise KeyboardInterrupt(f"training interrupted; resumable checkpoint saved in {last}")
    best = max(position["history"], key=lambda r: r["f1"]) if position["history"] else {}
    return best
