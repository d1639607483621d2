"""The span decoder: hand-worked rows, batches of rows of different lengths against brute force,
and top-k lists that never hold an impossible span nor lose a possible one to underflow."""
import itertools
import math

import pytest
import torch

from qa.decode import best_spans


def _logits(probabilities):
    return torch.tensor([probabilities]).log()


def test_best_span_by_hand():
    start = _logits([0.1, 0.6, 0.2, 0.1])
    end = _logits([0.1, 0.1, 0.2, 0.6])
    mask = torch.ones(1, 4, dtype=torch.bool)
    (first, second) = best_spans(start, end, mask, max_answer_len=15, top_k=2).of_row(0)
    assert first[:2] == (1, 3) and math.isclose(first[2], 0.36, rel_tol=1e-5)
    assert second[:2] == (2, 3) and math.isclose(second[2], 0.12, rel_tol=1e-5)  # 0.2 * 0.6


def test_end_never_before_start_and_length_limit_holds():
    start = _logits([0.05, 0.05, 0.85, 0.05])
    end = _logits([0.85, 0.05, 0.05, 0.05])
    mask = torch.ones(1, 4, dtype=torch.bool)
    found = best_spans(start, end, mask, max_answer_len=1, top_k=4).of_row(0)
    assert sorted((s, e) for s, e, _ in found) == [(0, 0), (1, 1), (2, 2), (3, 3)]


def test_padding_is_never_chosen():
    start = _logits([0.1, 0.1, 0.8])
    end = _logits([0.1, 0.1, 0.8])
    mask = torch.tensor([[True, True, False]])
    [(s, e, _)] = best_spans(start, end, mask, top_k=1).of_row(0)
    assert s < 2 and e < 2


def _brute_force(start: torch.Tensor, end: torch.Tensor, length: int, max_len: int, k: int):
    """All valid spans of one row, scored and ranked directly from the definition."""
    p_start, p_end = start[:length].softmax(-1), end[:length].softmax(-1)
    spans = [(float(p_start[i] * p_end[j]), i, j) for i, j in itertools.product(range(length), repeat=2)
             if 0 <= j - i < max_len]
    return sorted(spans, key=lambda x: -x[0])[:k]


@pytest.mark.parametrize("top_k", [1, 3, 7])
def test_a_batch_of_rows_of_different_lengths_matches_each_row_alone(top_k):
    torch.manual_seed(0)
    lengths = [6, 2, 5, 1]
    width = max(lengths)
    start, end = torch.randn(len(lengths), width) * 3, torch.randn(len(lengths), width) * 3
    mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    spans = best_spans(start, end, mask, max_answer_len=3, top_k=top_k)
    for row, length in enumerate(lengths):
        expected = _brute_force(start[row], end[row], length, 3, top_k)
        found = spans.of_row(row)
        assert [(s, e) for s, e, _ in found] == [(i, j) for _, i, j in expected]
        assert [p for _, _, p in found] == pytest.approx([p for p, _, _ in expected], rel=1e-5)
        alone = best_spans(start[row : row + 1, :length], end[row : row + 1, :length],
                           torch.ones(1, length, dtype=torch.bool), 3, top_k).of_row(0)
        assert [(s, e) for s, e, _ in alone] == [(s, e) for s, e, _ in found]


def test_a_short_row_returns_only_its_valid_spans():
    # row 1 has one real token: one valid span, however many are asked for
    start, end = torch.zeros(2, 4), torch.zeros(2, 4)
    mask = torch.tensor([[True] * 4, [True, False, False, False]])
    spans = best_spans(start, end, mask, max_answer_len=15, top_k=5)
    assert len(spans.of_row(0)) == 5
    assert [(s, e) for s, e, _ in spans.of_row(1)] == [(0, 0)]


def test_a_valid_span_whose_score_underflows_is_kept():
    # p(start) * p(end) of the second span is about exp(-200): 0.0 in float32, but a real span
    start = torch.tensor([[0.0, -100.0]])
    end = torch.tensor([[0.0, -100.0]])
    found = best_spans(start, end, torch.ones(1, 2, dtype=torch.bool), max_answer_len=15, top_k=3).of_row(0)
    assert [(s, e) for s, e, _ in found] == [(0, 0), (0, 1), (1, 1)]
    assert found[-1][2] == 0.0
