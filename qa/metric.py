"""Load the project's SQuAD v1.1 / v2.0 metric module through ``evaluate`` (offline, by path)."""
from __future__ import annotations

import functools
import sys
from pathlib import Path

METRIC_DIR = Path(__file__).parent / "squad"


@functools.lru_cache(maxsize=1)
def squad_metric():
    """The ``evaluate`` module in ``qa/squad`` (the hub's ``squad`` and ``squad_v2`` are not needed).

    ``import evaluate`` also imports its ``evaluator`` package, unused here, which imports
    ``transformers.pipelines`` when transformers is installed: about 3 s of a 5 s import on this
    project's 2-core machine. That one import is blocked meanwhile (unless already done), so the
    evaluator takes the path it has for a machine without transformers."""
    blocked = "transformers.pipelines" not in sys.modules
    if blocked:
        sys.modules["transformers.pipelines"] = None  # an import of it now raises ImportError
    try:
        import evaluate
    finally:
        if blocked:
            del sys.modules["transformers.pipelines"]
    return evaluate.load(str(METRIC_DIR))


def squad_scores(predictions: dict[str, str], references: list[dict], per_question: bool = False,
                 no_answer_probability: dict[str, float] | None = None) -> dict:
    """EM and F1 (percent) of ``{id: answer text}`` against ``[{"id", "answers"}]``; with
    ``per_question`` also each question's scores (0/1 and 0..1) under ``"per_question"``; with
    ``no_answer_probability`` ({id: p}) also the official SQuAD 2.0 figures."""
    return squad_metric().compute(
        predictions=[{"id": r["id"], "prediction_text": predictions.get(r["id"], "")} for r in references],
        references=[{"id": r["id"], "answers": r["answers"]} for r in references],
        per_question=per_question, no_answer_probability=no_answer_probability,
    )
