"""Score calibration: the temperature-scaled top score, its fit, and where the reader uses it."""
import json
import shutil

import numpy as np
import pytest

from qa.calibration import expected_calibration_error, fit_temperature, top_scores
from qa.cli import main
from qa.answers import SpanLogits
from qa.reader import SHIPPED_MODELS, Reader


def _synthetic(temperature: float, count: int, seed: int = 0):
    """Questions whose top answer is right with exactly the probability its score has at ``temperature``."""
    rng = np.random.default_rng(seed)
    logits, correct = [], []
    for _ in range(count):
        start, end = rng.normal(0, 4, 30), rng.normal(0, 4, 30)
        i, j = int(start.argmax()), int(end.argmax())
        span = SpanLogits(start, end, float(start[i] + end[j]))
        logits.append(span)
        correct.append(float(rng.random() < top_scores([span], temperature)[0]))
    return logits, correct


def test_top_score_is_the_product_of_the_two_softmaxes():
    start, end = np.array([2.0, 0.0, -1.0]), np.array([0.5, 3.0, 0.0])
    span = SpanLogits(start, end, float(start[0] + end[1]))
    expected = (np.exp(start) / np.exp(start).sum())[0] * (np.exp(end) / np.exp(end).sum())[1]
    assert top_scores([span], 1.0)[0] == pytest.approx(expected)
    assert top_scores([span], 3.0)[0] < expected  # a higher temperature flattens the softmaxes


def test_fitted_temperature_recovers_the_true_one_and_lowers_the_error():
    logits, correct = _synthetic(2.5, 4000)
    fitted = fit_temperature(logits, correct)
    assert fitted == pytest.approx(2.5, rel=0.15)
    before = expected_calibration_error(top_scores(logits, 1.0).tolist(), correct)["ece"]
    after = expected_calibration_error(top_scores(logits, fitted).tolist(), correct)["ece"]
    assert after < 0.05 < before


def test_ece_weights_bins_by_their_share():
    result = expected_calibration_error([0.95, 0.95, 0.15, 0.15], [1, 1, 0, 1])
    assert result["ece"] == pytest.approx(0.5 * 0.05 + 0.5 * 0.35)
    assert [b["count"] for b in result["bins"]] == [2, 2]


def test_calibrate_writes_the_temperature_the_reader_then_uses(squad_file, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(SHIPPED_MODELS / "default", model)
    passage = "The Normans were led by Rollo, a Viking chieftain, in the 10th century."
    [plain] = Reader.load(model).answer("Who led the Normans?", passage)
    assert main(["calibrate", str(squad_file), "--model", str(model)]) == 0
    calibration = json.loads((model / "config.json").read_text())["calibration"]
    assert calibration["questions"] == 8 and calibration["temperature"] > 0
    assert calibration["log_loss_after"] <= calibration["log_loss_before"]
    assert Reader.load(model).temperature == pytest.approx(calibration["temperature"])

    settings = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**settings, "calibration": {"temperature": 2.0}}))
    [flatter] = Reader.load(model).answer("Who led the Normans?", passage)
    assert (flatter.text, flatter.start, flatter.end) == (plain.text, plain.start, plain.end)
    assert flatter.score < plain.score  # the same answer, less sure at a higher temperature


def test_the_threshold_refuses_at_most_the_stated_share_of_answerable_questions():
    from qa.calibration import threshold_for, trade_off

    answerable = np.linspace(0.0, 0.99, 100)  # 0, 0.01, ..., 0.99
    threshold = threshold_for(answerable, 0.05)
    assert threshold == pytest.approx(0.95) and (answerable > threshold).mean() == pytest.approx(0.04)
    assert (answerable > np.nextafter(threshold, 0)).mean() > 0.04  # the lowest such threshold
    unanswerable = np.array([0.2, 0.96, 0.99, 1.0])
    rows = trade_off(answerable, unanswerable, shares=(0.05, 0.2))
    assert [r["caught_unanswerable"] for r in rows] == [0.75, 0.75]  # 0.2 is below both thresholds
    assert rows[1]["threshold"] == pytest.approx(0.8) and rows[1]["refused_answerable"] == pytest.approx(0.19)


