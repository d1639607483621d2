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
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from torch.nn.parallel import DistributedDataParallel

from qa.batching import Batcher, bucketed_batches
from qa.checkpoint import (
    optimizer_tensors,
    read_checkpoint,
    restore_optimizer,
    save_model,
    write_checkpoint,
    write_text,
)
from qa.data import load_squad
from qa.distributed import World, join, leave
from qa.features import PreparedSet, prepare
from qa.interrupts import InterruptRequest
from qa.metric import squad_scores
from qa.model import ReaderConfig, ReaderNet, glove_tensor, span_loss
from qa.predict import best_texts, predict
from qa.vocab import Vocabulary, most_frequent_words


@dataclass
class TrainConfig:
    """Training settings; read from a JSON recipe in ``pipelines/`` (keys ``training`` and ``model``)."""

    train: str = "../shared/data/squad-v1.1/train.json"
    dev: str = "../shared/data/squad-v1.1/dev.json"
    run_dir: str = "runs/default"
    epochs: int = 30
    batch_size: int = 32
    optimizer: str = "adamax"  # adamax|sgd
    learning_rate: float = 0.002
    decay_fraction: float = 0.0  # the learning rate falls linearly to 0 over this last share of the budget (0 = constant)
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
    prepare_workers: int = 0  # processes for tokenizing the data (datasets map num_proc; 0 = this one)
    device: str = "auto"  # auto|cpu|cuda
    mixed_precision: bool = False  # autocast: float16 with gradient scaling on CUDA, bfloat16 on CPU
    model: ReaderConfig = field(default_factory=ReaderConfig)

    @classmethod
    def from_file(cls, path: str, overrides: dict | None = None) -> "TrainConfig":
        recipe = json.loads(Path(path).read_text())
        values = {**recipe.get("training", {}), **(overrides or {})}
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{path}: unknown training settings: {', '.join(sorted(unknown))}")
        return cls(**values, model=ReaderConfig.from_dict(recipe.get("model", {})))

    def __post_init__(self):
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise ValueError(f"decay_fraction must be between 0 and 1, not {self.decay_fraction}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class EMA:
    """Exponential moving average of trainable weights; evaluation uses the averaged copy.

    The decay warms up as ``min(decay, (1 + t) / (10 + t))`` after ``t`` earlier updates (as in
    TensorFlow's ``ExponentialMovingAverage(num_updates=t)``). Without it the random initial weights
    keep a share ``decay ** t`` of the average: at 0.999 that is 27% after 1,310 steps, which drags
    down every early evaluation and short screen.
    """

    def __init__(self, net: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in net.state_dict().items()}

    def update(self, net: torch.nn.Module, updates_before: int) -> None:
        decay = min(self.decay, (1 + updates_before) / (10 + updates_before))
        with torch.no_grad():
            for k, v in net.state_dict().items():
                if v.dtype.is_floating_point:
                    self.shadow[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
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


def _training_pairs(data: PreparedSet, max_tokens: int) -> list[int]:
    """Indices of training examples whose passage fits ``max_tokens`` tokens."""
    return [i for i, e in enumerate(data.examples) if len(data.context_tokens[e.context_index]) <= max_tokens]


def _load(path: str, limit: int, workers: int, console) -> PreparedSet:
    records = load_squad(path, limit=limit)
    with console.status(f"preparing {path} ({len(records)} questions)"):
        data = prepare(records, workers=workers)
    console.print(f"{path}: {data.stats}")
    return data


def make_optimizer(config: TrainConfig, net: torch.nn.Module) -> torch.optim.Optimizer:
    """Adamax (the recipe's) or plain SGD over the trainable parameters."""
    choices = {"adamax": torch.optim.Adamax, "sgd": torch.optim.SGD}
    if config.optimizer not in choices:
        raise ValueError(f"unknown optimizer {config.optimizer!r} ({' or '.join(choices)})")
    return choices[config.optimizer]([p for p in net.parameters() if p.requires_grad], lr=config.learning_rate)


def budget_progress(config: TrainConfig, position: dict, minutes: float, steps_per_epoch: int) -> float:
    """How much of the training budget is spent, in [0, 1]: the furthest along of the epochs, the
    minutes (when ``max_minutes`` is set) and the steps (when ``max_steps`` is set)."""
    done = [(position["epoch"] + position["step"] / max(steps_per_epoch, 1)) / config.epochs]
    if config.max_minutes:
        done.append(minutes / config.max_minutes)
    if config.max_steps:
        done.append(position["total_steps"] / config.max_steps)
    return min(max(done), 1.0)


def scheduled_learning_rate(config: TrainConfig, progress: float) -> float:
    """Constant, then a linear fall to 0 over the final ``decay_fraction`` of the budget, so a
    run that stops on its budget ends with small, averaging steps instead of being cut mid-stride."""
    if not config.decay_fraction:
        return config.learning_rate
    return config.learning_rate * min(1.0, (1.0 - progress) / config.decay_fraction)


def epoch_batches(lengths: list[int], batch_size: int, seed: int, ranks: int) -> list[list[int]]:
    """One epoch's global batches, length-bucketed and shuffled by ``seed``; a batch too small to
    give every rank an example is left out (only ever a bucket's last, when ranks > 1)."""
    batches = bucketed_batches(lengths, batch_size, np.random.default_rng(seed))
    return [b for b in batches if len(b) >= ranks]


def evaluate_dev(net, batcher, dev: PreparedSet, max_answer_len: int, world: World = World(),
                 bfloat16: bool = False) -> dict:
    """Dev EM/F1; each rank predicts its shard of the questions and the answers are gathered.
    ``bfloat16`` (CPU mixed-precision runs) predicts under autocast: about 30% less time per
    epoch-end evaluation, at scores within 0.05 of float32 (the exported model is re-evaluated)."""
    shard = PreparedSet(dev.contexts, dev.context_tokens, world.shard(dev.examples), dev.stats)
    texts = {}
    predictions = predict(net, batcher, shard, max_answer_len=max_answer_len, bfloat16=bfloat16)
    for part in world.gather(best_texts(predictions)):
        texts.update(part)
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
    write_text(path, "".join(line + "\n" for line in kept + [json.dumps(r) for r in history]))


@dataclass
class TrainingResult:
    """What a training run leaves in memory: the best epoch's dev record and the last weights."""

    best: dict  # {} when no epoch was evaluated
    net: ReaderNet


def train(config: TrainConfig, console=None) -> TrainingResult:
    """Train (or resume) a reader as configured, as one process or as one rank under torchrun."""
    world = join(config.device)
    try:
        return _train(config, world, console)
    finally:
        leave()


def _train(config: TrainConfig, world: World, console) -> TrainingResult:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = console if console and world.main else Console(quiet=not world.main)
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    run = Path(config.run_dir)
    last = run / "last.safetensors"
    with world.machine_leader_first():  # one process per machine fills the preparation cache, the others read it
        train_data = _load(config.train, config.limit_train, config.prepare_workers, console)
        dev_data = _load(config.dev, config.limit_dev, config.prepare_workers, console)

    saved = world.from_main(read_checkpoint(last) if world.main and last.exists() else None)
    if saved:
        groups, state = saved
        model_config = ReaderConfig.from_dict(state["config"]["model"])
        position = {"total_steps": 0, **state["position"]}  # checkpoints before step budgets lack the count
    else:
        tuned = most_frequent_words([e.question.words for e in train_data.examples], config.tune_top_words)
        model_config = ReaderConfig.from_dict({**config.model.to_dict(), "tuned_words": tuned})
        position = {"epoch": 0, "step": 0, "total_steps": 0, "minutes": 0.0, "best_f1": -1.0, "history": []}
    full_config = {"training": {k: v for k, v in asdict(config).items() if k != "model"}, "model": model_config.to_dict()}

    net = ReaderNet(model_config, glove_tensor())
    if saved:
        net.load_state_dict(groups["model"])
        torch.set_rng_state(groups["rng"]["torch"])
    net.to(world.device)
    optimizer = make_optimizer(config, net)
    ema = EMA(net, config.ema_decay) if config.ema_decay else None
    if saved:
        if ema:
            ema.shadow = {k: v.to(world.device) for k, v in groups["ema"].items()}
        restore_optimizer(optimizer, groups.get("optimizer", {}), state["optimizer"])
    parameters = sum(p.numel() for p in net.parameters() if p.requires_grad)
    if world.main:
        run.mkdir(parents=True, exist_ok=True)
        if saved:
            _sync_log(run / "log.jsonl", position["history"])
        else:
            with open(run / "log.jsonl", "a") as log:
                log.write(json.dumps({"event": "start", "config": full_config, "parameters": parameters,
                                      "processes": world.size, "train_stats": train_data.stats,
                                      "dev_stats": dev_data.stats}) + "\n")
    if saved:
        console.print(f"resuming {run} at epoch {position['epoch'] + 1}, step {position['step']}")
    console.print(f"model: {parameters:,} trainable parameters; {world.size} process(es) on {world.device}, "
                  f"{torch.get_num_threads()} thread(s) each")

    # DDP averages gradients over ranks; the frozen GloVe buffer never changes, so it is not re-broadcast
    model = net if world.size == 1 else DistributedDataParallel(
        net, device_ids=[world.device] if world.device.type == "cuda" else None, forward_sync_buffers=False)
    on_cuda = world.device.type == "cuda"
    autocast_dtype = torch.float16 if on_cuda else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=config.mixed_precision and on_cuda)
    batcher = Batcher(Vocabulary(model_config.tuned_words), model_config.max_word_chars)
    usable = _training_pairs(train_data, config.max_train_passage_tokens)
    with console.status(f"encoding {len(train_data.context_tokens)} passages and {len(usable)} questions"):
        # every text is encoded once, so a training step only pads arrays
        passages = [batcher.encode(tokens) for tokens in train_data.context_tokens]
        questions = {i: batcher.encode(train_data.examples[i].question) for i in usable}
    lengths = [len(train_data.context_tokens[train_data.examples[i].context_index]) for i in usable]
    started = time.monotonic() - position["minutes"] * 60
    last_save = time.monotonic()
    out_of_time = False  # the minutes or steps budget is spent

    def minutes() -> float:
        return (time.monotonic() - started) / 60

    def save_last() -> None:
        position["minutes"] = minutes()
        if world.main:
            _save_last(last, net, ema, optimizer, position, full_config)

    with InterruptRequest() as interrupt:  # Ctrl-C is honoured at the next step or epoch boundary
        while position["epoch"] < config.epochs and not out_of_time and not interrupt.requested \
                and not (config.max_steps and position["total_steps"] >= config.max_steps):
            epoch = position["epoch"]
            batches = epoch_batches(lengths, config.batch_size, config.seed + epoch, world.size)
            net.train()
            columns = [TextColumn(f"epoch {epoch + 1}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("loss {task.fields[loss]:.3f}  {task.fields[speed]:.0f} ex/s"),
                       TimeElapsedColumn(), TimeRemainingColumn()]
            running, seen, tic = None, 0, time.monotonic()
            with Progress(*columns, console=console, transient=False, disable=not world.main) as progress:
                task = progress.add_task("train", total=len(batches), completed=position["step"], loss=0.0, speed=0.0)
                for step in range(position["step"], len(batches)):
                    chosen = [usable[i] for i in world.split(batches[step])]
                    examples = [train_data.examples[i] for i in chosen]
                    batch = batcher.collate([passages[e.context_index] for e in examples], [questions[i] for i in chosen],
                                            [e.answer_span for e in examples]).to(world.device)
                    with torch.autocast(world.device.type, dtype=autocast_dtype, enabled=config.mixed_precision):
                        # the global batch's mean loss once DDP averages the ranks' gradients
                        loss = span_loss(model(batch), batch, over=len(batches[step]) / world.size)
                    # every rank must agree on stopping before the gradient all-reduce
                    now = minutes()
                    total, stop, time_up, spent = world.sum([
                        loss.item(), float(interrupt.requested),
                        float(bool(config.max_minutes and now >= config.max_minutes)),
                        budget_progress(config, position, now, len(batches))])
                    if not math.isfinite(total):
                        kept = f"the last good checkpoint is kept in {last}" if last.exists() else "no checkpoint had been saved yet"
                        raise FloatingPointError(f"non-finite loss at epoch {epoch + 1} step {step}; {kept}")
                    # ranks' clocks differ a little: they agree on the mean, so their weights stay identical
                    rate = scheduled_learning_rate(config, spent / world.size)
                    for group in optimizer.param_groups:
                        group["lr"] = rate
                    optimizer.zero_grad()
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    if ema:
                        ema.update(net, position["total_steps"])
                    mean_loss = total / world.size
                    running = mean_loss if running is None else 0.98 * running + 0.02 * mean_loss
                    seen += len(batches[step])
                    position["step"], position["total_steps"] = step + 1, position["total_steps"] + 1
                    progress.update(task, advance=1, loss=running, speed=seen / (time.monotonic() - tic))
                    if stop:
                        interrupt.requested = True
                        break
                    if time_up or (config.max_steps and position["total_steps"] >= config.max_steps):
                        out_of_time = True
                        break
                    if time.monotonic() - last_save > config.checkpoint_minutes * 60:
                        save_last()
                        last_save = time.monotonic()
            if interrupt.requested:
                break
            speed = seen / max(time.monotonic() - tic, 1e-9)
            eval_tic = time.monotonic()
            with averaged_weights(net, ema):
                metrics = evaluate_dev(net, batcher, dev_data, config.max_answer_len, world,
                                       bfloat16=config.mixed_precision and not on_cuda)
            record = {"event": "epoch", "epoch": epoch + 1, "steps": position["step"], "complete": not out_of_time,
                      "minutes": round(minutes(), 2), "train_examples_per_s": round(speed, 1), "loss": running,
                      "dev_eval_s": round(time.monotonic() - eval_tic, 1), **metrics}
            console.print(f"epoch {epoch + 1}: dev EM {metrics['exact_match']:.2f} F1 {metrics['f1']:.2f} "
                          f"({record['minutes']:.1f} min, {speed:.0f} ex/s)")
            position["history"].append(record)
            if metrics["f1"] > position["best_f1"]:
                position["best_f1"] = metrics["f1"]
                if world.main:
                    with averaged_weights(net, ema):
                        save_model(run / "best", net, {"model": model_config.to_dict(), "dev": metrics})
            if not out_of_time:
                position["epoch"], position["step"] = epoch + 1, 0
            save_last()
            last_save = time.monotonic()
            if world.main:
                with open(run / "log.jsonl", "a") as log:  # after the checkpoint; a resume repairs a lost line
                    log.write(json.dumps(record) + "\n")
        if interrupt.requested:
            save_last()
            raise KeyboardInterrupt(f"training interrupted; resumable checkpoint saved in {last}")
    best = max(position["history"], key=lambda r: r["f1"]) if position["history"] else {}
    return TrainingResult(best, net)
