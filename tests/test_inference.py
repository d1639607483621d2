"""The one inference path: ``qa evaluate`` and ``Reader.answer_batch`` give the same answers, long
passages are read in windows, every text is encoded once, and two processes under torchrun write
the files one process writes."""
import json
import math
import os
import random
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from conftest import squad_payload, tiny_net
from qa.answers import Answer
from qa.cli import main
import qa.inference
from qa.inference import Passages, Query, ReadingOptions, read
from qa.reader import Reader
from qa.tokenize import Tokens, tokenize
from qa.windows import merge_ranked, owned_ranges, window_starts

EVERY_WINDOW = {"max_windows": 0, "first_windows": 0}  # every window of a passage, read at once
FILLER = "The committee met again in the spring and discussed the budget for the coming years at length. "


def _payload_with_a_long_passage() -> dict:
    """The fixture articles plus one passage of about 700 tokens (two windows of 400 at least),
    whose answers sit near its end."""
    payload = squad_payload()
    context = FILLER * 36 + "The bridge over the Vistula was designed by Anna Kowalska and opened in 1931."
    qas = [{"id": f"long{i}", "question": q, "answers": [{"text": t, "answer_start": context.index(t)}]}
           for i, (q, t) in enumerate([("Who designed the bridge over the Vistula?", "Anna Kowalska"),
                                       ("When did the bridge open?", "1931")])]
    payload["data"].append({"title": "Bridge", "paragraphs": [{"context": context, "qas": qas}]})
    return payload


def _questions(payload: dict) -> list[tuple[str, str, str]]:
    return [(q["id"], q["question"], p["context"]) for a in payload["data"] for p in a["paragraphs"] for q in p["qas"]]


@pytest.mark.parametrize("model", ["default", "fast"])
def test_evaluate_gives_the_answers_of_answer_batch(tmp_path, model):
    payload = _payload_with_a_long_passage()
    assert len(tokenize(payload["data"][-1]["paragraphs"][0]["context"])) > 600
    path = tmp_path / "data.json"
    path.write_text(json.dumps(payload))
    assert main(["evaluate", str(path), "--model", model, "--output", str(tmp_path / "out"), "--nbest", "3"]) == 0
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    nbest = json.loads((tmp_path / "out" / "nbest.json").read_text())

    ids, questions, contexts = zip(*_questions(payload))
    answers = Reader.load(model).answer_batch(list(questions), list(contexts), top_k=3)
    assert predictions == {i: found[0].text for i, found in zip(ids, answers)}
    for i, found in zip(ids, answers):
        assert [(x["start"], x["end"]) for x in nbest[i]] == [(a.start, a.end) for a in found]
        assert [x["score"] for x in nbest[i]] == pytest.approx([a.score for a in found], rel=1e-5)
    # the long passage's answers are found in its last window, at their place in the whole passage
    assert predictions["long0"] == "Anna Kowalska" and predictions["long1"] == "1931"


@pytest.fixture(scope="module")
def tiny():
    return tiny_net(3)


def test_each_window_and_each_question_is_encoded_once(tiny, monkeypatch):
    net, batcher = tiny
    passage = FILLER * 12  # 216 tokens: windows of 100 tokens starting at 0, 60 and 116
    questions = ["What did the committee discuss?", "When did it meet?", "Who met?"]
    encoded = []
    real_encode = batcher.encode
    monkeypatch.setattr(batcher, "encode", lambda tokens: encoded.append(len(tokens)) or real_encode(tokens))
    options = ReadingOptions(window_tokens=100, window_stride=60, batch_size=5, top_k=4, **EVERY_WINDOW)
    queries = [Query(str(n), q, tokenize(q), 0) for n, q in enumerate(questions)]
    predictions = read(net, batcher, Passages([passage], [tokenize(passage)], queries), options)
    assert sorted(encoded) == [3, 5, 6, 100, 100, 100]  # 3 questions, 3 windows: not once per pair
    for prediction in predictions:
        spans = [(a.start, a.end) for a in prediction.answers]
        assert len(prediction.answers) == 4 and len(set(spans)) == 4
        assert all(passage[a.start : a.end] == a.text for a in prediction.answers)