def test_calibration_never_changes_a_shipped_model(squad_file, tmp_path, capsys):
    before = {p.name: p.read_bytes() for p in (SHIPPED_MODELS / "default").iterdir()}
    fast = {p.name: p.read_bytes() for p in (SHIPPED_MODELS / "fast").iterdir()}
    assert main(["calibrate", str(squad_file)]) == 2
    assert "shipped model" in capsys.readouterr().err
    for shipped in ("default", "fast"):  # not by --output either, into its own folder or the other's
        assert main(["calibrate", str(squad_file), "--output", str(SHIPPED_MODELS / shipped)]) == 2
        assert "shipped model" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (SHIPPED_MODELS / "fast").iterdir()} == fast
    output = tmp_path / "calibrated"
    assert main(["calibrate", str(squad_file), "--output", str(output), "--max-refused", "0.25"]) == 0
    assert {p.name: p.read_bytes() for p in (SHIPPED_MODELS / "default").iterdir()} == before
    assert (output / "model.safetensors").read_bytes() == before["model.safetensors"]
    calibration = json.loads((output / "config.json").read_text())["calibration"]
    assert calibration["no_answer_target"] == {"max_refused_answerable": 0.25, "confidence": 0.9}
    assert calibration["refused_answerable"] <= 0.25 and calibration["questions"] == 8
    assert Reader.load(output).no_answer_threshold == calibration["no_answer_threshold"]


def test_the_bounded_threshold_refuses_the_most_that_the_confidence_allows():
    from scipy.stats import binom

    from qa.calibration import bounded_threshold

    answerable = np.random.default_rng(0).permutation(np.arange(1595) / 1595)  # distinct, shuffled
    threshold = bounded_threshold(answerable, 0.05, 0.9)
    refused = int((answerable > threshold).sum())
    assert refused == 68  # 79 (4.95%) would be the sample's own 5% point
    # the dual of the Clopper-Pearson bound: 68 or fewer refused would be unlikely (<= 10%) were 5% the
    # true share; 69 or fewer would not be
    assert binom.cdf(refused, 1595, 0.05) <= 0.1 < binom.cdf(refused + 1, 1595, 0.05)
    assert bounded_threshold(answerable[:40], 0.05, 0.9) == answerable[:40].max()  # too few: refuse none


def test_calibrating_for_the_best_v2_f1_uses_that_threshold(squad_file, tmp_path):
    from rich.console import Console

    from qa.calibration import calibrate
    from qa.errors import UserError

    payload = json.loads(squad_file.read_text())
    for article in payload["data"]:
        article["paragraphs"][0]["qas"].append({"id": f"{article['title']}-none", "answers": [], "is_impossible": True,
                                                "question": "Who won the 1998 World Cup?"})
    v2 = tmp_path / "v2.json"
    v2.write_text(json.dumps(payload))
    model = tmp_path / "model"
    shutil.copytree(SHIPPED_MODELS / "default", model)
    result = calibrate(str(v2), model=str(model), max_refused=None, console=Console(quiet=True))
    assert result["no_answer_target"] == {"best_v2_f1": True}
    assert result["no_answer_threshold"] == result["best_f1_threshold"]
    assert Reader.load(model).no_answer_threshold == result["no_answer_threshold"]
    with pytest.raises(UserError, match="needs questions that are unanswerable"):
        calibrate(str(squad_file), model=str(model), max_refused=None, console=Console(quiet=True))


def test_a_file_without_answerable_questions_cannot_calibrate(tmp_path, capsys):
    from conftest import squad_payload

    payload = squad_payload()
    for article in payload["data"]:
        for qa in article["paragraphs"][0]["qas"]:
            qa["answers"], qa["is_impossible"] = [], True
    path = tmp_path / "unanswerable.json"
    path.write_text(json.dumps(payload))
    assert main(["calibrate", str(path), "--output", str(tmp_path / "c")]) == 2
    assert capsys.readouterr().err == f"qa: error: {path}: no answerable question to calibrate on\n"
    assert not (tmp_path / "c").exists()
