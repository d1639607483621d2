"""Attention views, their absolute levels, the evidence behind an answer, the answer-sentence hit
rate, and the document heat of a passage read in windows."""
import json

import numpy as np
import pytest

from conftest import tiny_net

from qa.answers import AttentionMaps, Heat
from qa.cli import main
from qa.errors import UserError
from qa.heat import LEVEL_RATIOS, HeatDisplay, SentenceHits, checked_level_ratios, evidence_of, fit_level_ratios, heat_of, token_heat
from qa.inference import Passages, Query, ReadingOptions, read
from qa.tokenize import tokenize

CONTEXT = "Warsaw is the capital of Poland . It stands on the Vistula River ."
QUESTION = "What river does Warsaw stand on ?"


def _maps() -> AttentionMaps:
    """Hand-made maps: the question summary is all on "river", whose scores pick out "Vistula River";
    the answer tokens' self-attention rows point at "stands"; their general rows at "river"."""
    passage, question = tokenize(CONTEXT), tokenize(QUESTION)
    p, q = len(passage), len(question)
    general = np.full((p, q), 1.0 / q)
    general[11:13] = 0.0
    general[11:13, 1] = 1.0  # "Vistula River" -> "river"
    self_attention = np.full((p, p), 1.0 / p)
    self_attention[11:13] = 0.0
    self_attention[11:13, 8] = 1.0  # the answer's tokens -> "stands"
    question_weights = np.zeros(q)
    question_weights[1] = 1.0
    by_question = np.full((q, p), 1.0 / p)
    by_question[1] = 0.0
    by_question[1, 11:13] = 0.5  # "river" matches "Vistula River"
    return AttentionMaps(list(zip(passage.words, passage.starts, passage.ends)),
                         list(zip(question.words, question.starts, question.ends)),
                         general, self_attention, question_weights, by_question)


def test_each_view_is_the_quantity_it_names():
    maps = _maps()
    answer = range(11, 13)
    question_view = token_heat(maps, "question", answer)
    assert question_view[11] == pytest.approx(0.5) and question_view[0] == 0
    self_view = token_heat(maps, "self", answer)
    assert self_view[8] == pytest.approx(1.0)
    general_view = token_heat(maps, "general", answer)
    assert general_view.sum() == pytest.approx(1.0) and general_view.argmax() in (11, 12)
    with pytest.raises(UserError, match="unknown attention view 'sideways'"):
        HeatDisplay("sideways")  # a user's choice is checked before reading


def test_levels_are_ratios_to_uniform_so_flat_shows_nothing():
    weights = np.array([0.5, 1.0, 1.49, 1.5, 2.0, 2.9, 3.0, 5.0, 100.0]) / 9  # ratios to uniform as listed
    heat = Heat("question", list(range(9)), list(range(1, 10)), weights, LEVEL_RATIOS)
    assert heat.levels().tolist() == [0, 0, 0, 1, 2, 2, 3, 4, 4]
    assert Heat("question", *[list(range(9))] * 2, weights, (0.9, 2.5, 4.0, 50.0)).levels().tolist() == \
        [0, 1, 1, 1, 1, 2, 2, 3, 4]  # the model's own levels, where it records them
    flat = Heat("question", list(range(10)), list(range(1, 11)), np.full(10, 0.1, dtype=np.float32), LEVEL_RATIOS)
    assert flat.levels().max() == 0
    start = CONTEXT.index("Vistula River")
    heat = heat_of(_maps(), "question", start, start + len("Vistula River"))
    assert heat.ratio[11] == pytest.approx(0.5 * len(heat.weights))  # 7.5x uniform over 15 tokens
    assert heat.levels()[11] == 4 and heat.to_dict()["level_ratios"] == list(LEVEL_RATIOS)


def test_fitted_levels_mark_the_aimed_shares_of_tokens():
    ratios = np.arange(1, 1001) / 500  # 0.002 .. 2.0, evenly
    fitted = fit_level_ratios(ratios, (0.2, 0.1, 0.05, 0.01))
    assert fitted == pytest.approx((1.6, 1.8, 1.9, 1.98), abs=0.006)
    assert [(ratios >= r).mean() for r in fitted] == pytest.approx([0.2, 0.1, 0.05, 0.01], abs=0.006)
    flat = fit_level_ratios(np.full(100, 1.0), (0.2, 0.1, 0.05, 0.01))
    assert flat == (1.1, 1.11, 1.12, 1.13)  # above uniform, increasing: a flat heat still shows nothing
    with pytest.raises(ValueError, match="increasing"):
        checked_level_ratios([2.0, 1.5, 3.0, 5.0])
    with pytest.raises(ValueError, match="4 numbers"):
        checked_level_ratios([1.5, 2.0])
    with pytest.raises(UserError, match="increasing"):
        HeatDisplay("question", (1.0, 1.0, 2.0, 3.0))


