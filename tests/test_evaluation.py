import json

import pytest

from conftest import squad_payload
from qa.cli import main
from qa.evaluation import expected_calibration_error, question_type


@pytest.mark.parametrize(
    "question, kind",
    [("How many people live in Warsaw?", "how many/much"), ("How much did it cost?", "how many/much"),
     ("What river is it on?", "what"), ("Whom did he marry?", "who"), ("When was it built?", "when"),
     ("How did it end?", "how"), ("In which year?", "which"), ("Name the river.", "other")],
)
def test_question_types(question, kind):
    assert question_type(question) == kind


def test_expected_calibration_error_by_hand():
    # bin 0.9-1.0: scores 0.9, 0.9 with one correct -> |0.5 - 0.9| * 2/4 = 0.2
    # bin 0.1-0.2: scores 0.1, 0.1 with none correct -> |0 - 0.1| * 2/4 = 0.05
    result = expected_calibration_error([0.9, 0.9, 0.1, 0.1], [1, 0, 0, 0])
    assert result["ece"] == pytest.approx(0.25)
    assert sum(b["count"] for b in result["bins"]) == 4


def test_scoring_a_predictions_file_by_hand(squad_file, tmp_path, capsys):
    predictions = {"n1": "Rollo", "n2": "in France", "w1": "the Vistula River", "o3": "1774", "zz": "stray"}
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps(predictions))
    out = tmp_path / "scores"
    assert main(["evaluate", str(squad_file), "--predictions", str(path), "--output", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["missing_predictions"], metrics["unknown_predictions"]) == (4, 1)  # 8 questions, 4 answered
    assert "no answer for 4 of the 8 questions" in " ".join(capsys.readouterr().out.split())
    # 8 questions: n1 EM; n2 F1 2/3 (precision 1/2, recall 1); w1 EM after removing "the"; the rest 0.
    assert metrics["exact_match"] == pytest.approx(100 * 2 / 8)
    assert metrics["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1) / 8)
    for buckets in metrics["breakdowns"].values():
        assert sum(b["count"] for b in buckets.values()) == 8
        total_f1 = sum(b["f1"] * b["count"] for b in buckets.values()) / 8
        assert total_f1 == pytest.approx(metrics["f1"])
    assert json.loads((out / "predictions.json").read_text()) == predictions


def test_bad_predictions_file_is_refused(squad_file, tmp_path, capsys):
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps(["not", "a", "dict"]))
    assert main(["evaluate", str(squad_file), "--predictions", str(path)]) == 2
    assert "official predictions format" in capsys.readouterr().err


def test_ctrl_c_while_predicting_writes_nothing(squad_file, tmp_path, monkeypatch, capsys):
    import qa.inference

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(qa.inference, "read", interrupted)
    output = tmp_path / "out"
    assert main(["evaluate", str(squad_file), "--output", str(output)]) == 130
    assert not output.exists()
    assert "Traceback" not in capsys.readouterr().err


def test_ctrl_c_while_writing_results_still_writes_the_whole_set(squad_file, tmp_path, monkeypatch, capsys):
    import os
    import signal

    import qa.evaluation

    real_write = qa.evaluation.write_json
    written = []

    def write_then_ctrl_c(path, payload):
        if not written:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C right as the first file is written
        real_write(path, payload)
        written.append(path.name)

    monkeypatch.setattr(qa.evaluation, "write_json", write_then_ctrl_c)
    output = tmp_path / "out"
    assert main(["evaluate", str(squad_file), "--output", str(output)]) == 130
    assert written == ["predictions.json", "nbest.json", "na_prob.json", "metrics.json"]  # the default can abstain
    ids = {q["id"] for article in squad_payload()["data"] for p in article["paragraphs"] for q in p["qas"]}
    assert set(json.loads((output / "predictions.json").read_text())) == ids
    assert set(json.loads((output / "nbest.json").read_text())) == ids
    assert json.loads((output / "metrics.json").read_text())["questions"] == len(ids)
    assert "interrupted after the complete results were written" in capsys.readouterr().err


def _v2_file(tmp_path):
    """The fixture with one unanswerable question added to each passage."""
    payload = squad_payload()
    for article in payload["data"]:
        paragraph = article["paragraphs"][0]
        paragraph["qas"].append({"id": f"{article['title']}-none", "question": "Who won the 1998 World Cup?",
                                 "answers": [], "is_impossible": True})
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(payload))
    return path


