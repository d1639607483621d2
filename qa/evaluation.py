"""``qa evaluate``: run a reader over a SQuAD-format dataset and score it with the official metric."""
from __future__ import annotations

import time
from pathlib import Path

from qa.checkpoint import write_json


def run_evaluation(data: str, split: str = "validation", model: str | None = None, output: str | None = None,
                   batch_size: int = 64, limit: int = 0, console=None) -> dict:
    """Predict every question of ``data``, print EM/F1, and write predictions and metrics to ``output``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from qa.data import load_squad
    from qa.features import prepare
    from qa.metric import squad_scores
    from qa.predict import predict
    from qa.reader import Reader

    console = console or Console()
    records = load_squad(data, split=split)
    if limit:
        records = records.select(range(min(limit, len(records))))
    with console.status(f"tokenizing {len(records)} questions"):
        prepared = prepare(records)
    reader = Reader.load(model)
    tic = time.monotonic()
    columns = [TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[speed]:.0f} questions/s"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("evaluate", total=len(prepared.examples), speed=0.0)

        def advance(count: int) -> None:
            progress.update(task, advance=count,
                            speed=progress.tasks[0].completed / max(time.monotonic() - tic, 1e-9))

        predictions = predict(reader.net, reader.batcher, prepared, batch_size=batch_size, progress=advance)
    seconds = time.monotonic() - tic
    texts = {p.id: (p.texts[0] if p.texts else "") for p in predictions}
    metrics = squad_scores(texts, [{"id": e.id, "answers": e.answers} for e in prepared.examples])
    metrics.update({"questions": len(predictions), "seconds": round(seconds, 2),
                    "questions_per_s": round(len(predictions) / max(seconds, 1e-9), 1),
                    "model": str(reader.folder), "data": data})
    table = Table(title=f"SQuAD v1.1 metric on {data}")
    for column in ("questions", "exact_match", "f1", "questions/s"):
        table.add_column(column, justify="right")
    table.add_row(str(metrics["questions"]), f"{metrics['exact_match']:.2f}", f"{metrics['f1']:.2f}",
                  f"{metrics['questions_per_s']:.0f}")
    console.print(table)
    if output:
        folder = Path(output)
        write_json(folder / "predictions.json", texts)
        write_json(folder / "metrics.json", metrics)
        console.print(f"wrote {folder / 'predictions.json'} and {folder / 'metrics.json'}")
    return metrics
