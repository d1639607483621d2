"""``qa evaluate``: run a reader (or read a predictions file) over a SQuAD-format dataset, score it
with the official metric, and break the scores down by question type, answer and passage length.

A file with unanswerable questions (SQuAD 2.0) is scored with the official v2.0 figures as well;
with a model, ``na_prob.json`` holds each question's no-answer probability. A model with the
no-answer option abstains on such a file (``""`` in ``predictions.json``) where its probability
reaches the model's threshold; a model without it always answers, and its no-answer probability is
1 - its top answer's score. SQuAD v1.1 files, where every question has an answer, are read with
answers forced; for a model with the option ``na_prob.json`` is written for them too, and
``metrics["abstention"]`` says on every file how many answerable questions the threshold would refuse.

The breakdowns sum per-question scores from the same metric call, so each breakdown's buckets add
up to the totals. Calibration: expected calibration error (ECE) of the top answer's score
against exact match, over ten equal-width score bins, for the questions answered.
"""
from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

from qa.answers import best_texts, na_prob
from qa.calibration import expected_calibration_error
from qa.checkpoint import write_json
from qa.errors import UserError
from qa.heat import SentenceHits
from qa.inputs import check_output_folder, read_json_object
from qa.interrupts import InterruptRequest

QUESTION_TYPES = ("how many/much", "what", "who", "when", "where", "why", "how", "which", "other")
ANSWER_LENGTHS = ((0, 0, "no answer"), (1, 1, "1 word"), (2, 2, "2 words"), (3, 3, "3 words"), (4, 5, "4-5 words"), (6, 10**9, "6+ words"))
PASSAGE_LENGTHS = ((0, 99, "<100 tokens"), (100, 199, "100-199"), (200, 299, "200-299"), (300, 10**9, "300+"))


def question_type(question: str) -> str:
    """The question's wh-word ("how many/much" before "how"; "whom"/"whose" count as "who")."""
    words = re.findall(r"[a-z]+", question.lower())
    for first, second in zip(words, words[1:] + [""]):
        if first == "how" and second in ("many", "much"):
            return "how many/much"
    for word in words:
        if word in ("whom", "whose"):
            return "who"
        if word in QUESTION_TYPES:
            return word
    return "other"


def _range_label(value: int, ranges) -> str:
    return next(label for low, high, label in ranges if low <= value <= high)


def breakdowns(per_question: list[dict], questions: list[str], answer_words: list[int], passage_tokens: list[int]) -> dict:
    """{breakdown: {bucket: {"count", "exact_match", "f1"}}} in percent, buckets in a fixed order."""
    keys = {
        "question_type": ([question_type(q) for q in questions], QUESTION_TYPES),
        "answer_length": ([_range_label(n, ANSWER_LENGTHS) for n in answer_words], [r[2] for r in ANSWER_LENGTHS]),
        "passage_length": ([_range_label(n, PASSAGE_LENGTHS) for n in passage_tokens], [r[2] for r in PASSAGE_LENGTHS]),
    }
    result = {}
    for name, (labels, order) in keys.items():
        sums = {label: [0, 0.0, 0.0] for label in order}
        for label, scores in zip(labels, per_question):
            sums[label][0] += 1
            sums[label][1] += scores["exact_match"]
            sums[label][2] += scores["f1"]
        result[name] = {
            label: {"count": n, "exact_match": 100 * em / n if n else 0.0, "f1": 100 * f1 / n if n else 0.0}
            for label, (n, em, f1) in sums.items()
        }
    return result


def _read_predictions(path: str) -> dict[str, str]:
    """An official predictions file, {question id: answer text}, or a ``UserError`` naming it."""
    expected = "the official predictions format, a JSON object {question id: answer text}"
    payload = read_json_object(path, expected)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in payload.items()):
        raise UserError(f"{path}: expected {expected}")
    return payload


