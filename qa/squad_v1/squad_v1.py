"""Official SQuAD v1.1 exact match and F1 as an ``evaluate`` metric module, loadable offline by path.

Normalisation follows the official v1.1 script: lower case, remove punctuation, remove the
articles a/an/the, collapse whitespace. Each prediction takes its best score over the gold
answers; the totals are percentages over all references.
"""
import collections
import re
import string

import datasets
import evaluate

_DESCRIPTION = "SQuAD v1.1 exact match and token F1 (the official evaluation script's rules)."
_CITATION = "Rajpurkar et al., SQuAD: 100,000+ Questions for Machine Comprehension of Text, EMNLP 2016."
_KWARGS = """
predictions: list of {"id": str, "prediction_text": str}
references: list of {"id": str, "answers": {"text": [str], "answer_start": [int]}}
per_question: if True, also return "per_question": [{"id", "exact_match", "f1"}] (each 0 or 1 / 0..1)
Returns {"exact_match": float, "f1": float} in percent.
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


def score_pairs(predictions, references):
    """Per-question (exact match, F1) in 0..1 for the referenced ids, in reference order."""
    predicted = {p["id"]: p["prediction_text"] for p in predictions}
    scores = []
    for reference in references:
        prediction = predicted.get(reference["id"], "")
        truths = reference["answers"]["text"] or [""]
        scores.append(
            (best_over_answers(exact_match_score, prediction, truths), best_over_answers(f1_score, prediction, truths))
        )
    return scores


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class SquadV1(evaluate.Metric):
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

    def _compute(self, predictions, references, per_question=False):
        scores = score_pairs(predictions, references)
        total = max(len(scores), 1)
        result = {
            "exact_match": 100.0 * sum(em for em, _ in scores) / total,
            "f1": 100.0 * sum(f1 for _, f1 in scores) / total,
        }
        if per_question:
            result["per_question"] = [
                {"id": reference["id"], "exact_match": em, "f1": f1} for reference, (em, f1) in zip(references, scores)
            ]
        return result
