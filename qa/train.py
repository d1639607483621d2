"""Training loop: length-bucketed batches, Adamax, clipping, EMA weights, per-epoch dev EM/F1,
best-checkpoint keeping, resumable checkpoints and a time or step budget.

A run folder holds ``log.jsonl`` (config, then one line per epoch), ``last.safetensors`` (the
resumable state in one atomically replaced file: model, EMA, optimizer, RNG, position in the
epoch) and ``best/`` (the EMA weights with the best dev F1, in the shipped-model format).

``train`` sets a run up (``set_up``: fresh, or restored from ``last.safetensors``), then alternates
``run_epoch`` (one ``train_step`` per batch) and ``end_of_epoch`` (dev evaluation, best keeping,
checkpoint, log line) over a ``TrainState``, the position that checkpoints save.
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from qa.answers import best_texts, na_prob
from qa.batching import Batcher, bucketed_batches
from qa.checkpoint import (
    CONFIG_FILE,
    DIGEST_KEY,
    load_weights,
    optimizer_tensors,
    read_checkpoint,
    read_json,
    restore_model_folder,
    restore_optimizer,
    save_model,
    write_checkpoint,
    write_text,
)
from qa.data import load_squad
from qa.distributed import World, join, leave
from qa.errors import UserError
from qa.features import PreparedSet, prepare
from qa.contextual import ContextFeatures, FeatureStore
from qa.inference import Passages, ReadingOptions
from qa.inputs import checked_settings, read_json_object
from qa.interrupts import InterruptRequest
from qa.metric import squad_scores
from qa.reader import model_folder
from qa.model import BFLOAT16_SLOW, ReaderConfig, ReaderNet, cpu_has_bfloat16_kernels, glove_tensor, span_loss
from qa.tokenize import Tokens
from qa.training_data import GroupShares, TrainingSet, swapped_questions
from qa.vocab import Vocabulary, most_frequent_words

LAST_CHECKPOINT = "last.safetensors"  # the resumable state in a run folder
LOG_FILE = "log.jsonl"  # a run folder's log: the start line with the settings, then one line per epoch


def read_log(run_dir: str | Path) -> list[dict]:
    """The records of a run folder's log, in order (a ``UserError`` naming a folder that holds none)."""
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        raise UserError(f"{run_dir}: not a training run folder (no {LOG_FILE})")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


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
    max_train_passage_tokens: int = 400  # longer training passages are trained in windows of this many tokens
    max_answer_len: int = 15
    pair_share: float = 0.0  # questions trained with their paragraph and another of the article (qa.training_data)
    other_share: float = 0.0  # questions trained against another paragraph of the article, target no answer
    removed_share: float = 0.0  # questions trained against their paragraph minus the answer's sentences, no answer
    swapped_share: float = 0.0  # questions asked with a name or number swapped, against their paragraph, no answer
    held_out_articles: int = 0  # the training file's last N articles are not trained on (no-answer threshold fitting)
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
    init_from: str = ""  # start from this model's weights and settings (a shipped name or a folder): fine-tuning
    # with init_from: weight of the squared distance of the weights from the starting ones in the loss (L2-SP,
    # Li et al. 2018), which holds off forgetting what the starting model knew
    anchor_weight: float = 0.0
    model: ReaderConfig = field(default_factory=ReaderConfig)

    @classmethod
    def from_file(cls, path: str, overrides: dict | None = None) -> "TrainConfig":
        """The recipe at ``path`` with ``overrides`` (from the command line) over its training settings."""
        recipe = read_json_object(path)
        values = {**recipe.get("training", {}), **(overrides or {})}
        try:
            if "model" in values:
                raise UserError('the model settings go under the recipe\'s "model" key, not under "training"')
            return cls(**checked_settings(cls, values, "training settings"),
                       model=ReaderConfig.from_dict(recipe.get("model", {})))
        except UserError as error:
            raise UserError(f"{path}: {error}") from None

    def __post_init__(self):
        for name in ("max_minutes", "max_steps", "anchor_weight", "limit_train", "limit_dev", "held_out_articles"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must not be negative, not {getattr(self, name)}")
        for name in ("epochs", "batch_size", "learning_rate"):
            if getattr(self, name) <= 0:
                raise UserError(f"{name} must be positive, not {getattr(self, name)}")
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise UserError(f"decay_fraction must be between 0 and 1, not {self.decay_fraction}")
        if self.shares.negatives and not self.model.no_answer:
            raise UserError("other_share, removed_share and swapped_share train the null option: "
                            "set the model's no_answer")

    @property
    def shares(self) -> GroupShares:
        """The share of questions dealt each kind of training group per epoch."""
        return GroupShares(self.pair_share, self.other_share, self.removed_share, self.swapped_share)


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


def _load(path: str, limit: int, workers: int, console) -> PreparedSet:
    """The prepared file (its first ``limit`` questions when set), with its statistics printed."""
    records = load_squad(path, limit=limit)
    with console.status(f"preparing {path} ({len(records)} questions)"):
        data = prepare(records, workers=workers)
    console.print(f"{path}: {data.stats}")
    return data


def autocast_on(config: TrainConfig, world: World) -> bool:
    """Whether training steps and epoch-end evaluations run under autocast: the recipe's
    ``mixed_precision``, except on a CPU without bfloat16 kernels, where bfloat16 is emulated and
    several times slower than float32 (``qa.model.BFLOAT16_SLOW``), so the run stays in float32."""
    return config.mixed_precision and (world.device.type == "cuda" or cpu_has_bfloat16_kernels())


def feature_stores(config: ReaderConfig, texts: list[tuple[str, list[str], list[Tokens]]], console) -> list:
    """The frozen contextual features (``qa.contextual.FeatureStore``) of each (name, texts, tokens),
    from the on-disk cache, extracted first where missing, with a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from qa.contextual import ContextualEncoder, EncoderSettings, FeatureStore
    from qa.features import cache_root

    encoder = ContextualEncoder(EncoderSettings.of(config, bfloat16=cpu_has_bfloat16_kernels()))  # see autocast_on
    stores = []
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn()]
    with Progress(*columns, console=console) as progress:
        for name, strings, tokens in texts:
            task = progress.add_task(f"contextual features of {len(strings):,} {name} (chunks)", total=None)
            stores.append(FeatureStore.build(encoder, strings, tokens, cache_root() / "contextual",
                                             lambda done, total: progress.update(task, completed=done, total=total)))
    return stores


def contextual_features(config: ReaderConfig, data: PreparedSet, console) -> ContextFeatures:
    """The frozen contextual features of a prepared file's passages and questions (``feature_stores``)."""
    questions = [e.question_text for e in data.examples]
    return ContextFeatures(*feature_stores(config, [("passages", data.contexts, data.context_tokens),
                                                    ("questions", questions, [e.question for e in data.examples])],
                                           console))


def make_optimizer(config: TrainConfig, net: torch.nn.Module) -> torch.optim.Optimizer:
    """Adamax (the recipe's) or plain SGD over the trainable parameters."""
    choices = {"adamax": torch.optim.Adamax, "sgd": torch.optim.SGD}
    if config.optimizer not in choices:
        raise UserError(f"unknown optimizer {config.optimizer!r} ({' or '.join(choices)})")
    return choices[config.optimizer]([p for p in net.parameters() if p.requires_grad], lr=config.learning_rate)


@dataclass
class Budget:
    """What a run may spend (epochs, minutes, optimizer steps) and has spent, a resumed run's earlier
    minutes and steps included: the one place that says how far along the schedule is and when to stop,
    from numbers the ranks agree on at every step (``agree``), so they share a learning rate and stop together."""

    epochs: int
    max_minutes: float = 0.0  # 0 = no limit
    max_steps: int = 0  # 0 = no limit
    steps: int = 0  # optimizer steps taken in all
    started: float = field(default_factory=time.monotonic)  # time.monotonic() at which no minute was spent
    progress: float = 0.0  # the share spent, the ranks' mean at the last agreement (the schedule's clock)
    time_up: bool = False  # some rank's clock had passed max_minutes at the last agreement

    @classmethod
    def of(cls, config: TrainConfig, position: dict | None = None) -> "Budget":
        """``config``'s budget, its clock starting now, less what a checkpoint's ``position`` spent (none
        for a fresh run; checkpoints from before step budgets lack ``total_steps``)."""
        position = position or {}
        return cls(config.epochs, config.max_minutes, config.max_steps, position.get("total_steps", 0),
                   time.monotonic() - position.get("minutes", 0.0) * 60)

    def minutes(self) -> float:
        """Training time spent, a resumed run's earlier time included."""
        return (time.monotonic() - self.started) / 60

    def share(self, epochs_done: float, minutes: float) -> float:
        """How much is spent, in [0, 1]: the furthest along of the epochs, the minutes (when
        ``max_minutes`` is set) and the steps (when ``max_steps`` is set)."""
        done = [epochs_done / self.epochs]
        if self.max_minutes:
            done.append(minutes / self.max_minutes)
        if self.max_steps:
            done.append(self.steps / self.max_steps)
        return min(max(done), 1.0)

    def agree(self, world: World, epochs_done: float, **also: float) -> dict[str, float]:
        """Agree with the other ranks before a step, in one all-reduce, on the progress (their mean: their
        clocks differ a little, their learning rates must not) and on whether time is up (on any rank's
        clock); ``also`` names more values to sum in the same reduction, and comes back summed."""
        now = self.minutes()
        time_up = bool(self.max_minutes and now >= self.max_minutes)
        agreed = world.sum_named({**also, "progress": self.share(epochs_done, now), "time_up": float(time_up)})
        self.progress, self.time_up = agreed.pop("progress") / world.size, agreed.pop("time_up") > 0
        return agreed

    @property
    def spent(self) -> bool:
        """Whether to stop now: time was up at the last agreement, or the steps are used up."""
        return self.time_up or bool(self.max_steps and self.steps >= self.max_steps)

    def allows(self, epoch: int) -> bool:
        """Whether to train (on in) epoch ``epoch``, counted from 0: it is one of the budget's epochs, and
        neither the time nor the steps are spent."""
        return epoch < self.epochs and not self.spent

    def position(self) -> dict:
        """What a checkpoint's ``position`` keeps of the budget (``of`` reads it back)."""
        return {"total_steps": self.steps, "minutes": self.minutes()}


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
                 bfloat16: bool = False, context: ContextFeatures | None = None) -> dict:
    """Dev EM/F1 along the one inference path (``Reader.read``, answers forced), its batches shared among
    the ranks; long passages are read as ``qa evaluate`` reads them. ``bfloat16`` (CPU mixed-precision runs)
    predicts under autocast: about 30% less time per epoch-end evaluation, at scores within 0.05 of float32
    (the exported model is re-evaluated). On a dev file with unanswerable questions the official v2.0
    figures too, with ``best_f1`` (abstaining above the best no-answer threshold): what checkpoints are
    chosen by there (``selection_f1``)."""
    from qa.reader import Reader

    options = ReadingOptions(max_answer_len=max_answer_len, bfloat16=bfloat16)
    predictions = Reader(net, batcher, options=options).read(Passages.of(dev), world=world, features=context, force=True)
    references = [{"id": e.id, "answers": e.answers} for e in dev.examples]
    if all(e.answers["text"] for e in dev.examples):
        scores = squad_scores(best_texts(predictions), references)
        return {**scores, "selection_f1": scores["f1"]}
    scores = squad_scores(best_texts(predictions), references, no_answer_probability=na_prob(predictions))
    return {**scores, "selection_f1": scores["best_f1"]}