def _print_report(console, metrics: dict, data: str) -> None:
    """The evaluation's tables: the v2.0 figures (for a file with unanswerable questions), EM/F1 with speed
    and ECE, what abstaining at the threshold did, and the breakdowns by question and passage kind."""
    from rich.table import Table

    if "HasAns_total" in metrics or "NoAns_total" in metrics:
        _print_v2_report(console, metrics, data)
    table = Table(title=f"exact match and F1 (official SQuAD metric) — {data}")
    for column in ("questions", "EM", "F1", "questions/s", "ECE"):
        table.add_column(column, justify="right")
    speed = metrics.get("questions_per_s")
    ece = metrics.get("calibration", {}).get("ece")
    table.add_row(str(metrics["questions"]), f"{metrics['exact_match']:.2f}", f"{metrics['f1']:.2f}",
                  "-" if speed is None else f"{speed:.0f}", "-" if ece is None else f"{ece:.3f}")
    console.print(table)
    if "abstention" in metrics:
        figures = metrics["abstention"]
        said = (f"at the no-answer threshold p > {figures['threshold']:.3g}: refuses "
                f"{100 * figures['false_abstention_rate']:.1f}% of the {figures['answerable']} answerable questions")
        if metrics.get("open_setting") == "without own":  # asked without their own article, none is answerable
            said = (f"at the no-answer threshold p > {figures['threshold']:.3g}: abstains on "
                    f"{100 * figures['false_abstention_rate']:.1f}% of the {figures['answerable']} questions asked "
                    f"without their own article (the right outcome)")
        if "unanswerable" in figures:
            said += f", abstains on {100 * figures['unanswerable_abstention_rate']:.1f}% of the {figures['unanswerable']} unanswerable"
        console.print(said + ("" if "HasAns_total" in metrics or "NoAns_total" in metrics else " (the figures above force answers)"))
    for name, buckets in metrics["breakdowns"].items():
        detail = Table(title=name.replace("_", " "))
        for column in ("bucket", "questions", "EM", "F1"):
            detail.add_column(column, justify="left" if column == "bucket" else "right")
        for label, values in buckets.items():
            detail.add_row(label, str(values["count"]), f"{values['exact_match']:.1f}", f"{values['f1']:.1f}")
        console.print(detail)


def _unmatched(predicted: dict[str, str], ids: list[str], console) -> dict:
    """How many questions a predictions file has no answer for (scored as an empty answer: wrong on an
    answerable question, a correct abstention on an unanswerable one) and how many of its ids are not
    questions of the file, with a warning for each kind, as the official scripts warn."""
    missing, unknown = len(set(ids) - set(predicted)), len(set(predicted) - set(ids))
    if missing:
        console.print(f"[yellow]warning:[/] the predictions have no answer for {missing:,} of the {len(ids):,} "
                      "questions: each is scored as an empty answer (no answer)")
    if unknown:
        console.print(f"[yellow]warning:[/] {unknown:,} predicted ids are not questions of this file")
    return {"missing_predictions": missing, "unknown_predictions": unknown}


def _print_v2_report(console, metrics: dict, data: str) -> None:
    """The official SQuAD 2.0 figures: all questions, answerable ones, unanswerable ones, best threshold."""
    from rich.table import Table

    table = Table(title=f"SQuAD 2.0 official metric — {data}")
    for column in ("questions", "count", "exact", "f1"):
        table.add_column(column, justify="left" if column == "questions" else "right")
    for label, prefix in (("all", ""), ("with an answer", "HasAns_"), ("with no answer", "NoAns_")):
        if f"{prefix}total" in metrics:
            table.add_row(label, str(metrics[f"{prefix}total"]), f"{metrics[f'{prefix}exact']:.2f}",
                          f"{metrics[f'{prefix}f1']:.2f}")
    if "best_f1" in metrics:
        table.add_row("at the best no-answer thresholds", f"p > {metrics['best_exact_thresh']:.3g} (exact), "
                      f"{metrics['best_f1_thresh']:.3g} (f1)", f"{metrics['best_exact']:.2f}", f"{metrics['best_f1']:.2f}")
    console.print(table)