def test_windows_share_one_softmax_over_the_passage(tiny):
    net, batcher = tiny
    passage = " ".join(str(1000 + 7 * i) for i in range(216))  # distinct tokens: no ties between windows
    tokens, question = tokenize(passage), tokenize("Which number comes after 1700?")
    [together] = read(net, batcher, Passages([passage], [tokens], [Query("q", "", question, 0)]),
                      ReadingOptions(window_tokens=100, window_stride=60, top_k=3, **EVERY_WINDOW))
    # by hand: every window alone, each token's logits taken from the one window that owns it
    starts = window_starts(len(tokens), 100, 60)
    assert starts == [0, 60, 116]
    owned = [(0, 80), (20, 78), (22, 100)]  # global cuts at 80 and 138, the middles of the overlaps
    kept_start, kept_end = [], []
    for first, (lo, hi) in zip(starts, owned):
        window = Tokens(*(values[first : first + 100] for values in
                          (tokens.words, tokens.lemmas, tokens.starts, tokens.ends)))
        with torch.inference_mode():
            output = net(batcher.batch([window], [question]))
        start, end = output.start_logits[0].double(), output.end_logits[0].double()
        kept_start.append(start[lo:hi])
        kept_end.append(end[lo:hi])
    owned_start, owned_end = torch.cat(kept_start), torch.cat(kept_end)  # (216,) each: every token once
    normaliser = float(owned_start.logsumexp(0) + owned_end.logsumexp(0))
    assert len(together.answers) == 3
    for answer in together.answers:
        first, last = tokens.starts.index(answer.start), tokens.ends.index(answer.end)
        expected = math.exp(float(owned_start[first] + owned_end[last]) - normaliser)
        assert answer.score == pytest.approx(expected, rel=1e-3) and answer.score <= 1
    assert [a.score for a in together.answers] == sorted((a.score for a in together.answers), reverse=True)
    # the best answer is the best span under the passage-wide softmax (spans of at most 15 tokens)
    width = 15
    best = max(((float(owned_start[i] + owned_end[j]), i, j) for i in range(len(tokens))
                for j in range(i, min(i + width, len(tokens)))))
    assert (together.answers[0].start, together.answers[0].end) == (tokens.starts[best[1]], tokens.ends[best[2]])


def test_a_passage_is_normalised_over_the_tokens_of_the_windows_read(tiny):
    net, batcher = tiny
    passage = " ".join(str(1000 + 7 * i) for i in range(216))
    tokens, question = tokenize(passage), tokenize("Which number comes after 1700?")
    for max_windows, read_tokens in ((0, 216), (1, 100)):  # all three windows; the one BM25 ranks first, whole
        [prediction] = read(net, batcher, Passages([passage], [tokens], [Query("q", "", question, 0)]),
                            ReadingOptions(window_tokens=100, window_stride=60, max_windows=max_windows,
                                           first_windows=0, with_logits=True))
        best = prediction.answers[0]
        assert len(best.logits.start) == len(best.logits.end) == read_tokens  # unread tokens are not kept
        assert best.score == pytest.approx(math.exp(best.logits.best - sum(best.logits.log_normalizers(1.0))), rel=1e-6)


