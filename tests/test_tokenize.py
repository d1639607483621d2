from hypothesis import assume, given
from hypothesis import strategies as st

from qa.features import covering_span
from qa.tokenize import lemma, tokenize


def test_offsets_slice_the_original_text():
    text = "  The gold-themed\tparty (1990s/2000s) cost $5km, U.S.-made.\r\nEnd."
    tokens = tokenize(text)
    assert all(text[s:e] == w for w, s, e in zip(tokens.words, tokens.starts, tokens.ends))
    assert "gold" in tokens.words and "themed" in tokens.words
    assert "1990" in tokens.words and "2000" in tokens.words


def test_sentence_final_period_is_split_but_abbreviations_kept():
    assert tokenize("the 1960s.").words == ["the", "1960", "s", "."]
    assert tokenize("Lyndon B. Johnson.").words == ["Lyndon", "B.", "Johnson", "."]
    assert tokenize("Mr. Smith of the U.S.").words[0] == "Mr."


def test_lemmas_are_lower_case_lookups():
    assert lemma("were") == "be"
    assert lemma("Raiders") == "raider"


def test_covering_span_reports_exact_and_partial_matches():
    tokens = tokenize("a gold-themed party")
    assert covering_span(tokens, 2, 6) == ((1, 1), True)  # "gold"
    assert covering_span(tokens, 3, 6) == ((1, 1), False)  # "old" is inside a token
    assert covering_span(tokens, 4, 12) == ((1, 3), False)  # "ld-theme" spans "gold", "-", "themed"
    assert covering_span(tokens, 14, 19) == ((4, 4), True)  # "party", the last token
    assert covering_span(tokens, 0, 0) == ((0, 0), False)  # before any token ends: the first


@given(st.text(alphabet="ab -./1", min_size=1, max_size=40), st.integers(0, 40), st.integers(0, 40))
def test_covering_span_is_the_last_token_starting_by_start_to_the_first_ending_by_end(text, start, end):
    tokens = tokenize(text)
    assume(len(tokens) > 0)  # whitespace alone has no tokens
    first = max([i for i, s in enumerate(tokens.starts) if s <= start], default=0)
    last = max(first, min([i for i, e in enumerate(tokens.ends) if e >= end], default=len(tokens) - 1))
    exact = tokens.starts[first] == start and tokens.ends[last] == end
    assert covering_span(tokens, start, end) == ((first, last), exact)


def test_invisible_characters_split_tokens_and_are_dropped():
    text = "\u200bRollo led the Nor\u200emans\ufeff in 911\u2060.\u200f"
    tokens = tokenize(text)
    assert tokens.words == ["Rollo", "led", "the", "Nor", "mans", "in", "911", "."]
    assert [text[s:e] for s, e in zip(tokens.starts, tokens.ends)] == tokens.words
    assert "www.example.com" in tokenize("see www.example.com").words  # a URL stays whole
    assert all("\u200b" not in word for word in tokenize("see www.exam\u200bple.com or a\u200bb@example.com").words)
    family = "\U0001F468\u200d\U0001F469"  # a zero-width joiner stays: emoji and some scripts need it
    assert "\u200d" in "".join(tokenize(family).words)


def test_the_tokenizer_starts_afresh_past_its_vocabulary_bound(monkeypatch):
    from qa import tokenize as module

    monkeypatch.setattr(module, "MAX_STRINGS", 5_000)
    for batch in range(4):
        module.tokenize_many([" ".join(f"w{batch}x{i}" for i in range(3_000))])
        assert len(module._pipeline().vocab.strings) <= 5_000 + 3_000 + 2_000  # the bound, one batch, spaCy's own
    assert tokenize("Rollo led the Normans.").words == ["Rollo", "led", "the", "Normans", "."]
