import pytest

from qa.metric import squad_metric, squad_scores


def _refs(*answers):
    return [{"id": str(i), "answers": {"text": list(a), "answer_start": [0] * len(a)}} for i, a in enumerate(answers)]


def test_normalisation_ignores_case_punctuation_articles_and_whitespace():
    refs = _refs(["The  Eiffel Tower"], ["Rollo"], ["New York"])
    predictions = {"0": "eiffel tower!", "1": "an ROLLO", "2": "  new\tyork. "}
    assert squad_scores(predictions, refs) == {"exact_match": 100.0, "f1": 100.0}


def test_f1_by_hand():
    # prediction "in northern france" vs gold "france": 1 common token,
    # precision 1/3, recall 1/1 -> F1 = 2 * (1/3) / (4/3) = 0.5
    refs = _refs(["France"])
    assert squad_scores({"0": "in northern France"}, refs) == {"exact_match": 0.0, "f1": 50.0}


def test_best_over_gold_answers_and_missing_predictions_score_zero():
    refs = _refs(["Denmark", "Denmark, Iceland and Norway"], ["10th century"])
    # q0: EM via first gold; q1 missing -> 0. Totals: EM 50, F1 50.
    scores = squad_scores({"0": "denmark"}, refs)
    assert scores["exact_match"] == pytest.approx(50.0)
    assert scores["f1"] == pytest.approx(50.0)


def test_partial_overlap_counts_repeated_tokens_once_each():
    # prediction tokens [a, b, b] vs gold [b, c]: common = 1; p = 1/3, r = 1/2, F1 = 0.4
    refs = _refs(["bee sea"])
    assert squad_scores({"0": "ay bee bee"}, refs)["f1"] == pytest.approx(40.0)


def test_metric_is_an_evaluate_module():
    metric = squad_metric()
    result = metric.compute(
        predictions=[{"id": "x", "prediction_text": "Rollo"}],
        references=[{"id": "x", "answers": {"text": ["Rollo"], "answer_start": [0]}}],
    )
    assert result == {"exact_match": 100.0, "f1": 100.0}


def test_unicode_is_kept_as_the_official_script_does():
    # The official v1.1 script lower-cases and strips ASCII punctuation only: accents stay (and must
    # match), and curly quotes are not removed, so a prediction without them does not match.
    refs = _refs(["Café Müller"], ["\u201cHello\u201d"], ["Ŝtono"])
    scores = squad_scores({"0": "café  müller.", "1": "Hello", "2": "ŝtono"}, refs, per_question=True)
    assert [s["exact_match"] for s in scores["per_question"]] == [1.0, 0.0, 1.0]
    # q1: prediction ["hello"] vs gold ["\u201chello\u201d"]: no common token -> F1 0.
    assert [s["f1"] for s in scores["per_question"]] == [1.0, 0.0, 1.0]


def test_squad_v2_figures_by_hand():
    refs = [{"id": "a", "answers": {"text": ["Rollo"], "answer_start": [0]}},
            {"id": "b", "answers": {"text": [], "answer_start": []}},
            {"id": "c", "answers": {"text": [], "answer_start": []}},
            {"id": "d", "answers": {"text": ["France"], "answer_start": [0]}}]
    predictions = {"a": "Rollo", "b": "", "c": "Paris", "d": "Spain"}
    probability = {"a": 0.1, "b": 0.9, "c": 0.6, "d": 0.3}
    scores = squad_scores(predictions, refs, no_answer_probability=probability)
    assert (scores["exact"], scores["HasAns_exact"], scores["NoAns_exact"]) == (50.0, 50.0, 50.0)
    assert (scores["HasAns_total"], scores["NoAns_total"], scores["total"]) == (2, 2, 4)
    # abstaining on all scores 2 of 4; answering "a" (p 0.1) adds 1, "d" (0.3) adds 0,
    # "c" (0.6, wrongly answered) takes 1 away, "b" (0.9, empty prediction) changes nothing
    assert (scores["best_exact"], scores["best_exact_thresh"]) == (75.0, 0.1)
    # F1: a correct abstention scores 1 (the official rule for empty answers); "Spain" for "France" 0
    assert (scores["f1"], scores["HasAns_f1"], scores["NoAns_f1"]) == (50.0, 50.0, 50.0)
    assert scores["best_f1"] == 75.0


def test_per_question_scores_of_a_v2_file_follow_the_v2_rule():
    refs = [{"id": "a", "answers": {"text": ["Rollo"], "answer_start": [0]}},
            {"id": "b", "answers": {"text": [], "answer_start": []}},
            {"id": "c", "answers": {"text": [], "answer_start": []}}]
    scores = squad_scores({"a": "Rollo", "b": "", "c": "Paris"}, refs, per_question=True)
    # an empty prediction where there is no answer scores 1; any text there scores 0
    assert [(s["exact_match"], s["f1"]) for s in scores["per_question"]] == [(1.0, 1.0), (1.0, 1.0), (0.0, 0.0)]
    assert scores["f1"] == 100.0 * sum(s["f1"] for s in scores["per_question"]) / 3


def test_on_a_v2_file_exact_match_and_f1_follow_the_same_rule():
    # "The" normalizes to nothing: the v2.0 rule drops it from the gold answers, the v1.1 rule keeps it
    refs = [{"id": "a", "answers": {"text": ["The", "Paris"], "answer_start": [0, 4]}},
            {"id": "b", "answers": {"text": [], "answer_start": []}}]
    scores = squad_scores({"a": "", "b": ""}, refs)
    assert (scores["exact_match"], scores["f1"]) == (scores["exact"], scores["f1"]) == (50.0, 50.0)
    v1 = squad_scores({"a": ""}, refs[:1])  # a v1.1 file keeps the v1.1 rule
    assert v1["exact_match"] == 100.0 and "exact" not in v1