def test_the_other_windows_are_read_only_below_the_confident_score(tiny, monkeypatch):
    net, batcher = tiny
    passage = " ".join(str(1000 + 7 * i) for i in range(216))  # windows of 100 starting at 0, 60 and 116
    tokens = tokenize(passage)
    queries = [Query(f"q{i}", text, tokenize(text), 0) for i, text in enumerate(["Which number comes after 1700?",
                                                                                 "What is the number before 2400?"])]
    windows = {"window_tokens": 100, "window_stride": 60, "top_k": 3}

    def answers(options: ReadingOptions, progress=None) -> list[list[tuple[int, int, float]]]:
        return [[(a.start, a.end, a.score) for a in p.answers]
                for p in read(net, batcher, Passages([passage], [tokens], queries), options, progress=progress)]

    first_only = answers(ReadingOptions(max_windows=1, first_windows=0, **windows))
    all_three = answers(ReadingOptions(**EVERY_WINDOW, **windows))
    first_scores = [found[0][2] for found in first_only]
    assert first_scores[0] != first_scores[1]
    confident = max(range(2), key=lambda q: first_scores[q])
    assert first_only[confident] != all_three[confident] and first_only[1 - confident] != all_three[1 - confident]
    calls = []
    staged = answers(ReadingOptions(max_windows=3, first_windows=1, confident_score=sum(first_scores) / 2, **windows),
                     progress=lambda done, total: calls.append((done, total)))
    for q in range(2):  # the confident question keeps what its first window found; the other reads all three
        expected = first_only[q] if q == confident else all_three[q]
        assert [(start, end) for start, end, _ in staged[q]] == [(start, end) for start, end, _ in expected]
        assert [score for _, _, score in staged[q]] == pytest.approx([score for _, _, score in expected], rel=1e-5)
    assert calls[-1] == (4, 4)  # one window each, then the other question's two more
    encoded = []
    real_encode = batcher.encode
    monkeypatch.setattr(batcher, "encode", lambda text: encoded.append(len(text)) or real_encode(text))
    for score, expected in ((0.0, first_only), (1.5, all_three)):  # nobody reads on; everybody does
        encoded.clear()
        found = answers(ReadingOptions(max_windows=3, first_windows=1, confident_score=score, **windows))
        assert [[(start, end) for start, end, _ in q] for q in found] == [[(start, end) for start, end, _ in q] for q in expected]
    # each window and each question once, though each question reads the other's first window later
    assert sorted(encoded) == sorted([100] * 3 + [len(query.question) for query in queries])


def test_two_strides_give_the_same_best_answer_with_close_scores():
    shipped = Reader.load("fast")
    long = _payload_with_a_long_passage()["data"][-1]["paragraphs"][0]
    best = []
    for size, stride in ((400, 300), (400, 200), (300, 250)):
        reader = Reader(shipped.net, shipped.batcher, None,
                        replace(shipped.options, window_tokens=size, window_stride=stride))
        best.append(reader.answer("Who designed the bridge over the Vistula?", long["context"])[0])
    assert {a.text for a in best} == {"Anna Kowalska"}
    assert max(a.score for a in best) - min(a.score for a in best) < 0.02


def test_merging_does_not_depend_on_the_order_answers_arrive_in():
    found = [Answer("a", 0, 1, 0.5), Answer("b", 2, 3, 0.5), Answer("a", 0, 1, 0.2), Answer("c", 4, 6, 0.1)]
    expected = [(a.start, a.end, a.score) for a in merge_ranked(found, 3)]
    for seed in range(5):
        shuffled = found[:]
        random.Random(seed).shuffle(shuffled)
        assert [(a.start, a.end, a.score) for a in merge_ranked(shuffled, 3)] == expected
    assert expected == [(0, 1, 0.5), (2, 3, 0.5), (4, 6, 0.1)]


@pytest.mark.slow
def test_two_processes_write_what_one_process_writes(tmp_path):
    payload = _payload_with_a_long_passage()
    path = tmp_path / "data.json"
    path.write_text(json.dumps(payload))
    one, two = tmp_path / "one", tmp_path / "two"
    # several batches, dealt out to the two ranks; the fast model, whose scores do not depend on how texts are
    # batched (MiniLM's float32 scores move in the last digits with the batch's padding). One thread in the
    # single process, as torchrun gives each rank: float32 sums split over more threads can differ in the last bits
    base, one_thread = [str(path), "--batch-size", "3", "--model", "fast"], {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "qa", "evaluate", *base, "--output", str(one)], check=True,
                   capture_output=True, env=one_thread)
    launched = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                               "-m", "qa", "evaluate", *base, "--output", str(two)], capture_output=True, text=True,
                              env=one_thread)
    assert launched.returncode == 0, launched.stderr
    for name in ("predictions.json", "nbest.json"):
        assert (two / name).read_bytes() == (one / name).read_bytes()
    timing = {"seconds", "questions_per_s", "processes"}
    single, double = (json.loads((folder / "metrics.json").read_text()) for folder in (one, two))
    assert (single["processes"], double["processes"]) == (1, 2)
    assert {k: v for k, v in double.items() if k not in timing} == {k: v for k, v in single.items() if k not in timing}


