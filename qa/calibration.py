"""Is the top answer's score a probability of being right? Expected calibration error, and a
temperature on the span logits fitted so that it is.

The score is p(start) x p(end) with both softmaxes taken over the passage. Dividing the logits
by a temperature T changes the scores but never which span wins, so T is fitted after training,
on questions the model was not trained on, by minimising the log-loss of "the top answer is an
exact match" under the score (``fit_temperature``). With the no-answer option the null logit is in
both softmaxes, and on a file with unanswerable questions the threshold on the no-answer
probability above which the reader abstains is fitted too (``fit_no_answer_threshold``).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.optimize import minimize_scalar

from qa.answers import SpanLogits, best_texts

TEMPERATURE_RANGE = (0.2, 5.0)


def expected_calibration_error(confidences: list[float], correct: list[float], bins: int = 10) -> dict:
    """ECE = sum over score bins of |accuracy - mean score| weighted by the bin's share of questions."""
    table = []
    total = max(len(confidences), 1)
    ece = 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        members = [i for i, c in enumerate(confidences) if low <= c < high or (b == bins - 1 and c == 1.0)]
        if not members:
            continue
        confidence = sum(confidences[i] for i in members) / len(members)
        accuracy = sum(correct[i] for i in members) / len(members)
        ece += len(members) / total * abs(accuracy - confidence)
        table.append({"bin": f"{low:.1f}-{high:.1f}", "count": len(members), "mean_score": confidence, "exact_match": accuracy})
    return {"ece": ece, "bins": table}


def top_scores(logits: list[SpanLogits], temperature: float) -> np.ndarray:
    """The top answer's score of each question at ``temperature``."""
    return np.exp([x.best / temperature - sum(x.log_normalizers(temperature)) for x in logits])


def no_answer_probabilities(logits: list[SpanLogits], temperature: float) -> np.ndarray:
    """Each question's no-answer probability at ``temperature`` (logits of a model with the option)."""
    return np.array([x.no_answer(temperature) for x in logits])


def log_loss(scores: np.ndarray, correct: np.ndarray) -> float:
    """Mean negative log-likelihood of the outcomes under the scores (clipped away from 0 and 1)."""
    p = np.clip(scores, 1e-7, 1 - 1e-7)
    return float(-np.mean(correct * np.log(p) + (1 - correct) * np.log(1 - p)))


def fit_temperature(logits: list[SpanLogits], correct: list[float]) -> float:
    """The temperature (within ``TEMPERATURE_RANGE``) that minimises the log-loss of exact match."""
    outcomes = np.asarray(correct, dtype=np.float64)
    low, high = np.log(TEMPERATURE_RANGE)
    found = minimize_scalar(lambda t: log_loss(top_scores(logits, float(np.exp(t))), outcomes),
                            bounds=(low, high), method="bounded", options={"xatol": 1e-3})
    return float(np.exp(found.x))


def calibrate(data: str, model: str | None = None, split: str = "validation", limit: int = 0,
              batch_size: int = 64, console=None) -> dict:
    """Fit the temperature of a model folder on ``data`` and store it in the folder's config.json.

    Returns the fitted temperature with the log-loss and ECE of the top score before and after."""
    from rich.console import Console

    from qa.checkpoint import CONFIG_FILE, read_json, write_json
    from qa.data import load_squad
    from qa.features import prepare
    from qa.inference import Passages
    from qa.metric import squad_scores
    from qa.reader import Reader

    console = console or Console()
    records = load_squad(data, split, limit=limit)
    reader = Reader.load(model)
    # logits at temperature 1: the fit starts from the raw scores, whatever the folder's current temperature
    options = replace(reader.options, batch_size=batch_size, temperature=1.0, with_logits=True)
    with console.status(f"reading {len(records)} questions"):
        predictions = reader.read(Passages.of(prepare(records)), options, force=True)
    references = {i: a for i, a in zip(records["id"], records["answers"])}
    # is the top answer right? asked of answerable questions only, the null option in place
    answered = [p for p in predictions if p.answers and references[p.id]["text"]]
    correct = [q["exact_match"] for q in squad_scores(best_texts(answered), [{"id": p.id, "answers": references[p.id]}
                                                                             for p in answered],
                                                      per_question=True)["per_question"]]
    logits = [p.answers[0].logits for p in answered]
    temperature = fit_temperature(logits, correct)
    result = {"temperature": round(temperature, 4), "fitted_on": data, "questions": len(correct),
              **_before_and_after(console, logits, correct, temperature, data)}
    if reader.has_no_answer and any(not a["text"] for a in references.values()):
        result.update(fit_no_answer_threshold(predictions, references, temperature))
    settings = read_json(reader.folder / CONFIG_FILE)
    write_json(reader.folder / CONFIG_FILE, {**settings, "calibration": result})
    fitted = f"temperature {temperature:.3f}"
    if "no_answer_threshold" in result:
        fitted += (f" and no-answer threshold {result['no_answer_threshold']:.3f} (SQuAD 2.0 F1 "
                   f"{result['no_answer_f1']:.2f} on {result['no_answer_questions']} questions, "
                   f"{100 * result['unanswerable_share']:.0f}% of them unanswerable)")
    console.print(f"wrote {fitted} to {reader.folder / CONFIG_FILE}")
    return result


def _before_and_after(console, logits: list[SpanLogits], correct: list[float], temperature: float, data: str) -> dict:
    """The log-loss and ECE of the top score at temperature 1 and at ``temperature``, printed as a table."""
    from rich.table import Table

    result = {}
    table = Table(title=f"calibration of the top answer's score on {data} ({len(correct)} questions)")
    for column in ("temperature", "log-loss", "ECE", "mean score", "exact match"):
        table.add_column(column, justify="right")
    for name, t in (("before", 1.0), ("after", temperature)):
        scores = top_scores(logits, t)
        result[f"log_loss_{name}"] = round(log_loss(scores, np.asarray(correct)), 4)
        result[f"ece_{name}"] = round(expected_calibration_error(scores.tolist(), correct)["ece"], 4)
        table.add_row(f"{t:.3f}", f"{result[f'log_loss_{name}']:.4f}", f"{result[f'ece_{name}']:.4f}",
                      f"{scores.mean():.3f}", f"{np.mean(correct):.3f}")
    console.print(table)
    return result


def fit_no_answer_threshold(predictions, references: dict, temperature: float) -> dict:
    """The no-answer probability above which the reader should abstain: the official SQuAD 2.0
    best-F1 threshold of the forced answers on these questions, at ``temperature``."""
    from qa.squad.squad import best_threshold, score_pairs

    forced = [p for p in predictions if p.answers]
    texts = best_texts(forced)
    pairs = score_pairs([{"id": p.id, "prediction_text": texts[p.id]} for p in forced],
                        [{"id": p.id, "answers": references[p.id]} for p in forced], v2=True)
    probability = no_answer_probabilities([p.answers[0].logits for p in forced], temperature).tolist()
    has_answer = [bool(references[p.id]["text"]) for p in forced]
    f1, threshold = best_threshold([f for _, f in pairs], probability, has_answer, [False] * len(forced))
    return {"no_answer_threshold": round(float(threshold), 4), "no_answer_f1": round(f1, 2),
            "no_answer_questions": len(forced), "unanswerable_share": round(1 - float(np.mean(has_answer)), 4)}
