"""Training groups: what each kind of group holds, that dealing is reproducible, and that a few
steps of shared-normalization training with the no-answer option learn the tiny set."""
import json

import numpy as np
import pytest
import torch

from conftest import fit, squad_payload, tiny_net
from qa.batching import Batcher
from qa.data import load_squad
from qa.features import prepare
from qa.tokenize import Tokens, tokenize
from qa.training_data import (KINDS, NO_ANSWER, GroupShares, TrainingSet, article_names, swapped_question, swapped_questions,
                              training_windows)
from qa.vocab import Vocabulary


@pytest.fixture
def one_article(tmp_path):
    """The fixture passages as the paragraphs of one article, so each has others to be grouped with."""
    payload = squad_payload()
    payload["data"] = [{"title": "Tiny", "paragraphs": [p for a in payload["data"] for p in a["paragraphs"]]}]
    path = tmp_path / "one-article.json"
    path.write_text(json.dumps(payload))
    records = load_squad(str(path))
    data = prepare(records)
    titles = dict(zip(records["context"], records["title"]))
    return data, [titles[c] for c in data.contexts], list(records["question"])


def _training(one_article, shares, held_out=frozenset()) -> TrainingSet:
    data, articles, questions = one_article
    return TrainingSet.encode(data, Batcher(Vocabulary([]), 16), 400, shares, articles, held_out,
                              swaps=swapped_questions(data, questions, articles, seed=0))


def _words(data, context_index) -> str:
    return " ".join(data.context_tokens[context_index].words).lower()


def test_groups_hold_what_their_kind_says(one_article):
    training = _training(one_article, GroupShares(pair=0.2, other=0.2, removed=0.2, swapped=0.2))
    data = training.data
    assert training.stats() == {"questions": 8, "with_other_paragraphs": 8, "with_removable_sentences": 8,
                                "with_swapped_questions": len(training.swapped), "in_windows": 0}
    assert 0 < len(training.swapped) < 8  # "Who led the Normans?" can swap "Normans"; some have nothing to swap
    seen = set()
    for epoch in range(6):
        training.deal(seed=1, epoch=epoch)
        for k, i in enumerate(training.usable):
            example = data.examples[i]
            answer = " ".join(data.context_tokens[example.context_index].words[example.answer_span[0]:example.answer_span[1] + 1]).lower()
            rows, question, target = training._rows(k)
            kind = KINDS[training.kinds[k]]
            seen.add(kind)
            own = training.passages[example.context_index]
            assert question is (training.swapped[i] if kind == "swapped" else training.questions[i])
            if kind in ("alone", "pair"):
                assert rows[0] is own and target == example.answer_span
                assert len(rows) == (2 if kind == "pair" else 1)
            else:
                assert len(rows) == 1 and target == (NO_ANSWER, NO_ANSWER)
            if kind == "swapped":
                assert rows[0] is own and i in training.swapped
            if kind in ("pair", "other"):
                other = training.others[k][training.picks[k] % len(training.others[k])]
                assert other != example.context_index and answer not in _words(data, other)
            if kind == "removed":
                lo, hi = training.removals[k]
                assert lo <= example.answer_span[0] and example.answer_span[1] < hi
                assert len(rows[0]) == len(own) - (hi - lo)
    assert seen == set(KINDS)
    first = training.deal(seed=1, epoch=2), training.kinds.copy(), training.picks.copy()
    again = training.deal(seed=1, epoch=2), training.kinds, training.picks
    assert first[0] == again[0] and (first[1] == again[1]).all() and (first[2] == again[2]).all()


