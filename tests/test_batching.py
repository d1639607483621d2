import numpy as np
import pytest
import torch

from qa.batching import Batcher, bucketed_batches
from qa.tokenize import tokenize
from qa.vocab import UNK, Vocabulary


@pytest.fixture(scope="module")
def batcher():
    return Batcher(Vocabulary(["cat"]), max_word_chars=4)


def test_passage_features_match_by_form_case_and_lemma(batcher):
    passage = tokenize("The Cats sat on the mat.")  # lemmas: the cat sit on the mat .
    question = tokenize("Where did the cat sit?")
    features = batcher.batch([passage], [question]).passage_features[0].numpy()
    # columns: same word as written, same lower-case word, same lemma, term frequency
    expected = [
        [0, 1, 1, 2 / 7],  # The (the question has "the")
        [0, 0, 1, 1 / 7],  # Cats (lemma cat)
        [0, 0, 1, 1 / 7],  # sat (lemma sit)
        [0, 0, 0, 1 / 7],  # on
        [1, 1, 1, 2 / 7],  # the
        [0, 0, 0, 1 / 7],  # mat
        [0, 0, 0, 1 / 7],  # .
    ]
    np.testing.assert_allclose(features, np.array(expected, dtype=np.float32), rtol=1e-6)


def test_encoding_holds_ids_tuned_slots_and_characters(batcher):
    encoded = batcher.encode(tokenize("cat Zqxjvbn"))
    assert encoded.words[0] > UNK and encoded.words[1] == UNK
    assert encoded.tuned.tolist() == [1, 0]
    assert encoded.chars.tolist() == [[ord("c") + 2, ord("a") + 2, ord("t") + 2, 0],
                                      [ord(c) + 2 for c in "Zqxj"]]


def test_a_row_does_not_depend_on_the_rest_of_its_batch(batcher):
    short, long = tokenize("A cat."), tokenize("A long passage about a cat that sat on a mat all day.")
    question = tokenize("What sat?")
    alone = batcher.batch([short], [question])
    together = batcher.batch([long, short], [tokenize("Who sat on the long mat today?"), question])
    n, q = len(short), len(question)
    assert together.passage_mask[1].sum() == n and together.question_mask[1].sum() == q
    for name in ("passage_words", "passage_tuned", "passage_features", "passage_spellings"):
        assert not getattr(together, name)[1, n:].any()  # padding is zero, features included
    for name in ("passage_words", "passage_tuned", "passage_features"):
        assert torch.equal(getattr(together, name)[1, :n], getattr(alone, name)[0, :n])
    assert torch.equal(spelled(together, "passage")[1, :n], spelled(alone, "passage")[0, :n])
    for name in ("question_words", "question_tuned"):
        assert torch.equal(getattr(together, name)[1, :q], getattr(alone, name)[0, :q])
    assert torch.equal(spelled(together, "question")[1, :q], spelled(alone, "question")[0, :q])


def spelled(batch, text: str) -> torch.Tensor:
    """The (B, L, C) character ids of each token of the batch's passages or questions."""
    return batch.spellings[getattr(batch, f"{text}_spellings")]


def test_each_distinct_word_is_spelled_once_and_padding_is_row_zero(batcher):
    passages = [tokenize("The cat sat on the mat."), tokenize("The cat")]
    questions = [tokenize("Where did the cat sit?"), tokenize("The cat?")]
    batch = batcher.batch(passages, questions)
    words = {w for text in passages + questions for w in text.words}
    assert batch.spellings.shape == (len(words) + 1, 4) and not batch.spellings[0].any()
    assert len({tuple(row) for row in batch.spellings.tolist()}) == len(words) + 1
    for b, text in enumerate(passages):
        assert spelled(batch, "passage")[b, : len(text)].tolist() == batcher.encode(text).chars.tolist()
    assert batch.passage_spellings[1, 2:].tolist() == [0] * 5  # 7 tokens, then padding


def test_empty_texts_get_one_masked_in_slot_and_no_features(batcher):
    batch = batcher.batch([tokenize("")], [tokenize("")])
    assert batch.passage_mask.tolist() == [[True]] and batch.question_mask.tolist() == [[True]]
    assert not batch.passage_features.any() and not batch.passage_words.any()


def test_emptying_the_word_cache_changes_no_encoding():
    text = tokenize("One two three four five six seven eight, one two three.")
    fresh = Batcher(Vocabulary([]), max_word_chars=6).encode(text)
    small = Batcher(Vocabulary([]), max_word_chars=6)
    small.CACHED_WORDS = 3
    for _ in range(2):
        encoded = small.encode(text)
        for name in ("words", "tuned", "chars", "surface", "lower", "lemma", "frequency"):
            assert np.array_equal(getattr(encoded, name), getattr(fresh, name)), name
    assert len(small._rows) <= 3


def test_bucketed_batches_cover_every_example_once_in_similar_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 400, size=1000).tolist()
    batches = bucketed_batches(lengths, 32, rng)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert all(len(b) == 32 for b in batches[:-1] if len(b) != 1000 % 32)
    spreads = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]
    assert np.median(spreads) < 40  # sorted with noise of 10, so neighbours are close in length