def _predict(records, model: str | None, batch_size: int, nbest: int, bfloat16: bool | None, attention_view: str | None,
             abstain: bool, max_windows: int | None, first_windows: int | None, abstain_above: float | None,
             world, console, open_setting: str | None = None) -> dict:
    """Run the shipped or given model over ``records`` along the one inference path (``qa.inference``),
    this rank's share of the batches, abstaining where the model says no answer if ``abstain``;
    returns the predictions and timing entries of ``metrics.json``. ``open_setting`` ("collection" or
    "without own") asks every question against all the file's articles as one collection (without the
    question's own article), each answer citing its article."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from qa.features import prepare
    from qa.heat import LEVEL_RATIOS, HeatDisplay
    from qa.reader import Reader

    with console.status(f"tokenizing {len(records)} questions"), world.machine_leader_first():
        prepared = prepare(records)  # one process per machine fills the cache, the others read it
    reader = Reader.load(model, bfloat16=bfloat16, abstain_above=abstain_above)
    reader.net.to(world.device)
    passages, collection = _passages(prepared, open_setting, console)
    # the heat of an answer read from a collection is not over its own paragraph, which the hit rate scores
    view = None if open_setting else {None: reader.attention_view, "none": None}.get(attention_view, attention_view)
    display = HeatDisplay(view, reader.level_ratios.get(view, LEVEL_RATIOS)) if view else None
    options = replace(reader.options, top_k=nbest, batch_size=batch_size,
                      max_windows=reader.options.max_windows if max_windows is None else max_windows,
                      first_windows=reader.options.first_windows if first_windows is None else first_windows)
    tic = time.monotonic()
    columns = [TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TextColumn("question-windows"),
               TextColumn("{task.fields[speed]:.0f}/s"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=True, disable=not world.main) as progress:
        task = progress.add_task("evaluate", total=None, speed=0.0)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total, speed=done / max(time.monotonic() - tic, 1e-9))

        predictions = reader.read(passages, options, world, advance, display=display, force=not abstain)
    seconds = time.monotonic() - tic
    for prediction in predictions if collection else ():
        collection.cite(prediction.answers)
    return {"predictions": predictions, "view": view, "passage_tokens": [len(prepared.context_tokens[e.context_index])
                                                           for e in prepared.examples],
            "metrics": {"model": str(reader.folder), "precision": reader.precision,
                        "processes": world.size, "seconds": round(seconds, 2), "max_windows": options.max_windows,
                        "first_windows": options.first_windows, "open_setting": open_setting,
                        "documents": len(collection) if collection else None,
                        "no_answer_threshold": reader.abstains_above,
                        "questions_per_s": round(len(predictions) / max(seconds, 1e-9), 1)}}


def _passages(prepared, open_setting: str | None, console):
    """What ``prepared``'s questions are read in: their own passages, or (``open_setting``) all the file's
    articles as one collection, without each question's own article for "without own"; and the collection."""
    from qa.collection import Collection, passages_of
    from qa.inference import Passages, Query

    if open_setting is None:
        return Passages.of(prepared), None
    with console.status("joining the articles into one collection"):
        collection, article = Collection.of_articles(prepared.contexts, prepared.titles)
    without = open_setting == "without own"
    queries = [Query(e.id, e.question_text, e.question, 0, article[e.context_index] if without else None)
               for e in prepared.examples]
    return passages_of([collection], queries), collection


@dataclass
class _Answers:
    """What is scored: the top answer text of each question, and with a model its n-best lists, no-answer
    probabilities (files with unanswerable questions, and any file for a model with the option), predictions, passage lengths and attention view."""

    texts: dict[str, str]
    nbest: dict | None = None
    no_answer: dict | None = None
    predictions: list | None = None
    passage_tokens: list[int] | None = None
    view: str | None = None  # the attention view scored, if any
    threshold: float | None = None  # the no-answer threshold of a model with the option

    @classmethod
    def of(cls, run: dict, unanswerable: bool) -> "_Answers":
        """The answers of a model run (``_predict``)."""
        predictions = run["predictions"]
        nbest = {p.id: [{"text": a.text, "start": a.start, "end": a.end, "score": a.score,
                         **({"source": a.source.to_dict()} if a.source else {})} for a in p.answers]
                 for p in predictions}
        with_option = any(p.no_answer is not None for p in predictions)
        no_answer = na_prob(predictions) if unanswerable or with_option else None
        return cls(best_texts(predictions), nbest, no_answer, predictions, run["passage_tokens"], run["view"],
                   run["metrics"]["no_answer_threshold"])


