"""Adapting a trained reader to a team's own questions: ``qa train --from MODEL --train FILE --output DIR``
and ``fine_tune(...)``.

Training starts from the model's weights and settings (``TrainConfig.init_from``) with the settings of
``FINE_TUNING``, on a SQuAD v1.1 or v2.0 file: unanswerable questions train the no-answer option
(``qa.training_data``), and on a file with them checkpoints are chosen by the official v2.0 best F1.
Without ``--dev``, ``HELD_OUT_SHARE`` of the file's articles (drawn by the seed) are held out, written
beside the run, for choosing the checkpoint and for fitting the temperature and the no-answer threshold.
Checkpoints, the log, the split and the command's inputs go to ``DIR/run`` (so a killed run resumes
where it stopped, and only by the same command); the model folder ``DIR`` gets the best weights,
calibrated on the held-out part (``qa.calibration``: the threshold of the best v2.0 F1 there) and the
longest answer it reads (``longest_answer``), and ``fine-tune.json``, the report of the held-out scores
before and after (and SQuAD v1.1 dev when given). The checkpoint and the threshold are both chosen on
the held-out part, so its "after" v2.0 F1 is the best that part allows, an optimistic figure: compare
``best_f1`` before and after, and measure on a file of your own that took no part. The shipped models
are only read.
"""
from __future__ import annotations

import random
from pathlib import Path

from qa.checkpoint import CONFIG_FILE, DIGEST_KEY, MODEL_FILE, copy_weights, read_json, write_json
from qa.errors import UserError
from qa.inputs import read_json_object

HELD_OUT_SHARE = 0.15  # of the articles, without --dev
ANSWER_SHARE = 0.95  # the longest answer the model records covers this share of the training file's answers
MIN_QUESTIONS = 10
COMMAND_FILE = "command.json"  # in DIR/run: what the fine-tuning there was started with (a resume must match)
FEW_HELD_OUT = 50  # below this many held-out questions the fitted threshold is unreliable (100-question screen)
# for a few hundred to a few thousand questions, screened on SubjQA electronics (1,148 questions, held-out best
# v2.0 F1: 56.96 at 0.001 for 10 epochs, 56.11 at 0.0005 for 6, 55.49 at 0.0002 for 10), and the anchor that keeps
# SQuAD v1.1 dev within 2 F1 of default's (0.5: 81.42 of 82.40, the best held-out F1 among 0.5 and 0.2; 0.1 fell
# to 80.13; pipelines/JOURNAL.md)
# With rehearsal (``rehearse``: as many questions of a SQuAD file as the training part holds, mixed in) the
# weights may move further: anchor 0 gave grocery seed 13 held-out best v2.0 F1 57.57 against 0.5's 53.94 (SQuAD
# v1.1 dev 81.27), but electronics seed 13 fell to 79.94 on SQuAD dev; 0.1 kept it at 81.41 with 59.14 held out
# against 0.5's 58.07 (pipelines/JOURNAL.md, seventh session)
REHEARSAL_ANCHOR = 0.1
REHEARSAL_PREFIX = "rehearsal: "  # the rehearsed articles' titles, apart from the user's
FINE_TUNING = {"epochs": 10, "learning_rate": 0.001, "anchor_weight": 0.5, "batch_size": 32, "ema_decay": 0.99,
               "max_minutes": 8.0, "max_train_passage_tokens": 1000, "checkpoint_minutes": 2.0, "mixed_precision": True}


def split_by_article(data: str, folder: Path, share: float, seed: int) -> tuple[str, str]:
    """``data``'s articles split into a training part and a held-out part (``share`` of the articles, at
    least one, drawn by ``seed``), written into ``folder``; returns their paths."""
    payload = read_json_object(data, "a SQuAD-format file {\"data\": [...]}")
    articles = payload.get("data")
    if not isinstance(articles, list) or len(articles) < 2:
        raise UserError(f"{data}: holding part of the file out needs at least 2 articles; give --dev FILE")
    order = list(range(len(articles)))
    random.Random(seed).shuffle(order)
    held = set(order[: max(1, round(share * len(articles)))])
    paths = folder / "train-part.json", folder / "held-out.json"
    write_json(paths[0], {**payload, "data": [a for k, a in enumerate(articles) if k not in held]})
    write_json(paths[1], {**payload, "data": [a for k, a in enumerate(articles) if k in held]})
    return str(paths[0]), str(paths[1])