def test_an_answer_across_the_boundary_between_windows_is_found_and_scored_once():
    shipped = Reader.load("fast")
    assert (shipped.options.window_tokens, shipped.options.window_stride) == (200, 150)
    sentence = "The bridge over the Vistula was designed by Anna Kowalska and opened in 1931."
    before_name = len(tokenize(sentence[: sentence.index("Anna")]))
    filler = FILLER * 17  # 306 tokens: the name is moved onto the cut by single words below
    pad = 324 - len(tokenize(filler)) - before_name  # "Anna" at token 324, "Kowalska" at 325
    context = filler + "again " * pad + sentence + " " + FILLER * 10
    tokens = tokenize(context)
    anna = tokens.words.index("Anna")
    starts = window_starts(len(tokens), 200, 150)
    assert anna == 324 and starts[1:3] == [150, 300]
    # windows [150, 350) and [300, 500), the two that hold the sentence (BM25's first two), own the tokens
    # before and from 325: the answer's start logit comes from the one and its end logit from the other
    assert [first + hi for first, (_, hi) in zip(starts[1:3], owned_ranges(starts, 200, len(tokens))[1:3])][0] == 325
    question = "Who designed the bridge over the Vistula?"
    [split] = shipped.predict(question, context, top_k=3).answers[:1]
    whole = Reader(shipped.net, shipped.batcher, None, replace(shipped.options, window_tokens=2000, window_stride=1000)
                   ).predict(question, context, top_k=3)
    assert split.text == whole.answers[0].text == "Anna Kowalska"
    assert abs(split.score - whole.answers[0].score) < 0.05
    texts = [a.text for a in shipped.predict(question, context, top_k=3).answers]
    assert len(texts) == len(set(texts))  # found by both windows, listed once


@pytest.fixture(scope="module")
def tiny_null():
    """A small untrained network with the no-answer option: each window gets its own null logit."""
    return tiny_net(5, no_answer=True)


NUMBERS = " ".join(str(1000 + 7 * i) for i in range(216))  # distinct tokens: windows of 100 start at 0, 60, 116


def test_the_null_option_is_scored_once_over_every_window_read(tiny_null):
    net, batcher = tiny_null
    tokens, question = tokenize(NUMBERS), tokenize("Which number comes after 1700?")
    [prediction] = read(net, batcher, Passages([NUMBERS], [tokens], [Query("q", "", question, 0)]),
                        ReadingOptions(window_tokens=100, window_stride=60, **EVERY_WINDOW))
    starts, owned = [0, 60, 116], [(0, 80), (20, 78), (22, 100)]
    kept_start, kept_end, nulls = [], [], []
    for first, (lo, hi) in zip(starts, owned):  # by hand: every window alone
        window = Tokens(*(values[first : first + 100] for values in (tokens.words, tokens.lemmas, tokens.starts, tokens.ends)))
        with torch.inference_mode():
            output = net(batcher.batch([window], [question]))
        kept_start.append(output.start_logits[0, lo:hi].double())
        kept_end.append(output.end_logits[0, lo:hi].double())
        nulls.append(float(output.null_logits[0]))
    assert max(nulls) - min(nulls) > 1e-3  # the windows disagree, so how they combine matters
    null = max(nulls)  # the passage's null logit is the windows' maximum
    start_norm = float(torch.logaddexp(torch.cat(kept_start).logsumexp(0), torch.tensor(null, dtype=torch.float64)))
    end_norm = float(torch.logaddexp(torch.cat(kept_end).logsumexp(0), torch.tensor(null, dtype=torch.float64)))
    assert prediction.no_answer == pytest.approx(math.exp(2 * null - start_norm - end_norm), rel=1e-3)


def test_a_passage_read_in_several_windows_abstains_above_the_threshold_only(tiny_null):
    net, batcher = tiny_null
    options = ReadingOptions(window_tokens=100, window_stride=60)
    question = "Which number comes after 1700?"
    forced = Reader(net, batcher, None, options).predict(question, NUMBERS, force=True)
    assert not forced.abstained and forced.answers and 0 < forced.no_answer < 1
    below, above = forced.no_answer * 0.99, min(forced.no_answer * 1.01, 1.0)
    abstaining = Reader(net, batcher, None, options, no_answer_threshold=below)
    prediction = abstaining.predict(question, NUMBERS)
    assert prediction.abstained and prediction.text == ""
    assert prediction.answers[0].text == forced.answers[0].text  # the best guess stays
    assert abstaining.answer(question, NUMBERS) == []
    assert abstaining.answer(question, NUMBERS, force=True)[0].text == forced.answers[0].text
    answering = Reader(net, batcher, None, options, no_answer_threshold=above)
    assert answering.answer(question, NUMBERS)[0].text == forced.answers[0].text