def _load_records(data: str, split: str, lenient: bool, limit: int, console):
    """The records of ``data`` and a count of the bad ones skipped, said on the console."""
    from qa.data import load_squad

    skipped: Counter = Counter()
    records = load_squad(data, split=split, lenient=lenient, skipped=skipped, limit=limit)
    if skipped:
        console.print(f"[yellow]skipped {sum(skipped.values())} bad records:[/] "
                      + ", ".join(f"{reason} ({count})" for reason, count in skipped.most_common()))
    return records, skipped


def _scored(records, answers: _Answers, unanswerable: bool) -> dict:
    """The official figures of ``answers`` against the records' gold answers, with breakdowns, the attention
    view's hit rate and the calibration of the top score."""
    from qa.metric import squad_scores

    # the references come straight from the records: no cache can change what is scored
    references = [{"id": i, "answers": a} for i, a in zip(records["id"], records["answers"])]
    metrics: dict = {"squad_version": "2.0" if unanswerable else "1.1"}
    scored = squad_scores(answers.texts, references, per_question=True,
                          no_answer_probability=answers.no_answer if unanswerable else None)
    per_question = scored.pop("per_question")
    metrics.update(scored)
    metrics["breakdowns"] = breakdowns(
        per_question, records["question"], [len((r["answers"]["text"] or [""])[0].split()) for r in references],
        answers.passage_tokens or _passage_lengths(records))
    if answers.threshold is not None:
        metrics["abstention"] = abstention(answers.no_answer, references, answers.threshold)
    if answers.view:
        metrics["attention"] = sentence_hits(answers.predictions, _each_context(records), references, answers.view)
    if answers.nbest is not None:  # over the questions answered: is an answer's score its chance of being right?
        answered = [(r, s) for r, s in zip(references, per_question) if answers.texts[r["id"]]]
        confidences = [answers.nbest[r["id"]][0]["score"] for r, _ in answered]
        if answered:  # no answered question: no calibration to measure (not a perfect one)
            metrics["calibration"] = expected_calibration_error(confidences, [s["exact_match"] for _, s in answered])
    return metrics


def run_evaluation(data: str, split: str = "validation", model: str | None = None, output: str | None = None,
                   batch_size: int = 64, limit: int = 0, predictions_file: str | None = None, nbest: int = 5,
                   lenient: bool = False, bfloat16: bool | None = None, attention_view: str | None = None,
                   max_windows: int | None = None, first_windows: int | None = None, abstain_above: float | None = None,
                   open_setting: str | None = None, console=None) -> dict:
    """Score ``data`` with a model (or with ``predictions_file``), print tables, write files to ``output``.

    With a model, ``metrics["attention"]`` says how often the heaviest passage sentence of ``attention_view``
    (None: the model's own view; "none": no figure) holds a gold answer, beside chance (``qa.heat.SentenceHits``). ``max_windows``
    overrides how many windows of a long passage are read, ``first_windows`` how many of them at once (the
    reader's defaults: ``qa.inference.ReadingOptions``). ``open_setting``: "collection" asks every question
    against all the file's articles as one collection, "without own" against all but its own article, where
    the right outcome is to abstain (``metrics["abstention"]``).

    Under ``torchrun`` the model's batches are shared among the processes; rank 0 gathers the
    answers, scores them and writes the same files one process would."""
    from rich.console import Console

    from qa.data import has_unanswerable
    from qa.distributed import join, leave

    if output:
        check_output_folder(output)
    if predictions_file and (model or open_setting or attention_view or bfloat16 is not None or abstain_above is not None
                             or max_windows is not None or first_windows is not None):
        raise UserError("--predictions scores a file of answers: it takes no model or reading options (--model, "
                        "--collection, --without-own, --abstain-above, --attention, --max-windows, --first-windows, "
                        "--bfloat16, --float32)")
    world = join("auto")
    try:
        console = console if console and world.main else Console(quiet=not world.main)
        records, skipped = _load_records(data, split, lenient, limit, console)
        metrics: dict = {"data": data, "questions": len(records), "skipped_records": dict(skipped)}
        unanswerable = has_unanswerable(records)
        if predictions_file:
            answers = _Answers(_read_predictions(predictions_file))
            metrics.update(predictions=predictions_file, **_unmatched(answers.texts, records["id"], console))
        else:
            run = _predict(records, model, batch_size, nbest, bfloat16, attention_view, unanswerable, max_windows,
                           first_windows, abstain_above, world, console, open_setting)
            answers = _Answers.of(run, unanswerable)
            metrics.update(run["metrics"])
        if not world.main:
            return metrics
        metrics.update(_scored(records, answers, unanswerable))
        _print_report(console, metrics, data)
        if output:
            written = _write_results(Path(output), answers.texts, answers.nbest, answers.no_answer, metrics)
            console.print(f"wrote {', '.join(written)} to {output}")
        return metrics
    finally:
        leave()