def with_rehearsal(part: str, rehearse: str, count: int, folder: Path, seed: int,
                   answerable_only: bool = False) -> tuple[str, int]:
    """``part`` with about ``count`` questions of the SQuAD file ``rehearse`` added (whole paragraphs drawn by
    ``seed``, kept in their articles; titles and ids marked ``REHEARSAL_PREFIX``, so that neither meets one of
    ``part``'s), written into ``folder``; returns its path and how many questions it added. ``answerable_only``:
    count only answerable questions (a model without the no-answer option trains no others). Training on questions like the starting model's
    holds off forgetting (``REHEARSAL_ANCHOR``)."""
    from qa.data import load_squad

    load_squad(rehearse)  # its bad records named in it, not in the mixed file
    articles = read_json_object(rehearse, "a SQuAD-format file {\"data\": [...]}")["data"]
    paragraphs = [(a, p) for a, article in enumerate(articles) for p in range(len(article.get("paragraphs", [])))]
    random.Random(seed).shuffle(paragraphs)
    chosen: dict[int, list[int]] = {}
    total = 0
    for a, p in paragraphs:
        if total >= count:
            break
        chosen.setdefault(a, []).append(p)
        total += sum(1 for qa in articles[a]["paragraphs"][p].get("qas", []) if qa.get("answers") or not answerable_only)
    mixed = read_json_object(part, "a SQuAD-format file {\"data\": [...]}")
    mixed["data"] = mixed["data"] + [
        {"title": REHEARSAL_PREFIX + str(articles[a].get("title") or a),
         "paragraphs": [_rehearsed(articles[a]["paragraphs"][p]) for p in sorted(chosen[a])]} for a in sorted(chosen)]
    path = folder / "train-rehearsed.json"
    write_json(path, mixed)
    return str(path), total


def _rehearsed(paragraph: dict) -> dict:
    """A paragraph of the rehearsal file with its questions' ids marked ``REHEARSAL_PREFIX``."""
    return {**paragraph, "qas": [{**qa, "id": f"{REHEARSAL_PREFIX}{qa['id']}"} for qa in paragraph.get("qas", [])]}


def longest_answer(data: str) -> int:
    """The answer length in tokens that covers ``ANSWER_SHARE`` of ``data``'s gold answers, and at least the
    reading default (15): the longest answer the fine-tuned model reads and records."""
    from qa.data import load_squad
    from qa.inference import ReadingOptions
    from qa.tokenize import tokenize_many

    texts = [text for answers in load_squad(data)["answers"] for text in answers["text"]]
    lengths = sorted(len(tokens) for tokens in tokenize_many(texts))
    covered = lengths[min(int(ANSWER_SHARE * len(lengths)), len(lengths) - 1)] if lengths else 0
    return max(ReadingOptions.max_answer_len, covered)


def checked_output(output: Path, start: Path) -> None:
    """A ``UserError`` for an output folder that is a shipped model, the model fine-tuning starts from, or
    holds files that are not an earlier fine-tuning's (which is resumed)."""
    from qa.reader import refuse_shipped

    refuse_shipped(output, "fine-tuning")
    if output.resolve() == start.resolve():
        raise UserError(f"{output}: is the model fine-tuning starts from; write the fine-tuned model elsewhere")
    if output.is_file():
        raise UserError(f"{output}: is a file, not a folder")
    known = {"run", CONFIG_FILE, MODEL_FILE, "fine-tune.json"}
    if output.is_dir() and any(p.name not in known for p in output.iterdir()):
        raise UserError(f"{output}: holds other files; give a new or empty folder")


def question_counts(data: str) -> tuple[int, int]:
    """How many questions ``data`` holds, and how many of them are answerable."""
    from qa.data import load_squad

    answers = load_squad(data)["answers"]
    return len(answers), sum(1 for a in answers if a["text"])


