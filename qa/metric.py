"""Load the project's SQuAD v1.1 metric module through ``evaluate`` (offline, by path)."""
from __future__ import annotations

import functools
from pathlib import Path

METRIC_DIR = Path(__file__).parent / "squad_v1"


@functools.lru_cache(maxsize=1)
def squad_metric():
    """The ``evaluate`` module in ``qa/squad_v1`` (the hub's ``squad`` is not needed)."""
    import evaluate

    return evaluate.load(str(METRIC_DIR))


def squad_scores(predictions: dict[str, str], references: list[dict], per_question: bool = False) -> dict:
    """EM and F1 (percent) of ``{id: answer text}`` against ``[{"id", "answers"}]``; with
    ``per_question`` also each question's scores (0/1 and 0..1) under ``"per_question"``."""
    return squad_metric().compute(
        predictions=[{"id": r["id"], "prediction_text": predictions.get(r["id"], "")} for r in references],
        references=[{"id": r["id"], "answers": r["answers"]} for r in references],
        per_question=per_question,
    )
