"""Official SQuAD v1.1 and v2.0 exact match and F1 as one ``evaluate`` metric module, loadable
offline by path.

Normalisation follows the official scripts: lower case, remove punctuation, remove the articles
a/an/the, collapse whitespace. Each prediction takes its best score over the gold answers; the
totals are percentages over all references. A reference with no answers is a SQuAD 2.0
unanswerable question: only the empty prediction scores 1 on it. Given each question's
no-answer probability, the v2.0 figures follow as the official v2.0 script computes them
(``HasAns_``/``NoAns_`` splits and the best threshold on the probability).
"""
import collections
import re
import string

import datasets
import evaluate

_DESCRIPTION = "SQuAD v1.1 and v2.0 exact match and token F1 (the official evaluation scripts' rules)."
_CITATION = ("Rajpurkar et al., SQuAD: 100,000+ Questions for Machine Comprehension of Text, EMNLP 2016; "
             "Rajpurkar, Jia and Liang, Know What You Don't Know: Unanswerable Questions for SQuAD, ACL 2018.")
_KWARGS = """
predictions: list of {"id": str, "prediction_text": str} ("" means no answer)
references: list of {"id": str, "answers": {"text": [str], "answer_start": [int]}} (no answers: unanswerable)
per_question: if True, also return "per_question": [{"id", "exact_match", "f1"}] (each 0 or 1 / 0..1; by the
    v2.0 rules when the v2.0 figures are returned)
no_answer_probability: optional {id: float}
Returns {"exact_match": float, "f1": float} in percent. With unanswerable references or no-answer
probabilities, both under the v2.0 rule (a gold answer that normalizes to nothing, such as "The", does not
count), and also the official v2.0 figures: "exact", "f1", "total", "HasAns_exact", "HasAns_f1",
"HasAns_total", "NoAns_exact", "NoAns_f1", "NoAns_total", and with the probabilities "best_exact",
"best_exact_thresh", "best_f1", "best_f1_thresh".
"""


def normalize_answer(text):
    """Lower case, drop punctuation and articles, collapse whitespace (official v1.1 rules)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match_score(prediction, truth):
    return float(normalize_answer(prediction) == normalize_answer(truth))


def f1_score(prediction, truth):
    """Token-level F1 between normalised prediction and gold answer."""
    predicted = normalize_answer(prediction).split()
    gold = normalize_answer(truth).split()
    common = collections.Counter(predicted) & collections.Counter(gold)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(predicted)
    recall = overlap / len(gold)
    return 2 * precision * recall / (precision + recall)


def best_over_answers(metric, prediction, truths):
    return max(metric(prediction, truth) for truth in truths)


def v2_f1_score(prediction, truth):
    """F1 under the official v2.0 rule: when either side normalises to nothing, 1 if both do."""
    if not normalize_answer(prediction) or not normalize_answer(truth):
        return float(normalize_answer(prediction) == normalize_answer(truth))
    return f1_score(prediction, truth)


def score_pairs(predictions, references, v2=False):
    """Per-question (exact match, F1) in 0..1 for the referenced ids, in reference order. With ``v2``,
    gold answers that normalise to nothing are dropped first, as the official v2.0 script does."""
    predicted = {p["id"]: p["prediction_text"] for p in predictions}
    scores = []
    for reference in references:
        prediction = predicted.get(reference["id"], "")
        truths = reference["answers"]["text"]
        if v2:
            truths = [t for t in truths if normalize_answer(t)]
        truths = truths or [""]
        scores.append(
            (best_over_answers(exact_match_score, prediction, truths),
             best_over_answers(v2_f1_score if v2 else f1_score, prediction, truths))
        )
    return scores


def _mean(values):
    return 100.0 * sum(values) / len(values) if values else 0.0


def best_threshold(scores, no_answer_probability, has_answer, predicted_empty):
    """The official v2.0 sweep: start from abstaining on every question, then answer them in order of
    rising no-answer probability; returns the best total (percent) and the probability up to which
    answering paid."""
    current = best = sum(not h for h in has_answer)
    threshold = 0.0
    for i in sorted(range(len(scores)), key=lambda i: no_answer_probability[i]):
        if has_answer[i]:
            current += scores[i]
        elif not predicted_empty[i]:
            current -= 1
        if current > best:
            best, threshold = current, no_answer_probability[i]
    return 100.0 * best / max(len(scores), 1), threshold


def v2_figures(predictions, references, no_answer_probability=None):
    """The official v2.0 script's figures (``exact``, ``f1``, ``HasAns_``/``NoAns_``; the best
    thresholds when the no-answer probabilities are given)."""
    predicted = {p["id"]: p["prediction_text"] for p in predictions}
    scores = score_pairs(predictions, references, v2=True)
    has_answer = [bool(r["answers"]["text"]) for r in references]
    empty = [not predicted.get(r["id"], "") for r in references]
    exact, f1 = [em for em, _ in scores], [f for _, f in scores]
    figures = {"exact": _mean(exact), "f1": _mean(f1), "total": len(scores)}
    for name, keep in (("HasAns", True), ("NoAns", False)):
        chosen = [i for i, h in enumerate(has_answer) if h == keep]
        if chosen:
            figures.update({f"{name}_exact": _mean([exact[i] for i in chosen]),
                            f"{name}_f1": _mean([f1[i] for i in chosen]), f"{name}_total": len(chosen)})
    if no_answer_probability is not None:
        probability = [float(no_answer_probability.get(r["id"], 0.0)) for r in references]
        for name, values in (("exact", exact), ("f1", f1)):
            figures[f"best_{name}"], figures[f"best_{name}_thresh"] = best_threshold(values, probability, has_answer,
                                                                                     empty)
    return figures


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Squad(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS,
            features=datasets.Features(
                {
                    "predictions": {"id": datasets.Value("string"), "prediction_text": datasets.Value("string")},
                    "references": {
                        "id": datasets.Value("string"),
                        "answers": datasets.features.Sequence(
                            {"text": datasets.Value("string"), "answer_start": datasets.Value("int32")}
                        ),
                    },
                }
            ),
        )

    def _compute(self, predictions, references, per_question=False, no_answer_probability=None):
        scores = score_pairs(predictions, references)
        total = max(len(scores), 1)
        result = {
            "exact_match": 100.0 * sum(em for em, _ in scores) / total,
            "f1": 100.0 * sum(f1 for _, f1 in scores) / total,
        }
        v2 = no_answer_probability is not None or any(not r["answers"]["text"] for r in references)
        if v2:  # then "exact_match" and "f1" both follow the v2.0 rule, as the table beside them does
            result.update(v2_figures(predictions, references, no_answer_probability))
            result["exact_match"] = result["exact"]
        if per_question:  # on a v2.0 file under its rule, so an empty prediction for no answer scores 1
            pairs = score_pairs(predictions, references, v2=True) if v2 else scores
            result["per_question"] = [
                {"id": reference["id"], "exact_match": em, "f1": f1} for reference, (em, f1) in zip(references, pairs)
            ]
        return result