def checked_parts(train: str, part: str, held: str, split: bool, seed: int) -> tuple[int, int]:
    """``train``'s questions and answerable ones, or a ``UserError`` for a file too small to fine-tune on, or
    a training or held-out part with no answerable question (nothing to learn spans from, or to fit a
    threshold and choose a checkpoint on)."""
    questions, answerable = question_counts(train)
    if questions < MIN_QUESTIONS:
        raise UserError(f"{train}: {questions} questions; fine-tuning needs at least {MIN_QUESTIONS}")
    if not (answerable if part == train else question_counts(part)[1]):
        raise UserError(f"{train}: no answerable question to learn answers from")
    if not question_counts(held)[1]:
        raise UserError(f"{train}: the articles held out by seed {seed} hold no answerable question; give --dev FILE "
                        "or another --seed" if split else f"{held}: no answerable question to choose the checkpoint on")
    return questions, answerable


def checked_resume(run: Path, command: dict) -> None:
    """A ``UserError`` when ``run`` holds a fine-tuning started with something other than ``command`` (what
    ``fine_tune`` records there once its inputs are checked): a resume must be the same command, since
    another file or seed would mix two runs."""
    path = run / COMMAND_FILE
    recorded = read_json(path) if path.exists() else {}
    changed = [key for key, value in command.items() if key in recorded and recorded[key] != value]
    if changed:
        raise UserError(f"{run.parent}: holds a fine-tuning started with another {', '.join(changed)}; run the "
                        "same command to resume it, or give a new --output")


def domain_scores(model: str, data: str) -> dict:
    """The model on ``data``: F1 with answers forced on the answerable questions, and the official v2.0
    figures with the model's abstentions (when the file has unanswerable questions)."""
    from qa.answers import best_texts
    from qa.data import load_squad
    from qa.features import prepare
    from qa.inference import Passages
    from qa.metric import squad_scores
    from qa.reader import Reader

    records = load_squad(data)
    reader = Reader.load(model)
    forced = reader.read(Passages.of(prepare(records)), force=True)
    references = [{"id": i, "answers": a} for i, a in zip(records["id"], records["answers"])]
    answerable = [r for r in references if r["answers"]["text"]]
    scores = {"questions": len(references), "answerable": len(answerable),
              "forced_f1_answerable": round(squad_scores(best_texts(forced), answerable)["f1"], 2)}
    if len(answerable) < len(references) and reader.has_no_answer:
        texts = {p.id: "" if reader.abstains(p) else p.text for p in forced}
        v2 = squad_scores(texts, references, no_answer_probability={p.id: p.no_answer for p in forced})
        scores.update({k: round(v2[k], 2) for k in ("f1", "exact", "HasAns_f1", "NoAns_f1", "best_f1") if k in v2})
    return scores


def _export(best: Path, output: Path, base: dict, record: dict, max_answer_len: int) -> None:
    """The best checkpoint's weights into the model folder ``output``, with the starting model's attention
    settings, the longest answer it reads and what it was fine-tuned from (the calibration follows)."""
    if not (best / MODEL_FILE).exists():
        raise UserError(f"{best}: no checkpoint was evaluated; give the training more time (--max-minutes)")
    settings = read_json(best / CONFIG_FILE)
    copy_weights(best, output)
    kept = {k: base[k] for k in ("attention",) if k in base}
    write_json(output / CONFIG_FILE, {"model": settings["model"], **kept, "reading": {"max_answer_len": max_answer_len},
                                      "fine_tuned": record, DIGEST_KEY: settings[DIGEST_KEY]})