def abstention(no_answer: dict[str, float], references: list[dict], threshold: float) -> dict:
    """How often the no-answer probability (question id -> probability) is above ``threshold``: on answerable
    questions (a refusal, wrong) and on unanswerable ones (right), whether or not this file's answers were forced."""
    answerable = [no_answer[r["id"]] > threshold for r in references if r["answers"]["text"]]
    unanswerable = [no_answer[r["id"]] > threshold for r in references if not r["answers"]["text"]]
    figures = {"threshold": threshold, "answerable": len(answerable), "answerable_refused": sum(answerable),
               "false_abstention_rate": sum(answerable) / max(len(answerable), 1)}
    if unanswerable:
        figures.update({"unanswerable": len(unanswerable), "unanswerable_abstained": sum(unanswerable),
                        "unanswerable_abstention_rate": sum(unanswerable) / len(unanswerable)})
    return figures


def _each_context(records):
    """Each record's passage in turn, a few hundred at a time: a whole column of a document-level
    file repeats each whole article once per question (about 0.5 GB for dev's 10,570)."""
    for batch in records.select_columns(["context"]).iter(batch_size=256):
        yield from batch["context"]


def sentence_hits(predictions, contexts: Iterable[str], references: list[dict], view: str) -> dict:
    """The answer-sentence hit rate of ``view`` over the answerable questions with an answer
    (the predictions carry that view's heat)."""
    hits = SentenceHits(view)
    for prediction, context, reference in zip(predictions, contexts, references):
        if prediction.answers and reference["answers"]["answer_start"]:
            hits.add(context, prediction.answers[0].heat, reference["answers"]["answer_start"])
    return hits.result()


def _passage_lengths(records) -> list[int]:
    """Each question's passage length in tokens (each distinct passage tokenized once)."""
    from qa.tokenize import tokenize_many

    contexts = list(dict.fromkeys(_each_context(records)))
    lengths = dict(zip(contexts, (len(t) for t in tokenize_many(contexts))))
    return [lengths[c] for c in _each_context(records)]


def _write_results(folder: Path, texts: dict, nbest_lists: dict | None, no_answer: dict | None,
                   metrics: dict) -> list[str]:
    """Write the result files as one set: each atomically, with Ctrl-C held back until all are written, and
    any of them this run has none of removed; returns their names."""
    files = {"predictions.json": texts, "nbest.json": nbest_lists, "na_prob.json": no_answer, "metrics.json": metrics}
    with InterruptRequest() as interrupt:
        try:
            for name, payload in files.items():
                if payload is not None:
                    write_json(folder / name, payload)
                else:  # an earlier run's file of another set would be read as this run's
                    (folder / name).unlink(missing_ok=True)
        except OSError as error:
            raise UserError(f"{folder}: cannot write the results ({error.strerror or error})") from None
    if interrupt.requested:
        raise KeyboardInterrupt(f"interrupted after the complete results were written to {folder}")
    return [name for name, payload in files.items() if payload is not None]
