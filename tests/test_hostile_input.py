"""Arbitrary unicode in, valid answers out: offsets always slice the passage, nothing raises."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qa.batching import Batcher
from qa.errors import UserError
from qa.inputs import is_blank, is_unicode
from qa.model import ReaderConfig, ReaderNet, glove_tensor
from qa.inference import ReadingOptions
from qa.reader import Reader

MAX_QUESTION_TOKENS = ReadingOptions().max_question_tokens
from qa.vocab import Vocabulary

PIECES = st.sampled_from(
    ["Warsaw", "river", "e\u0301", "\U0001F600", "\u4e2d\u6587", "\u05e9\u05dc\u05d5\u05dd", "\u200b", "\u200d",
     "\r\n", "\t", "   ", "\x07", "\x1f", "-", "/", "1990s.", "U.S.", "\u00a0", "'s", "\ufeff",
     "\ud800", "\udcff"]  # lone surrogates: what a file or argument that is not UTF-8 leaves in a str
)
TEXT = st.lists(st.one_of(PIECES, st.text(min_size=1, max_size=6)), min_size=1, max_size=40).map(" ".join)


@pytest.fixture(scope="module")
def reader():
    torch.manual_seed(0)
    config = ReaderConfig(hidden=8, char_filters=4)
    return Reader(ReaderNet(config, glove_tensor()).eval(), Batcher(Vocabulary([]), config.max_word_chars), None)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(question=TEXT, context=TEXT)
def test_answers_always_slice_the_passage(reader, question, context):
    blank, broken = is_blank(question) or is_blank(context), not (is_unicode(question) and is_unicode(context))
    if blank or broken:  # refused with the problem it has (either, when it has both)
        expected = "|".join(message for message, found in (("empty", blank), ("not valid Unicode text", broken)) if found)
        with pytest.raises(UserError, match=expected):
            reader.answer(question, context)
        return
    for answer in reader.answer(question, context, top_k=3):
        assert 0 <= answer.start < answer.end <= len(context)
        assert context[answer.start : answer.end] == answer.text
        assert 0.0 <= answer.score <= 1.0


def test_a_very_long_question_is_truncated_with_a_warning(reader):
    question = "what " * 2000
    with pytest.warns(UserWarning, match=f"only the first {MAX_QUESTION_TOKENS}"):
        answers = reader.answer(question, "Warsaw is on the Vistula.")
    assert answers and answers[0].text
