import math

import pytest
import torch

from qa.attention import (
    SCORES,
    GeneralAttention,
    SelfAttention,
    SelfAttentivePooling,
    hard_attention,
    local_mask,
    masked_softmax,
    similarity,
)


def test_dot_scaled_and_cosine_scores_by_hand():
    q = torch.tensor([[[1.0, 2.0]]])  # (1, 1, 2)
    k = torch.tensor([[[3.0, 4.0], [0.0, 1.0]]])  # (1, 2, 2)
    assert similarity("dot", 2, 2, 4)(q, k).tolist() == [[[11.0, 2.0]]]
    assert torch.allclose(similarity("scaled_dot", 2, 2, 4)(q, k), torch.tensor([[[11 / math.sqrt(2), 2 / math.sqrt(2)]]]))
    cosine = similarity("cosine", 2, 2, 4)
    expected = 5.0 * torch.tensor([[[11 / (math.sqrt(5) * 5), 2 / math.sqrt(5)]]])
    assert torch.allclose(cosine(q, k), expected)


@pytest.mark.parametrize("name", SCORES)
def test_every_score_has_the_shared_contract(name):
    scores = similarity(name, 6, 6, 8)(torch.randn(2, 5, 6), torch.randn(2, 3, 6))
    assert scores.shape == (2, 5, 3)


def test_dot_scores_refuse_mismatched_sizes():
    with pytest.raises(ValueError, match="equal query and key sizes"):
        similarity("dot", 4, 6, 8)


def test_masked_softmax_gives_padding_no_weight():
    weights = masked_softmax(torch.zeros(1, 2, 3), torch.tensor([[True, True, False]]))
    assert torch.allclose(weights, torch.tensor([[[0.5, 0.5, 0.0]] * 2]))


def test_hard_attention_is_one_hot_and_lets_gradients_through():
    scores = torch.tensor([[[0.1, 3.0, 0.2]]], requires_grad=True)
    mask = torch.ones(1, 3, dtype=torch.bool)
    assert hard_attention(scores, mask, training=False).tolist() == [[[0.0, 1.0, 0.0]]]
    weights = hard_attention(scores, mask, training=True)
    assert weights.sum().item() == 1.0 and set(weights.flatten().tolist()) <= {0.0, 1.0}
    (weights * torch.arange(3.0)).sum().backward()
    assert scores.grad is not None and scores.grad.abs().sum() > 0


def test_local_mask_is_a_window_over_real_tokens():
    allowed = local_mask(torch.tensor([[True, True, True, False]]), window=1)
    assert allowed[0].int().tolist() == [[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 0], [0, 0, 1, 0]]


@pytest.mark.parametrize("window, heads", [(0, 1), (1, 1), (0, 2)])
def test_self_attention_never_attends_to_itself_or_padding(window, heads):
    layer = SelfAttention(dim=8, score="bilinear", hidden=8, window=window, heads=heads)
    mask = torch.tensor([[True, True, True, False]])
    attended, weights = layer(torch.randn(1, 4, 8), mask)
    assert attended.shape == (1, 4, 8) and weights.shape == (1, 4, 4)
    assert torch.allclose(weights.diagonal(dim1=1, dim2=2)[0, :3], torch.zeros(3))
    assert torch.allclose(weights[0, :, 3], torch.zeros(4))
    assert torch.allclose(weights[0, :3].sum(-1), torch.ones(3))


def test_general_attention_weights_follow_the_question_mask():
    layer = GeneralAttention(6, 6, "additive", hidden=5, project=True)
    attended, weights, scores = layer(torch.randn(2, 4, 6), torch.randn(2, 3, 6),
                                      torch.tensor([[True] * 3, [True, False, False]]))
    assert attended.shape == (2, 4, 6) and weights.shape == (2, 4, 3)
    assert torch.allclose(weights[1, :, 0], torch.ones(4))
    assert torch.allclose(weights[0], scores[0].softmax(-1))


def test_question_pooling_weights_sum_to_one_over_real_tokens():
    summary, weights = SelfAttentivePooling(4)(torch.randn(1, 3, 4), torch.tensor([[True, True, False]]))
    assert summary.shape == (1, 4)
    assert weights[0, 2] == 0 and torch.isclose(weights.sum(), torch.tensor(1.0))