def test_a_squad_v2_file_is_scored_with_the_readers_abstentions(abstaining_model, tmp_path):
    from conftest import null_model_folder

    path = _v2_file(tmp_path)
    assert main(["evaluate", str(path), "--model", str(abstaining_model), "--output", str(tmp_path / "none")]) == 0
    predictions = json.loads((tmp_path / "none" / "predictions.json").read_text())
    probabilities = json.loads((tmp_path / "none" / "na_prob.json").read_text())
    metrics = json.loads((tmp_path / "none" / "metrics.json").read_text())
    assert set(predictions.values()) == {""} and min(probabilities.values()) > 0.99
    assert metrics["NoAns_exact"] == 100.0 and metrics["HasAns_exact"] == 0.0 and metrics["exact"] == pytest.approx(300 / 11)
    answering = null_model_folder(tmp_path / "answering", -50.0)
    assert main(["evaluate", str(path), "--model", str(answering), "--output", str(tmp_path / "all")]) == 0
    predictions = json.loads((tmp_path / "all" / "predictions.json").read_text())
    metrics = json.loads((tmp_path / "all" / "metrics.json").read_text())
    assert all(predictions.values()) and metrics["NoAns_exact"] == 0.0
    assert metrics["calibration"]["bins"] and sum(b["count"] for b in metrics["calibration"]["bins"]) == 11


def test_metrics_report_the_answerable_questions_refused_at_the_threshold_and_users_move_it(abstaining_model, squad_file,
                                                                                          tmp_path):
    path = _v2_file(tmp_path)
    assert main(["evaluate", str(path), "--model", str(abstaining_model), "--output", str(tmp_path / "none")]) == 0
    figures = json.loads((tmp_path / "none" / "metrics.json").read_text())["abstention"]
    assert figures == {"threshold": 0.5, "answerable": 8, "answerable_refused": 8, "false_abstention_rate": 1.0,
                       "unanswerable": 3, "unanswerable_abstained": 3, "unanswerable_abstention_rate": 1.0}
    # a v1.1 file forces its answers, but still says how many the threshold would have refused
    assert main(["evaluate", str(squad_file), "--model", str(abstaining_model), "--output", str(tmp_path / "v1")]) == 0
    metrics = json.loads((tmp_path / "v1" / "metrics.json").read_text())
    assert metrics["abstention"]["false_abstention_rate"] == 1.0 and metrics["exact_match"] > 0
    # --abstain-above 1: no probability is above it, so nothing is refused
    assert main(["evaluate", str(path), "--model", str(abstaining_model), "--abstain-above", "1",
                 "--output", str(tmp_path / "moved")]) == 0
    moved = json.loads((tmp_path / "moved" / "metrics.json").read_text())
    assert moved["abstention"]["answerable_refused"] == 0 and moved["abstention"]["threshold"] == 1.0
    assert all(json.loads((tmp_path / "moved" / "predictions.json").read_text()).values())
    assert main(["evaluate", str(path), "--model", str(abstaining_model), "--abstain-above", "1.5"]) == 2


def test_a_model_without_the_null_option_writes_one_minus_its_top_score_as_the_no_answer_probability(tmp_path):
    path = _v2_file(tmp_path)
    assert main(["evaluate", str(path), "--model", "fast", "--output", str(tmp_path / "fast")]) == 0
    probabilities = json.loads((tmp_path / "fast" / "na_prob.json").read_text())
    nbest = json.loads((tmp_path / "fast" / "nbest.json").read_text())
    assert set(probabilities) == set(nbest) and len(probabilities) == 11
    for qid, probability in probabilities.items():  # what the best-threshold sweep ranks by
        assert probability == pytest.approx(1.0 - nbest[qid][0]["score"], abs=1e-6)


def test_an_output_folder_holds_one_run_s_files_only(squad_file, tmp_path):
    out = tmp_path / "out"
    assert main(["evaluate", str(_v2_file(tmp_path)), "--model", "fast", "--output", str(out)]) == 0
    assert (out / "na_prob.json").exists()
    predictions = tmp_path / "answers.json"
    predictions.write_text(json.dumps({"q1": "Rollo"}))
    assert main(["evaluate", str(squad_file), "--predictions", str(predictions), "--output", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "predictions.json"]  # no stale na_prob, nbest