def test_a_removed_sentence_leaves_the_rest_and_recounts_frequencies(one_article):
    training = _training(one_article, GroupShares(removed=1.0))
    training.deal(seed=0, epoch=0)
    k = next(k for k, i in enumerate(training.usable) if training.data.examples[i].id == "n1")  # "Rollo"
    [row], _, _ = training._rows(k)
    data = training.data
    tokens = data.context_tokens[data.examples[training.usable[k]].context_index]
    lo, hi = training.removals[k]
    assert " ".join(tokens.words[lo:hi]) == "They were led by Rollo , a Viking chieftain ."
    kept = [j for j in range(len(tokens)) if not lo <= j < hi]
    direct = training.batcher.encode(Tokens(*([values[j] for j in kept] for values in
                                             (tokens.words, tokens.lemmas, tokens.starts, tokens.ends))))
    for name in ("words", "tuned", "chars", "surface", "lower", "lemma", "frequency"):  # as if it were written so
        assert np.array_equal(getattr(row, name), getattr(direct, name)), name


def test_training_windows_hold_the_whole_answer():
    assert training_windows(3, 4, (0, 1)) == []  # fits whole
    assert training_windows(10, 4, None) == [0, 2, 4, 6]  # every window, half a window apart
    assert training_windows(10, 4, (3, 4)) == [2]
    assert training_windows(10, 4, (2, 3)) == [0, 2]
    assert training_windows(10, 4, (2, 6)) is None  # longer than a window: no window holds it


def test_a_long_paragraph_is_trained_in_a_window_that_holds_its_answer(one_article):
    data, articles, _ = one_article
    window = 12
    training = TrainingSet.encode(data, Batcher(Vocabulary([]), 16), window, GroupShares(removed=1.0), articles)
    long = [k for k, i in enumerate(training.usable) if len(data.context_tokens[data.examples[i].context_index]) > window]
    assert long and training.stats()["in_windows"] == len(long)
    starts_seen = set()
    for epoch in range(4):
        training.deal(seed=0, epoch=epoch)
        for k in long:
            example = data.examples[training.usable[k]]
            tokens = data.context_tokens[example.context_index]
            [row], _, target = training._rows(k)  # a windowed question cannot make a removed group
            start = training.windows[k][training.window_picks[k] % len(training.windows[k])]
            starts_seen.add((k, start))
            assert target == (example.answer_span[0] - start, example.answer_span[1] - start)
            assert 0 <= target[0] <= target[1] < window == len(row)
            piece = Tokens(*(values[start:start + window] for values in (tokens.words, tokens.lemmas, tokens.starts, tokens.ends)))
            direct = training.batcher.encode(piece)
            for name in ("words", "chars", "lower", "lemma", "frequency"):  # as if the window were a passage
                assert np.array_equal(getattr(row, name), getattr(direct, name)), name
    assert len(starts_seen) > len(long)  # questions with more than one window are dealt different ones


def test_held_out_articles_are_not_trained_on(one_article):
    assert _training(one_article, GroupShares(), held_out={"Tiny"}).usable == []


def test_a_few_steps_learn_spans_and_the_null_option(one_article):
    torch.manual_seed(0)
    training = _training(one_article, GroupShares(pair=0.3, other=0.2, removed=0.1, swapped=0.1))
    net = tiny_net(0, dropout=0.0, no_answer=True)[0].train()

    def batch_of_step(step):  # three fixed deals, seen in turn
        training.deal(seed=0, epoch=step % 3)
        return training.collate(list(range(len(training.usable))))

    losses = fit(net, batch_of_step, 60)
    assert np.mean(losses[-3:]) < 0.2 * np.mean(losses[:3])
    net.eval()
    training.deal(seed=0, epoch=0)
    batch = training.collate(list(range(len(training.usable))))
    with torch.no_grad():
        output = net(batch)
    for g in range(len(training.usable)):
        rows = (batch.row_group == g).nonzero().flatten()
        null = torch.logsumexp(output.null_logits[rows], 0) - np.log(len(rows))
        best_start = output.start_logits[rows].max()
        if batch.answer_starts[g] == NO_ANSWER:
            assert null > best_start
        else:
            assert output.start_logits[rows[0]].argmax() == batch.answer_starts[g]