def test_evidence_labels_every_weight_with_its_tokens():
    start = CONTEXT.index("Vistula River")
    evidence = evidence_of(_maps(), start, start + len("Vistula River"))
    text, s, e, weight = evidence.passage[0]
    assert (text, CONTEXT[s:e], weight) == ("stands", "stands", pytest.approx(1.0))
    word, qs, qe, weight = evidence.question[0]
    assert (word, QUESTION[qs:qe], weight) == ("river", "river", pytest.approx(1.0))
    assert json.loads(json.dumps(evidence.to_dict()))["question"][0]["text"] == "river"


def test_sentence_hits_by_hand():
    passage = "Warsaw is old. It stands on the Vistula River. It has a zoo."
    tokens = tokenize(passage)
    weights = np.zeros(len(tokens), dtype=np.float32)
    weights[[i for i, w in enumerate(tokens.words) if w == "Vistula"]] = 1.0
    heat = Heat("question", tokens.starts, tokens.ends, weights, LEVEL_RATIOS)
    hits = SentenceHits("question")
    hits.add(passage, heat, [passage.index("Vistula")])  # the heaviest sentence holds the answer
    hits.add(passage, heat, [passage.index("zoo")])  # it does not
    result = hits.result()
    second = len("It stands on the Vistula River.")
    third = len("It has a zoo.")
    total = len("Warsaw is old.") + second + third
    assert result["questions"] == 2 and result["answer_sentence_hit_rate"] == 0.5
    assert result["chance"] == pytest.approx(1 / 3)
    assert result["length_weighted_chance"] == pytest.approx((second / total + third / total) / 2)


def test_a_passage_of_several_windows_carries_its_document_heat():
    net, batcher = tiny_net(3)
    passage = "Filler words about nothing much. " * 40 + "Warsaw stands on the Vistula River."
    tokens = tokenize(passage)
    display = HeatDisplay("question", with_attention=True)
    every_window = ReadingOptions(window_tokens=100, window_stride=60, max_windows=0, first_windows=0)
    [prediction] = read(net, batcher, Passages([passage], [tokens], [Query("q", "What river?", tokenize("What river?"), 0)]),
                        every_window, display=display)
    best = prediction.answers[0]
    document = best.document_heat
    assert len(document.ratio) == len(tokens) and (document.ratio > 0).all()  # every window contributed
    # within the answer's window, the document heat is at least the window's own heat
    first = tokens.starts.index(best.heat.starts[0])
    assert (document.ratio[first : first + len(best.heat.ratio)] >= best.heat.ratio - 1e-6).all()
    one_window = read(net, batcher, Passages([passage], [tokens], [Query("q", "What river?", tokenize("What river?"), 0)]),
                      ReadingOptions(window_tokens=400, window_stride=300), display=display)
    assert one_window[0].answers[0].document_heat is None  # the passage (247 tokens) fits one window of 400


def test_the_answers_of_one_window_carry_its_token_offsets_and_their_own_weights():
    """Every kept answer carries a heat over its window, weighted by its own tokens in the self view."""
    net, batcher = tiny_net(3)
    tokens = tokenize(CONTEXT)
    [prediction] = read(net, batcher, Passages([CONTEXT], [tokens], [Query("q", QUESTION, tokenize(QUESTION), 0)]),
                        ReadingOptions(top_k=4), display=HeatDisplay("self"))
    first, *others = [answer.heat for answer in prediction.answers]
    assert len(others) == 3 and first.starts.tolist() == tokens.starts and first.ends.tolist() == tokens.ends
    assert all(heat.starts.tolist() == tokens.starts for heat in others)
    assert not all(np.allclose(heat.weights, first.weights) for heat in others)  # "self" follows each answer
    assert json.loads(json.dumps(first.to_dict()))["tokens"][0]["start"] == 0


def test_evaluate_reports_the_views_hit_rate_beside_chance(squad_file, tmp_path):
    out = tmp_path / "out"
    assert main(["evaluate", str(squad_file), "--output", str(out)]) == 0
    attention = json.loads((out / "metrics.json").read_text())["attention"]
    assert attention["questions"] == 8
    # the fixture passages have two sentences each
    assert attention["chance"] == pytest.approx(0.5)
