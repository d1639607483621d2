import math

import torch

from qa.decode import best_spans


def _logits(probabilities):
    return torch.tensor([probabilities]).log()


def test_best_span_by_hand():
    start = _logits([0.1, 0.6, 0.2, 0.1])
    end = _logits([0.1, 0.1, 0.2, 0.6])
    mask = torch.ones(1, 4, dtype=torch.bool)
    starts, ends, scores = best_spans(start, end, mask, max_answer_len=15, top_k=2)
    assert (int(starts[0, 0]), int(ends[0, 0])) == (1, 3)
    assert math.isclose(float(scores[0, 0]), 0.36, rel_tol=1e-5)
    assert (int(starts[0, 1]), int(ends[0, 1])) == (2, 3)  # 0.2 * 0.6 = 0.12


def test_end_never_before_start_and_length_limit_holds():
    start = _logits([0.05, 0.05, 0.85, 0.05])
    end = _logits([0.85, 0.05, 0.05, 0.05])
    mask = torch.ones(1, 4, dtype=torch.bool)
    starts, ends, _ = best_spans(start, end, mask, max_answer_len=1, top_k=4)
    assert (starts <= ends).all() and ((ends - starts) < 1).all()


def test_padding_is_never_chosen():
    start = _logits([0.1, 0.1, 0.8])
    end = _logits([0.1, 0.1, 0.8])
    mask = torch.tensor([[True, True, False]])
    starts, ends, _ = best_spans(start, end, mask, top_k=1)
    assert int(starts[0, 0]) < 2 and int(ends[0, 0]) < 2