def _save_last(path: Path, trainer: "Trainer", position: dict, config: dict) -> None:
    """The resumable state (weights, EMA, optimizer, the CPU's and the GPU's RNG, the gradient scaler,
    position) as one atomic file."""
    opt_tensors, opt_meta = optimizer_tensors(trainer.optimizer)
    device = trainer.world.device
    rng = {"torch": torch.get_rng_state(), **({"cuda": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {})}
    groups = {"model": trainer.net.state_dict(), "ema": trainer.ema.shadow if trainer.ema else {},
              "optimizer": opt_tensors, "rng": rng}
    write_checkpoint(path, groups, {"position": position, "optimizer": opt_meta, "config": config,
                                    "scaler": trainer.scaler.state_dict()})


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
class TrainState:
    """Where a run stands in its data and results; a checkpoint's ``position`` holds it (with what the
    ``Budget`` spent), from which a resume continues."""

    epoch: int = 0  # epochs completed
    step: int = 0  # steps taken in the current epoch
    best_f1: float = -1.0
    history: list[dict] = field(default_factory=list)  # the log records of the evaluated epochs

    @classmethod
    def from_position(cls, position: dict) -> "TrainState":
        """The state a checkpoint's ``position`` saved (its budget's part left to ``Budget.of``)."""
        return cls(**{f.name: position[f.name] for f in fields(cls)})


@dataclass
class Trainer:
    """A net and what trains it: the model the steps call (on several ranks the net wrapped in
    DistributedDataParallel), the optimizer, gradient scaler, EMA and the budget (with the training clock)."""

    config: TrainConfig
    world: World
    net: ReaderNet
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ema: EMA | None
    budget: Budget
    anchor: dict[str, torch.Tensor] | None = None  # the starting weights the loss keeps the net near (anchor_weight)

    @classmethod
    def build(cls, config: TrainConfig, net: ReaderNet, world: World = World(),
              budget: Budget | None = None) -> "Trainer":
        """A fresh optimizer, scaler and EMA for ``net`` (on ``world.device``), spending ``budget`` (by
        default ``config``'s, from nothing spent)."""
        # DDP averages gradients over ranks; the frozen GloVe buffer never changes, so it is not re-broadcast
        model = net if world.size == 1 else DistributedDataParallel(
            net, device_ids=[world.device] if world.device.type == "cuda" else None, forward_sync_buffers=False)
        scaler = torch.amp.GradScaler("cuda", enabled=config.mixed_precision and world.device.type == "cuda")
        ema = EMA(net, config.ema_decay) if config.ema_decay else None
        return cls(config, world, net, model, make_optimizer(config, net), scaler, ema, budget or Budget.of(config))

    def restore(self, groups: dict, meta: dict) -> None:
        """Take the optimizer state, EMA weights, gradient scaler and RNG states a checkpoint saved; the last
        step of a resume's set-up, so that nothing built after it (the anchor's copy of the starting net)
        draws from its RNG."""
        if self.ema:
            self.ema.shadow = {k: v.to(self.world.device) for k, v in groups["ema"].items()}
        restore_optimizer(self.optimizer, groups.get("optimizer", {}), meta["optimizer"])
        if meta.get("scaler"):  # empty for a scaler that is off (every run on a CPU)
            self.scaler.load_state_dict(meta["scaler"])
        torch.set_rng_state(groups["rng"]["torch"])
        if "cuda" in groups["rng"] and self.world.device.type == "cuda":
            torch.cuda.set_rng_state(groups["rng"]["cuda"], self.world.device)


def anchor_distance(net: torch.nn.Module, anchor: dict[str, torch.Tensor]) -> torch.Tensor:
    """The squared distance of ``net``'s trainable weights from ``anchor`` (name -> tensor)."""
    return sum(((p.float() - anchor[name]) ** 2).sum() for name, p in net.named_parameters() if name in anchor)


def starting_weights(config: TrainConfig, model_config: ReaderConfig, world: World) -> dict[str, torch.Tensor] | None:
    """The trainable weights of the model fine-tuning starts from, when the loss is to keep the net near them."""
    if not (config.init_from and config.anchor_weight):
        return None
    net = _restored_net(model_config, world, None, config.init_from)
    return {name: p.detach().float().clone() for name, p in net.named_parameters() if p.requires_grad}


@dataclass
class StepOutcome:
    """One step's loss (the global batch's mean) and whether Ctrl-C was pressed on some rank, as the ranks agreed."""

    loss: float
    interrupted: bool


def train_step(trainer: Trainer, training: TrainingSet, batch: list[int], state: TrainState, steps_per_epoch: int,
               interrupted: bool = False) -> StepOutcome:
    """One optimizer step on this rank's share of a global batch, advancing ``state`` and the budget; the
    ranks agree on the loss, Ctrl-C and the budget before the gradient all-reduce, so that they stop together."""
    config, world, budget = trainer.config, trainer.world, trainer.budget
    inputs = training.collate(world.split(batch)).to(world.device)
    dtype = torch.float16 if world.device.type == "cuda" else torch.bfloat16
    with torch.autocast(world.device.type, dtype=dtype, enabled=autocast_on(config, world)):
        # the global batch's mean loss once DDP averages the ranks' gradients
        loss = span_loss(trainer.model(inputs), inputs, over=len(batch) / world.size)
    if trainer.anchor is not None:
        loss = loss + config.anchor_weight * anchor_distance(trainer.net, trainer.anchor)
    agreed = budget.agree(world, state.epoch + state.step / max(steps_per_epoch, 1),
                          loss=loss.item(), interrupted=float(interrupted))
    if not math.isfinite(agreed["loss"]):
        raise FloatingPointError(f"non-finite loss at epoch {state.epoch + 1} step {state.step}")
    for group in trainer.optimizer.param_groups:
        group["lr"] = scheduled_learning_rate(config, budget.progress)
    trainer.optimizer.zero_grad()
    trainer.scaler.scale(loss).backward()
    trainer.scaler.unscale_(trainer.optimizer)
    torch.nn.utils.clip_grad_norm_(trainer.net.parameters(), config.grad_clip)
    trainer.scaler.step(trainer.optimizer)
    trainer.scaler.update()
    if trainer.ema:
        trainer.ema.update(trainer.net, budget.steps)
    state.step, budget.steps = state.step + 1, budget.steps + 1
    return StepOutcome(agreed["loss"] / world.size, agreed["interrupted"] > 0)


@dataclass
class Run:
    """One run's parts: its trainer, training and dev data, console, and the folder only rank 0 writes."""

    trainer: Trainer
    training: TrainingSet
    dev: PreparedSet
    dev_context: ContextFeatures | None  # the dev set's contextual features, for a model that reads them
    folder: Path
    settings: dict  # the training and model settings, as the log's start line and the checkpoints hold them
    console: object
    saved_at: float = field(default_factory=time.monotonic)  # when the last checkpoint was written

    @property
    def last(self) -> Path:
        """The resumable checkpoint's file."""
        return self.folder / LAST_CHECKPOINT

    def save_last(self, state: TrainState) -> None:
        """Checkpoint the resumable state, with the minutes and steps the budget has spent so far."""
        if self.trainer.world.main:
            _save_last(self.last, self.trainer, {**asdict(state), **self.trainer.budget.position()}, self.settings)
        self.saved_at = time.monotonic()

    def log(self, record: dict) -> None:
        """Append ``record`` to ``log.jsonl`` (rank 0)."""
        if self.trainer.world.main:
            with open(self.folder / LOG_FILE, "a") as log:
                log.write(json.dumps(record) + "\n")


def _saved_or_fresh(config: TrainConfig, world: World,
                    train_data: PreparedSet) -> tuple[tuple[dict, dict] | None, ReaderConfig, TrainState]:
    """The last checkpoint (None for a new run) and the model settings and state to start from: the
    checkpoint's, or fresh ones tuning the training questions' most frequent words."""
    last = Path(config.run_dir) / LAST_CHECKPOINT
    saved = world.from_main(read_checkpoint(last) if world.main and last.exists() else None)
    if saved:
        _, meta = saved
        return saved, ReaderConfig.from_dict(meta["config"]["model"]), TrainState.from_position(meta["position"])
    if config.init_from:  # the starting model's settings, its tuned words included (its weights follow)
        return None, ReaderConfig.from_dict(read_json(model_folder(config.init_from) / CONFIG_FILE)["model"]), TrainState()
    tuned = most_frequent_words([e.question.words for e in train_data.examples], config.tune_top_words)
    return None, ReaderConfig.from_dict({**config.model.to_dict(), "tuned_words": tuned}), TrainState()


def held_out_titles(articles: list[str], count: int) -> set[str]:
    """The titles of the last ``count`` articles (in file order) of a file whose passages belong to ``articles``."""
    titles = list(dict.fromkeys(articles))
    return set(titles[len(titles) - count:]) if count else set()


def _restored_net(model_config: ReaderConfig, world: World, saved: tuple[dict, dict] | None,
                  init_from: str = "") -> ReaderNet:
    """A new net on the world's device, with a checkpoint's weights when there is one, else the weights of
    the model ``init_from`` names (if any)."""
    net = ReaderNet(model_config, glove_tensor())
    if saved:
        net.load_state_dict(saved[0]["model"])
    elif init_from:
        folder = model_folder(init_from)
        load_weights(folder, net, read_json(folder / CONFIG_FILE).get(DIGEST_KEY))
    return net.to(world.device)


def _open_folder(config: TrainConfig, world: World, state: TrainState, resumed: bool, console) -> Path:
    """The run folder, made by rank 0, whose log a resume makes match the checkpoint's history first (and
    whose ``best/`` it puts back if a crash came in the middle of replacing it)."""
    folder = Path(config.run_dir)
    if world.main:
        folder.mkdir(parents=True, exist_ok=True)
        restore_model_folder(folder / "best")
        if resumed:
            _sync_log(folder / LOG_FILE, state.history)
    if resumed:
        console.print(f"resuming {folder} at epoch {state.epoch + 1}, step {state.step}")
    return folder


def _announce(config: TrainConfig, world: World, parameters: int, console) -> None:
    """Print the model's size and where it trains, and that the recipe's mixed precision is off where
    bfloat16 would be emulated (slow)."""
    console.print(f"model: {parameters:,} trainable parameters; {world.size} process(es) on {world.device}, "
                  f"{torch.get_num_threads()} thread(s) each")
    if config.mixed_precision and not autocast_on(config, world):
        console.print(f"[yellow]note:[/] {BFLOAT16_SLOW}; the recipe's mixed precision is off, training runs in float32")


def _swaps(config: TrainConfig, data: PreparedSet, console) -> dict[int, tuple[str, Tokens]] | None:
    """The training questions' swapped forms (``swapped_questions``) when the recipe deals swapped groups."""
    if not config.shares.swapped:
        return None
    with console.status("swapping names and numbers of the questions"):
        return swapped_questions(data, [e.question_text for e in data.examples], data.titles, config.seed)


def _contexts(model_config: ReaderConfig, world: World, train_data: PreparedSet, dev_data: PreparedSet,
              swaps: dict[int, tuple[str, Tokens]] | None,
              console) -> tuple[ContextFeatures | None, ContextFeatures | None, FeatureStore | None]:
    """The frozen contextual features of the training set, the dev set and the swapped questions (None
    for a model that reads none, or no swaps); one process per machine extracts, the others read the cache."""
    if not model_config.contextual:
        return None, None, None
    with world.machine_leader_first():
        tic = time.monotonic()
        train_context = contextual_features(model_config, train_data, console)
        dev_context = contextual_features(model_config, dev_data, console)
        swap_context = None
        if swaps is not None:
            [swap_context] = feature_stores(model_config, [("swapped questions", [t for t, _ in swaps.values()],
                                                            [k for _, k in swaps.values()])], console)
        console.print(f"contextual features ready in {(time.monotonic() - tic) / 60:.1f} min "
                      f"({train_context.passages.folder.parent})")
    return train_context, dev_context, swap_context


def _training_set(config: TrainConfig, model_config: ReaderConfig, world: World, train_data: PreparedSet,
                  dev_data: PreparedSet, console) -> tuple[TrainingSet, ContextFeatures | None]:
    """The encoded training set (its held-out articles left out, its swapped questions and contextual
    features made) and the dev set's contextual features (None for a model without them)."""
    batcher = Batcher(Vocabulary(model_config.tuned_words), model_config.max_word_chars)
    swaps = _swaps(config, train_data, console)
    train_context, dev_context, swap_context = _contexts(model_config, world, train_data, dev_data, swaps, console)
    held_out = held_out_titles(train_data.titles, config.held_out_articles)
    training = TrainingSet.encode(train_data, batcher, config.max_train_passage_tokens, config.shares,
                                  train_data.titles, held_out, console, train_context, swaps, swap_context,
                                  no_answer=model_config.no_answer)
    return training, dev_context


def set_up(config: TrainConfig, world: World, train_data: PreparedSet, dev_data: PreparedSet,
           console) -> tuple[Run, TrainState]:
    """The run's parts and state, restored from ``last.safetensors`` when there is one (a resume), else
    fresh; a new run starts its log, a resumed one makes the log match the checkpoint."""
    saved, model_config, state = _saved_or_fresh(config, world, train_data)
    net = _restored_net(model_config, world, saved, config.init_from)
    parameters = sum(p.numel() for p in net.parameters() if p.requires_grad)
    folder = _open_folder(config, world, state, bool(saved), console)
    _announce(config, world, parameters, console)
    training, dev_context = _training_set(config, model_config, world, train_data, dev_data, console)
    # the budget's clock starts after the set-up (contextual features can take minutes to extract)
    trainer = Trainer.build(config, net, world, Budget.of(config, saved[1]["position"] if saved else None))
    trainer.anchor = starting_weights(config, model_config, world)
    if saved:
        trainer.restore(*saved)
    settings = {"training": {k: v for k, v in asdict(config).items() if k != "model"}, "model": model_config.to_dict()}
    run = Run(trainer, training, dev_data, dev_context, folder, settings, console)
    if not saved:
        run.log({"event": "start", "config": settings, "parameters": parameters, "processes": world.size,
                 "train_stats": train_data.stats, "groups": training.stats(), "dev_stats": dev_data.stats})
    return run, state


@dataclass
class EpochOutcome:
    """What ``run_epoch`` measured, for the epoch's log record."""

    loss: float | None  # the smoothed training loss; None when no step was left to take
    examples_per_s: float
    finished: bool  # every batch of the epoch was taken (the budget may have run out on its last)


def run_epoch(run: Run, state: TrainState, interrupt: InterruptRequest) -> EpochOutcome:
    """Train from ``state``'s step to the end of its epoch, checkpointing every ``checkpoint_minutes``;
    stops early on a spent budget or Ctrl-C on any rank (then sets ``interrupt.requested`` on every rank)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    trainer, config, world = run.trainer, run.trainer.config, run.trainer.world
    lengths = run.training.deal(config.seed, state.epoch)
    batches = epoch_batches(lengths, config.batch_size, config.seed + state.epoch, world.size)
    trainer.net.train()
    columns = [TextColumn(f"epoch {state.epoch + 1}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.3f}  {task.fields[speed]:.0f} ex/s"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    running, seen, tic = None, 0, time.monotonic()
    with Progress(*columns, console=run.console, transient=False, disable=not world.main) as progress:
        task = progress.add_task("train", total=len(batches), completed=state.step, loss=0.0, speed=0.0)
        while state.step < len(batches):
            batch = batches[state.step]
            try:
                outcome = train_step(trainer, run.training, batch, state, len(batches), interrupt.requested)
            except FloatingPointError as error:
                kept = (f"the last good checkpoint is kept in {run.last}" if run.last.exists()
                        else "no checkpoint had been saved yet")
                raise FloatingPointError(f"{error}; {kept}") from None
            running = outcome.loss if running is None else 0.98 * running + 0.02 * outcome.loss
            seen += len(batch)
            progress.update(task, advance=1, loss=running, speed=seen / (time.monotonic() - tic))
            if outcome.interrupted:
                interrupt.requested = True
                break
            if trainer.budget.spent:
                break
            if time.monotonic() - run.saved_at > config.checkpoint_minutes * 60:
                run.save_last(state)
    return EpochOutcome(running, seen / max(time.monotonic() - tic, 1e-9), finished=state.step >= len(batches))


def end_of_epoch(run: Run, state: TrainState, epoch: EpochOutcome) -> None:
    """Score the EMA weights on dev and keep them in ``best/`` when their F1 is the best yet, then
    checkpoint and log the epoch (the log after the checkpoint: a resume repairs a lost line). An epoch
    the budget cut short stays the current one, so that a resume with a larger budget finishes it; one
    whose last batch the budget took is complete, so that a resume does not read it again."""
    trainer, config, world = run.trainer, run.trainer.config, run.trainer.world
    tic = time.monotonic()
    with averaged_weights(trainer.net, trainer.ema):
        metrics = evaluate_dev(trainer.net, run.training.batcher, run.dev, config.max_answer_len, world,
                               bfloat16=autocast_on(config, world) and world.device.type != "cuda", context=run.dev_context)
    record = {"event": "epoch", "epoch": state.epoch + 1, "steps": state.step, "complete": epoch.finished,
              "minutes": round(trainer.budget.minutes(), 2), "train_examples_per_s": round(epoch.examples_per_s, 1),
              "loss": epoch.loss, "dev_eval_s": round(time.monotonic() - tic, 1), **metrics}
    chosen_by = f", v2.0 best F1 {metrics['selection_f1']:.2f}" if "best_f1" in metrics else ""
    run.console.print(f"epoch {state.epoch + 1}: dev EM {metrics['exact_match']:.2f} F1 {metrics['f1']:.2f} answers "
                      f"forced{chosen_by} ({record['minutes']:.1f} min, {epoch.examples_per_s:.0f} ex/s)")
    state.history.append(record)
    if metrics["selection_f1"] > state.best_f1:  # forced F1, or the v2.0 best F1 on a file with unanswerable questions
        state.best_f1 = metrics["selection_f1"]
        if world.main:
            with averaged_weights(trainer.net, trainer.ema):
                save_model(run.folder / "best", trainer.net, {"model": run.settings["model"], "dev": metrics})
    if epoch.finished:
        state.epoch, state.step = state.epoch + 1, 0
    run.save_last(state)
    run.log(record)


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
    """Load the data and set up (or resume) the run, then alternate ``run_epoch`` and ``end_of_epoch``
    until the epochs or a budget run out; Ctrl-C saves a resumable checkpoint first."""
    from rich.console import Console

    console = console if console and world.main else Console(quiet=not world.main)
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    with world.machine_leader_first():  # one process per machine fills the preparation cache, the others read it
        train_data = _load(config.train, config.limit_train, config.prepare_workers, console)
        dev_data = _load(config.dev, config.limit_dev, config.prepare_workers, console)
    run, state = set_up(config, world, train_data, dev_data, console)
    with InterruptRequest() as interrupt:  # Ctrl-C is honoured at the next step or epoch boundary
        while run.trainer.budget.allows(state.epoch) and not interrupt.requested:
            epoch = run_epoch(run, state, interrupt)
            if interrupt.requested:
                break
            end_of_epoch(run, state, epoch)
        if interrupt.requested:
            run.save_last(state)
            raise KeyboardInterrupt(f"training interrupted; resumable checkpoint saved in {run.last}")
    best = max(state.history, key=lambda r: r.get("selection_f1", r["f1"])) if state.history else {}
    return TrainingResult(best, run.trainer.net)
