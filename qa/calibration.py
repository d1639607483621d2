"""Is the top answer's score a probability of being right? Expected calibration error, and a
temperature on the span logits fitted so that it is.

The score is p(start) x p(end) with both softmaxes taken over the passage. Dividing the logits
by a temperature T changes the scores but never which span wins, so T is fitted after training,
on questions the model was not trained on, by minimising the log-loss of "the top answer is an
exact match" under the score (``fit_temperature``). With the no-answer option the null logit is in
both softmaxes, and the threshold on the no-answer probability above which the reader abstains is
chosen for a stated trade-off: at most ``MAX_REFUSED`` of answerable questions refused, with
``CONFIDENCE`` that this holds on new questions like the file's (``fit_no_answer_threshold``). The shipped
models were fitted on held-out training articles, never on a dev file; fine-tuning fits on its held-out
part or its ``--dev`` file. The fit is written to a new model folder or to the user's own, never to a
shipped model.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from qa.answers import SpanLogits, best_texts
from qa.errors import UserError
from qa.inputs import check_output_folder

TEMPERATURE_RANGE = (0.2, 5.0)
MAX_REFUSED = 0.05  # the stated trade-off: at most this share of answerable questions refused
# ... with this confidence. A threshold at the file's own 5% point refuses more than 5% of new questions
# about half the time: the shipped default's refused 4.95% of 1,595 held-out questions, 5.22% of dev's.
CONFIDENCE = 0.9
CURVE_SHARES = (0.01, 0.02, 0.05, 0.1, 0.2)  # the refused shares the trade-off curve is shown at


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
    from scipy.optimize import minimize_scalar  # imported here: about 0.3 s, and qa evaluate imports this module

    outcomes = np.asarray(correct, dtype=np.float64)
    low, high = np.log(TEMPERATURE_RANGE)
    found = minimize_scalar(lambda t: log_loss(top_scores(logits, float(np.exp(t))), outcomes),
                            bounds=(low, high), method="bounded", options={"xatol": 1e-3})
    return float(np.exp(found.x))


def calibrate(data: str, model: str | None = None, split: str = "validation", limit: int = 0,
              batch_size: int = 64, output: str | None = None, max_refused: float | None = MAX_REFUSED,
              confidence: float = CONFIDENCE, console=None) -> dict:
    """Fit a model's score temperature on ``data`` and, for a model with the no-answer option, the threshold
    that refuses at most ``max_refused`` of answerable questions like its own with ``confidence`` (None: the
    best SQuAD 2.0 F1 on ``data``);
    print the trade-off curve, and store the fit in ``output`` (a copy of the model folder) or in the model's
    own folder, never a shipped one.

    Returns the calibration written: the temperature with the log-loss and ECE of the top score before and
    after, and the threshold with its target and figures."""
    from rich.console import Console

    from qa.data import load_squad
    from qa.features import prepare
    from qa.inference import Passages
    from qa.reader import Reader, model_folder

    if max_refused is not None and not 0.0 <= max_refused < 1.0:
        raise UserError(f"--max-refused must be a share between 0 and 1, got {max_refused}")
    if not 0.0 < confidence < 1.0:
        raise UserError(f"--confidence must be between 0 and 1, got {confidence}")
    destination = _destination(model_folder(model), output)  # checked before the slow part
    console = console or Console()
    records = load_squad(data, split, limit=limit)
    if not any(answers["text"] for answers in records["answers"]):
        raise UserError(f"{data}: no answerable question to calibrate on")
    reader = Reader.load(model)
    # logits at temperature 1: the fit starts from the raw scores, whatever the folder's current temperature
    options = replace(reader.options, batch_size=batch_size, temperature=1.0, with_logits=True)
    with console.status(f"reading {len(records)} questions"):
        predictions = reader.read(Passages.of(prepare(records)), options, force=True)
    references = {i: a for i, a in zip(records["id"], records["answers"])}
    result = {**_fitted_temperature(console, predictions, references, data), "fitted_on": data}
    if reader.has_no_answer:
        result.update(fit_no_answer_threshold(predictions, references, result["temperature"], max_refused, confidence))
        _print_trade_off(console, result)
    _write(reader.folder, destination, result)
    console.print(f"wrote the calibration (temperature {result['temperature']:.3f}"
                  + (f", no-answer threshold {result['no_answer_threshold']:.4g}" if "no_answer_threshold" in result else "")
                  + f") to {destination / 'config.json'}")
    return result


def _fitted_temperature(console, predictions, references: dict, data: str) -> dict:
    """The temperature that calibrates the top answer's score, fitted on the answerable questions (is the
    top answer an exact match?), with the figures before and after."""
    from qa.metric import squad_scores

    answered = [p for p in predictions if p.answers and references[p.id]["text"]]
    correct = [q["exact_match"] for q in squad_scores(best_texts(answered), [{"id": p.id, "answers": references[p.id]}
                                                                             for p in answered],
                                                      per_question=True)["per_question"]]
    logits = [p.answers[0].logits for p in answered]
    temperature = fit_temperature(logits, correct)
    return {"temperature": round(temperature, 4), "questions": len(correct),
            **_before_and_after(console, logits, correct, temperature, data)}


def _destination(source: Path, output: str | None) -> Path:
    """Where the calibration goes: ``output``, else the model's own folder; never a shipped model's."""
    from qa.reader import refuse_shipped

    destination = source if output is None else Path(output)
    refuse_shipped(destination, "calibration")
    check_output_folder(destination)
    return destination


def _write(source: Path, destination: Path, calibration: dict) -> None:
    """``destination``: a copy of the model folder ``source`` (unless it is that folder) whose config.json
    carries ``calibration``; the weights are copied first, the config last, each atomically."""
    from qa.checkpoint import CONFIG_FILE, copy_weights, read_json, write_json

    settings = read_json(source / CONFIG_FILE)
    if destination.resolve() != source.resolve():
        copy_weights(source, destination)
    write_json(destination / CONFIG_FILE, {**settings, "calibration": calibration})


def _print_trade_off(console, result: dict) -> None:
    """The trade-off curve: at each threshold, the answerable questions refused and the unanswerable caught."""
    from rich.table import Table

    table = Table(title=f"abstaining: the trade-off ({result['no_answer_questions']} questions, "
                        f"{100 * result['unanswerable_share']:.0f}% unanswerable)")
    for column in ("abstain above", "answerable refused", "unanswerable caught"):
        table.add_column(column, justify="right")
    for row in result["trade_off"]:
        caught = "-" if row["caught_unanswerable"] is None else f"{100 * row['caught_unanswerable']:.1f}%"
        table.add_row(f"{row['threshold']:.4g}", f"{100 * row['refused_answerable']:.1f}%", caught)
    console.print(table)
    if "best_v2_f1" in result["no_answer_target"]:
        console.print(f"chosen: abstain above {result['no_answer_threshold']:.4g}, the best SQuAD 2.0 F1 on this "
                      f"file ({result['best_f1']:.2f}), refusing {100 * result['refused_answerable']:.1f}% of answerable questions")
        return
    target = result["no_answer_target"]
    console.print(f"chosen: abstain above {result['no_answer_threshold']:.4g}, refusing "
                  f"{100 * result['refused_answerable']:.1f}% of this file's answerable questions: at most "
                  f"{100 * target['max_refused_answerable']:.0f}% of new ones, with {100 * target['confidence']:.0f}% confidence"
                  + (f"; the best SQuAD 2.0 F1 on this file, {result['best_f1']:.2f}, would abstain above "
                     f"{result['best_f1_threshold']:.4g}" if "best_f1" in result else ""))


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


def threshold_for(answerable: np.ndarray, max_refused: float) -> float:
    """The lowest no-answer threshold (abstain above it) that refuses at most ``max_refused`` of the
    answerable questions whose no-answer probabilities are ``answerable``."""
    return float(np.quantile(answerable, 1.0 - max_refused, method="higher"))


def bounded_threshold(answerable: np.ndarray, max_refused: float, confidence: float) -> float:
    """The lowest no-answer threshold at which the share of answerable questions refused, estimated from
    the sample ``answerable``, is at most ``max_refused`` with ``confidence``: the one-sided
    Clopper-Pearson upper bound of the share refused in the sample. A sample too small for any bound
    that low gets a threshold that refuses none of it."""
    from scipy.stats import beta  # imported here: about 0.3 s, and qa evaluate imports this module

    ranked = np.sort(answerable)[::-1]
    refused = np.arange(len(ranked))  # abstaining above ranked[k] refuses the k highest
    bounds = beta.ppf(confidence, refused + 1, len(ranked) - refused)
    allowed = np.flatnonzero(bounds <= max_refused)
    return float(ranked[allowed[-1] if len(allowed) else 0])


def trade_off(answerable: np.ndarray, unanswerable: np.ndarray, shares=CURVE_SHARES) -> list[dict]:
    """Refused answerable questions against caught unanswerable ones, at the threshold of each share."""
    rows = []
    for share in shares:
        threshold = threshold_for(answerable, share)
        rows.append({"threshold": float(f"{threshold:.4g}"), "refused_answerable": float((answerable > threshold).mean()),
                     "caught_unanswerable": float((unanswerable > threshold).mean()) if len(unanswerable) else None})
    return rows


def fit_no_answer_threshold(predictions, references: dict, temperature: float, max_refused: float | None = MAX_REFUSED,
                            confidence: float = CONFIDENCE) -> dict:
    """The no-answer probability above which the reader abstains, chosen for a stated trade-off: at most
    ``max_refused`` of answerable questions refused with ``confidence`` (``bounded_threshold``), or (``max_refused`` None, on questions some of
    which are unanswerable) the official SQuAD 2.0 best-F1 threshold on them, as fine-tuning on a domain
    wants; with the unanswerable questions caught at it, the trade-off curve, and the best-F1 threshold."""
    forced = [p for p in predictions if p.answers]
    probability = no_answer_probabilities([p.answers[0].logits for p in forced], temperature)
    has_answer = np.array([bool(references[p.id]["text"]) for p in forced])
    best = None if has_answer.all() else _best_f1_threshold(forced, references, probability, has_answer)  # (F1, p)
    if max_refused is None and best is None:
        raise UserError("a threshold for the best SQuAD 2.0 F1 needs questions that are unanswerable")
    threshold = best[1] if max_refused is None else bounded_threshold(probability[has_answer], max_refused, confidence)
    target = {"max_refused_answerable": max_refused, "confidence": confidence} if max_refused is not None \
        else {"best_v2_f1": True}
    result = {"no_answer_threshold": float(f"{threshold:.4g}"), "no_answer_target": target,
              "refused_answerable": round(float((probability[has_answer] > threshold).mean()), 4),
              "no_answer_questions": len(forced), "unanswerable_share": round(1 - float(has_answer.mean()), 4),
              "trade_off": trade_off(probability[has_answer], probability[~has_answer])}
    if best is not None:
        result.update({"caught_unanswerable": round(float((probability[~has_answer] > threshold).mean()), 4),
                       "best_f1_threshold": float(f"{best[1]:.4g}"), "best_f1": round(best[0], 2)})
    return result


def _best_f1_threshold(forced, references: dict, probability: np.ndarray, has_answer: np.ndarray) -> tuple[float, float]:
    """The official SQuAD 2.0 best F1 over no-answer thresholds on these questions, and that threshold."""
    from qa.squad.squad import best_threshold, score_pairs

    texts = best_texts(forced)
    pairs = score_pairs([{"id": p.id, "prediction_text": texts[p.id]} for p in forced],
                        [{"id": p.id, "answers": references[p.id]} for p in forced], v2=True)
    return best_threshold([f for _, f in pairs], probability.tolist(), has_answer.tolist(), [False] * len(forced))