def test_reading_in_several_runs_gives_the_same_predictions(tiny_null, monkeypatch):
    net, batcher = tiny_null
    texts = [NUMBERS, FILLER * 12, "Warsaw stands on the Vistula River. It is the capital of Poland."]
    asked = [(0, "Which number comes after 1700?"), (0, "What is the number before 2400?"), (1, "Who met?"),
             (1, "When did the committee meet?"), (2, "What river does Warsaw stand on?"), (2, "What is Warsaw?")]
    queries = [Query(f"q{n}", text, tokenize(text), passage) for n, (passage, text) in enumerate(asked)]
    passages = Passages(texts, [tokenize(t) for t in texts], queries)
    options = ReadingOptions(window_tokens=100, window_stride=60, max_windows=3, first_windows=1, confident_score=0.01,
                             top_k=3, batch_size=2)
    at_once = read(net, batcher, passages, options)
    monkeypatch.setattr(qa.inference, "RUN_ROWS", 1)
    # one run a query: a run ends where the passage changes, or within a passage that alone fills one
    assert qa.inference._plan(passages, options).runs(queries) == [[0], [1], [2], [3], [4], [5]]
    in_runs = read(net, batcher, passages, options)
    for one, other in zip(at_once, in_runs):
        assert [(a.start, a.end) for a in one.answers] == [(a.start, a.end) for a in other.answers]
        assert [a.score for a in one.answers] == pytest.approx([a.score for a in other.answers], rel=1e-5)
        assert one.no_answer == pytest.approx(other.no_answer, rel=1e-5)


class _ScriptedNet(torch.nn.Module):
    """A stand-in network whose span logits are set per passage token: the passage's words are the numbers
    0..N-1, so each row's tokens say where its window sits. ``logits(window_first, token)`` -> (start, end)."""

    def __init__(self, vocabulary, tokens: int, logits):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.index = {vocabulary.word_id(str(i)): i for i in range(tokens)}
        assert len(self.index) == tokens  # every number its own word id
        self.logits = logits

    def forward(self, batch):
        from qa.model import ReaderOutput

        rows, length = batch.passage_words.shape
        start, end = torch.full((rows, length), -1e4), torch.full((rows, length), -1e4)
        for b in range(rows):
            positions = [self.index[int(w)] for w in batch.passage_words[b] if int(w) != 0]
            for k, token in enumerate(positions):
                start[b, k], end[b, k] = self.logits(positions[0], token)
        questions = batch.question_words.shape[1]
        return ReaderOutput(start, end, torch.zeros(rows, length, questions), None, torch.zeros(rows, questions),
                            torch.zeros(rows, length, questions))


def test_the_passages_best_span_is_not_cut_before_all_windows_are_rescored():
    """Window [0, 200) scores its edge (tokens 150-199, which window [100, 300) owns) highly, in many spans;
    the owner scores them low. The passage's best span (token 250, found by the second window only) must
    survive until every window's candidates are rescored over the whole passage."""
    from qa.batching import Batcher
    from qa.vocab import Vocabulary

    def logits(first: int, token: int) -> tuple[float, float]:
        if first == 0:
            return (8.0, 8.0) if 150 <= token < 160 else (0.0, 0.0)
        return (5.0, 5.0) if token == 250 else (0.0, 0.0)

    vocabulary = Vocabulary([])
    net = _ScriptedNet(vocabulary, 300, logits)
    passage = " ".join(str(i) for i in range(300))
    query = Query("q", "Which number?", tokenize("Which number?"), 0)
    options = ReadingOptions(window_tokens=200, window_stride=100, top_k=1, **EVERY_WINDOW)
    [prediction] = read(net, Batcher(vocabulary, 16), Passages([passage], [tokenize(passage)], [query]), options)
    assert prediction.answers[0].text == "250"