def fine_tune(model: str, train: str, output: str, dev: str | None = None, seed: int = 13,
              max_minutes: float | None = None, max_steps: int | None = None, squad_dev: str | None = None,
              anchor_weight: float | None = None, device: str | None = None, rehearse: str | None = None,
              console=None) -> dict:
    """Fine-tune ``model`` (a shipped name or a folder) on ``train`` into the model folder ``output``, hold
    out part of ``train`` when no ``dev`` is given, calibrate on it, and report; returns the report.
    ``max_minutes``, ``max_steps``: the budget (None: ``FINE_TUNING``'s). ``anchor_weight``: how strongly the
    weights are kept near the starting model's (None: ``FINE_TUNING``'s, or ``REHEARSAL_ANCHOR`` with
    ``rehearse``; 0 learns the domain most, and alone forgets most of what the model knew). ``rehearse``: a
    SQuAD file (SQuAD v1.1 train, say) as many of whose questions as the training part holds are trained
    alongside it (``with_rehearsal``), which holds off forgetting better than the anchor."""
    from rich.console import Console

    from qa.calibration import MAX_REFUSED, calibrate
    from qa.model import ReaderConfig
    from qa.reader import model_folder
    from qa.train import TrainConfig, train as run_training

    console = console or Console()
    folder, target = model_folder(model), Path(output)
    checked_output(target, folder)
    base = read_json(folder / CONFIG_FILE)
    run = target / "run"
    if rehearse is not None and not Path(rehearse).is_file():
        raise UserError(f"{rehearse}: no such file (--rehearse takes a SQuAD-format file)")
    overrides = {"max_minutes": max_minutes, "max_steps": max_steps, "anchor_weight": anchor_weight, "device": device}
    settings = {**FINE_TUNING, **({"anchor_weight": REHEARSAL_ANCHOR} if rehearse else {}),
                **{k: v for k, v in overrides.items() if v is not None}}
    command = {"from": str(folder.resolve()), "train": str(Path(train).resolve()), "seed": seed,
               "dev": dev and str(Path(dev).resolve()), "anchor_weight": settings["anchor_weight"],
               "rehearse": rehearse and str(Path(rehearse).resolve())}
    checked_resume(run, command)
    run.mkdir(parents=True, exist_ok=True)
    part, held = (train, dev) if dev else split_by_article(train, run, HELD_OUT_SHARE, seed)
    counts = checked_parts(train, part, held, split=not dev, seed=seed)
    settings["max_answer_len"] = longest_answer(part)
    no_answer = bool(base["model"].get("no_answer"))  # without it, only answerable questions train
    trained, rehearsed = part, 0
    if rehearse:
        trained, rehearsed = with_rehearsal(part, rehearse, question_counts(part)[0 if no_answer else 1], run, seed,
                                            answerable_only=not no_answer)
    config = TrainConfig(train=trained, dev=held, run_dir=str(run), init_from=str(folder), seed=seed,
                         model=ReaderConfig.from_dict(base["model"]), **settings)
    write_json(run / COMMAND_FILE, command)
    report = {"from": str(folder), "train": train, "held_out": held, "seed": seed, "settings": settings,
              **({"rehearsed": {"file": rehearse, "questions": rehearsed}} if rehearse else {}),
              "before": domain_scores(str(folder), held),
              **({"squad_dev_f1": {"before": domain_scores(str(folder), squad_dev)["forced_f1_answerable"]}}
                 if squad_dev else {})}
    _warn_of_small_or_unanswerable(console, report["before"], base, train, counts)
    best = run_training(config, console).best
    _export(run / "best", target, base, {"from": str(folder), "train": train, "epoch": best.get("epoch")},
            settings["max_answer_len"])
    unanswerable = "f1" in report["before"]  # the held-out part has unanswerable questions: fit for v2.0 F1
    report["calibration"] = calibrate(held, model=str(target), max_refused=None if unanswerable else MAX_REFUSED,
                                      console=Console(quiet=True))
    report["after"] = domain_scores(str(target), held)
    if squad_dev:
        report["squad_dev_f1"]["after"] = domain_scores(str(target), squad_dev)["forced_f1_answerable"]
    write_json(target / "fine-tune.json", report)
    return report


def _warn_of_small_or_unanswerable(console, held_out: dict, base: dict, train: str, counts: tuple[int, int]) -> None:
    """Warn when too few held-out questions choose the checkpoint and fit the threshold, and when the file's
    unanswerable questions (``counts``: its questions and answerable ones) are left out because the starting
    model has no no-answer option."""
    if held_out["questions"] < FEW_HELD_OUT:
        console.print(f"[yellow]warning:[/] only {held_out['questions']} held-out questions choose the checkpoint "
                      f"and fit the no-answer threshold; with fewer than {FEW_HELD_OUT} both are unreliable: write "
                      "more questions, or give --dev FILE")
    questions, answerable = counts
    if answerable < questions and not base["model"].get("no_answer"):
        console.print(f"[yellow]warning:[/] {questions - answerable} unanswerable questions of {train} are left out: "
                      "this model has no no-answer option to train (fine-tune default for one)")