def _pool(texts: list[str]) -> dict[str, list[str]]:
    return article_names(texts, [tokenize(t) for t in texts], ["one"] * len(texts))["one"]


def test_a_swapped_question_names_what_its_paragraph_does_not():
    own = "The Normans were led by Rollo, a Viking chieftain, and took Normandy in 911."
    pool = _pool([own, "In 1066 William of Normandy invaded England.",
                  "Brittany lies to the west; in 1204 Philip took the duchy."])
    assert pool == {"name 1": ["Brittany", "England", "Normandy", "Normans", "Philip", "Rollo", "Viking", "William"],
                    "number": ["911"], "year": ["1066", "1204"]}
    made = {swapped_question("Who led the Normans in 911?", tokenize("Who led the Normans in 911?"), own, pool,
                             np.random.default_rng(seed)) for seed in range(20)}
    # "Normans" (in the paragraph) becomes a one-word name the paragraph lacks; "Who" is never swapped, and
    # 911 has no other three-digit number to become (the years are another shape)
    assert made == {"Who led the William in 911?", "Who led the England in 911?", "Who led the Brittany in 911?",
                    "Who led the Philip in 911?"}
    # "Normandy" appears in both the paragraph and the other text, so it is never a replacement
    assert swapped_question("When did the Normans take Normandy?", tokenize("When did the Normans take Normandy?"),
                            own, _pool([own, "Normandy and the Normans."]), np.random.default_rng(0)) is None


def test_each_question_gets_one_swapped_form_the_same_for_a_seed(one_article):
    data, articles, questions = one_article
    swaps = swapped_questions(data, questions, articles, seed=0)
    assert swaps and swaps == swapped_questions(data, questions, articles, seed=0)
    for i, (text, tokens) in swaps.items():
        assert text != questions[i] and tokens.words == tokenize(text).words
        own = data.contexts[data.examples[i].context_index].lower()
        new = [w for w in tokens.words if w not in data.examples[i].question.words]
        assert new and not any(w.lower() in own.split() for w in new)  # the swapped-in name is not in its paragraph


@pytest.fixture
def with_unanswerable(tmp_path):
    """The fixture passages with one more question, marked unanswerable as SQuAD 2.0 marks them."""
    payload = squad_payload()
    payload["data"][0]["paragraphs"][0]["qas"].append(
        {"id": "n0", "question": "Who founded the Normans' first university?", "answers": [], "is_impossible": True})
    path = tmp_path / "with-unanswerable.json"
    path.write_text(json.dumps(payload))
    return prepare(load_squad(str(path)))


def test_an_unanswerable_question_trains_the_null_option_not_the_first_token(with_unanswerable):
    data = with_unanswerable
    n0 = next(i for i, e in enumerate(data.examples) if e.id == "n0")
    batcher = Batcher(Vocabulary([]), 16)
    without_option = TrainingSet.encode(data, batcher, 400, GroupShares())
    assert n0 not in without_option.usable and len(without_option.usable) == 8
    training = TrainingSet.encode(data, batcher, 400, GroupShares(), no_answer=True)
    k = training.usable.index(n0)
    training.deal(seed=0, epoch=0)
    assert training._rows(k)[2] == (NO_ANSWER, NO_ANSWER)
    net = tiny_net(0, dropout=0.0, no_answer=True)[0]
    batch = training.collate([k])
    with torch.no_grad():
        before = net(batch)
    net.train()
    fit(net, lambda step: batch, 15, lr=0.005)
    net.eval()
    with torch.no_grad():
        after = net(batch)
    # the null's share of the start softmax rises; the first token's does not
    def shares(output):
        logits = torch.cat([output.start_logits[0], output.null_logits[:1]])
        probabilities = torch.softmax(logits, 0)
        return probabilities[-1].item(), probabilities[0].item()
    (null_before, first_before), (null_after, first_after) = shares(before), shares(after)
    assert null_after > max(0.9, null_before) and first_after < first_before
