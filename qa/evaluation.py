"""``qa evaluate``: run a reader (or read a predictions file) over a SQuAD-format dataset, score it
with the official metric, and break the scores down by question type, answer and passage length.

The breakdowns sum per-question scores from the same metric call, so each breakdown's buckets add
up to the totals. Calibration: expected calibration error (ECE) of the top answer's score
against exact match, over ten equal-width score bins.
"""
from __future__ import annotations

import json
import re
from collections import Counter
import time
from pathlib import Path

from qa.calibration import expected_calibration_error
from qa.checkpoint import write_json
from qa.interrupts import InterruptRequest

QUESTION_TYPES = ("how many/much", "what", "who", "when", "where", "why", "how", "which", "other")
ANSWER_LENGTHS = ((1, 1, "1 word"), (2, 2, "2 words"), (3, 3, "3 words"), (4, 5, "4-5 words"), (6, 10**9, "6+ words"))
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
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a UTF-8 JSON file ({error})") from None
    if not isinstance(payload, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in payload.items()):
        raise ValueError(f"{path}: expected the official predictions format, a JSON object {{question id: answer text}}")
    return payload


def _print_report(console, metrics: dict, data: str) -> None:
    from rich.table import Table

    table = Table(title=f"SQuAD v1.1 official metric — {data}")
    for column in ("questions", "EM", "F1", "questions/s", "ECE"):
        table.add_column(column, justify="right")
    speed = metrics.get("questions_per_s")
    ece = metrics.get("calibration", {}).get("ece")
    table.add_row(str(metrics["questions"]), f"{metrics['exact_match']:.2f}", f"{metrics['f1']:.2f}",
                  "-" if speed is None else f"{speed:.0f}", "-" if ece is None else f"{ece:.3f}")
    console.print(table)
    for name, buckets in metrics["breakdowns"].items():
        detail = Table(title=name.replace("_", " "))
        for column in ("bucket", "questions", "EM", "F1"):
            detail.add_column(column, justify="left" if column == "bucket" else "right")
        for label, values in buckets.items():
            detail.add_row(label, str(values["count"]), f"{values['exact_match']:.1f}", f"{values['f1']:.1f}")
        console.print(detail)


def run_evaluation(data: str, split: str = "validation", model: str | None = None, output: str | None = None,
                   batch_size: int = 64, limit: int = 0, predictions_file: str | None = None, nbest: int = 5,
                   lenient: bool = False, bfloat16: bool = False, console=None) -> dict:
    """Score ``data`` with a model (or with ``predictions_file``), print tables, write files to ``output``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from qa.data import load_squad
    from qa.features import prepare
    from qa.metric import squad_scores

    console = console or Console(stderr=False)
    skipped: Counter = Counter()
    records = load_squad(data, split=split, lenient=lenient, skipped=skipped, limit=limit)
    if skipped:
        console.print(f"[yellow]skipped {sum(skipped.values())} bad records:[/] "
                      + ", ".join(f"{reason} ({count})" for reason, count in skipped.most_common()))
    with console.status(f"tokenizing {len(records)} questions"):
        prepared = prepare(records)
    references = [{"id": e.id, "answers": e.answers} for e in prepared.examples]
    metrics: dict = {"data": data, "questions": len(references), "skipped_records": dict(skipped)}
    nbest_lists = None
    if predictions_file:
        texts = _read_predictions(predictions_file)
        metrics["predictions"] = predictions_file
    else:
        from qa.predict import best_texts, predict
        from qa.reader import Reader

        reader = Reader.load(model, bfloat16=bfloat16)
        tic = time.monotonic()
        columns = [TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[speed]:.0f} questions/s"), TimeRemainingColumn()]
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("evaluate", total=len(prepared.examples), speed=0.0)

            def advance(count: int) -> None:
                done = progress.tasks[0].completed + count
                progress.update(task, completed=done, speed=done / max(time.monotonic() - tic, 1e-9))

            predictions = predict(reader.net, reader.batcher, prepared, batch_size=batch_size, top_k=nbest,
                                  progress=advance, temperature=reader.temperature, bfloat16=bfloat16)
        seconds = time.monotonic() - tic
        texts = best_texts(predictions)
        nbest_lists = {p.id: [{"text": t, "start": s, "end": e, "score": sc}
                              for t, s, e, sc in zip(p.texts, p.starts, p.ends, p.scores)] for p in predictions}
        metrics.update({"model": str(reader.folder), "precision": "bfloat16" if bfloat16 else "float32",
                        "seconds": round(seconds, 2),
                        "questions_per_s": round(len(predictions) / max(seconds, 1e-9), 1)})
    scored = squad_scores(texts, references, per_question=True)
    per_question = scored.pop("per_question")
    metrics.update(scored)
    metrics["breakdowns"] = breakdowns(
        per_question,
        [" ".join(e.question.words) for e in prepared.examples],
        [len((e.answers["text"] or [""])[0].split()) for e in prepared.examples],
        [len(prepared.context_tokens[e.context_index]) for e in prepared.examples],
    )
    if nbest_lists is not None:
        confidences = [nbest_lists[e.id][0]["score"] if nbest_lists[e.id] else 0.0 for e in prepared.examples]
        metrics["calibration"] = expected_calibration_error(confidences, [s["exact_match"] for s in per_question])
    _print_report(console, metrics, data)
    if output:
        _write_results(Path(output), texts, nbest_lists, metrics)
        console.print(f"wrote {output}/predictions.json, metrics.json" + (", nbest.json" if nbest_lists else ""))
    return metrics


def _write_results(folder: Path, texts: dict, nbest_lists: dict | None, metrics: dict) -> None:
    """Write the result files as one set: each atomically, with Ctrl-C held back until all are written."""
    with InterruptRequest() as interrupt:
        write_json(folder / "predictions.json", texts)
        if nbest_lists is not None:
            write_json(folder / "nbest.json", nbest_lists)
        write_json(folder / "metrics.json", metrics)
    if interrupt.requested:
        raise KeyboardInterrupt(f"interrupted after the complete results were written to {folder}")
