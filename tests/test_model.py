import pytest
import torch

from conftest import fit

from qa.batching import Batcher
from qa.data import load_squad
from qa.features import prepare
from qa.model import ReaderConfig, ReaderNet, glove_tensor, span_loss
from qa.vocab import Vocabulary


@pytest.fixture(scope="module")
def vectors():
    return glove_tensor()


def _small(**overrides) -> ReaderConfig:
    return ReaderConfig(hidden=16, char_filters=8, **overrides)


def _batch(data, batcher, indices, with_answers=True):
    examples = [data.examples[i] for i in indices]
    return batcher.batch([data.context_tokens[e.context_index] for e in examples], [e.question for e in examples],
                         [e.answer_span for e in examples] if with_answers else None)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"score": "dot"},
        {"score": "scaled_dot", "gate": False},
        {"score": "additive", "passage_self_attention": "local"},
        {"score": "cosine", "passage_self_attention": "multihead"},
        {"passage_self_attention": "off", "question_self_attention": False},
        {"hard_attention": True},
        {"answer_pointer": True},
    ],
)
def test_forward_shapes_and_attention_maps(squad_file, vectors, overrides):
    data = prepare(load_squad(str(squad_file)))
    config = _small(**overrides)
    batcher = Batcher(Vocabulary([]), config.max_word_chars)
    batch = _batch(data, batcher, range(4))
    output = ReaderNet(config, vectors)(batch)
    b, p = batch.passage_words.shape
    q = batch.question_words.shape[1]
    assert output.start_logits.shape == (b, p) and output.end_logits.shape == (b, p)
    assert output.general_attention.shape == (b, p, q)
    assert output.question_attention.shape == (b, q)
    if config.passage_self_attention == "off":
        assert output.self_attention is None
    else:
        assert output.self_attention.shape == (b, p, p)


@pytest.mark.parametrize("pointer", [False, True])
def test_batched_and_single_predictions_agree(squad_file, vectors, pointer):
    data = prepare(load_squad(str(squad_file)))
    config = _small(answer_pointer=pointer)
    net = ReaderNet(config, vectors).eval()
    batcher = Batcher(Vocabulary([]), config.max_word_chars)
    together = net(_batch(data, batcher, range(8), with_answers=False))
    for i in range(8):
        alone = net(_batch(data, batcher, [i], with_answers=False))
        length = alone.start_logits.shape[1]
        assert torch.allclose(together.start_logits[i, :length], alone.start_logits[0], atol=1e-4)
        assert torch.allclose(together.end_logits[i, :length], alone.end_logits[0], atol=1e-4)


def test_shapes_rounded_up_for_reading_change_no_real_score(squad_file, vectors):
    data = prepare(load_squad(str(squad_file)))
    net = ReaderNet(_small(no_answer=True, answer_pointer=True), vectors).eval()
    batcher = Batcher(Vocabulary([]), net.config.max_word_chars)
    examples = data.examples[:3]
    passages = [batcher.encode(data.context_tokens[e.context_index]) for e in examples]
    questions = [batcher.encode(e.question) for e in examples]
    exact, rounded = (batcher.collate(passages, questions, multiple=m) for m in (1, 32))
    assert rounded.passage_words.shape[1] % 32 == 0 and rounded.question_words.shape[1] % 32 == 0
    assert len(rounded.spellings) % 32 == 0 and rounded.passage_words.shape[1] > exact.passage_words.shape[1]
    plain, padded = net(exact), net(rounded)
    length = exact.passage_words.shape[1]
    assert torch.allclose(padded.start_logits[:, :length], plain.start_logits, atol=1e-5)
    assert torch.allclose(padded.end_logits[:, :length], plain.end_logits, atol=1e-5)
    assert torch.allclose(padded.null_logits, plain.null_logits, atol=1e-5)


@pytest.mark.parametrize("pointer", [False, True])
def test_a_few_steps_memorise_a_tiny_set(squad_file, vectors, pointer):
    torch.manual_seed(0)
    data = prepare(load_squad(str(squad_file)))
    config = _small(dropout=0.0, tuned_words=["who", "what"], answer_pointer=pointer)
    net = ReaderNet(config, vectors)
    batcher = Batcher(Vocabulary(config.tuned_words), config.max_word_chars)
    batch = _batch(data, batcher, range(8))
    losses = fit(net, lambda step: batch, 60)
    assert losses[-1] < 0.2 * losses[0]
    net.eval()
    output = net(batch)
    assert (output.start_logits.argmax(-1) == batch.answer_starts).all()
    assert (output.end_logits.argmax(-1) == batch.answer_ends).all()


@pytest.mark.parametrize("pointer", [False, True])
def test_the_answer_pointer_scores_the_end_knowing_the_start(squad_file, vectors, pointer):
    torch.manual_seed(0)
    data = prepare(load_squad(str(squad_file)))
    config = _small(answer_pointer=pointer)
    net = ReaderNet(config, vectors).eval()
    batch = _batch(data, Batcher(Vocabulary([]), config.max_word_chars), range(4), with_answers=False)
    before = net(batch)
    with torch.no_grad():
        net.start.weight.mul_(-3.0)  # move the start distribution only
    after = net(batch)
    assert not torch.allclose(before.start_logits, after.start_logits)
    assert torch.allclose(before.end_logits, after.end_logits) != pointer


def _output(start, end, null=None):
    """A ReaderOutput carrying only span (and null) logits, for the loss."""
    from qa.model import ReaderOutput

    empty = torch.zeros(0)
    return ReaderOutput(start, end, empty, None, empty, empty, null)


def test_shared_normalization_is_one_softmax_over_each_group():
    from qa.batching import Batch

    torch.manual_seed(0)
    start, end = torch.randn(3, 4), torch.randn(3, 4)
    start[2, 3] = end[2, 3] = torch.finfo(torch.float32).min  # row 2 has 3 real tokens
    null = torch.randn(3)
    batch = Batch(*[None] * 10, answer_starts=torch.tensor([5, -1]), answer_ends=torch.tensor([6, -1]),
                  row_group=torch.tensor([0, 0, 1]), row_slot=torch.tensor([0, 1, 0]))
    # group 0: rows 0 and 1 side by side, the gold span in row 1 (5 = 1 * 4 + 1 and 6 = 1 * 4 + 2)
    # group 1: row 2 alone, no answer
    group_null = torch.stack([torch.logsumexp(null[:2], 0) - torch.log(torch.tensor(2.0)), null[2]])
    expected = (
        -torch.log_softmax(torch.cat([start[0], start[1], group_null[:1]]), 0)[5]
        - torch.log_softmax(torch.cat([end[0], end[1], group_null[:1]]), 0)[6]
        - torch.log_softmax(torch.cat([start[2, :3], group_null[1:]]), 0)[3]
        - torch.log_softmax(torch.cat([end[2, :3], group_null[1:]]), 0)[3]
    ) / 2
    assert span_loss(_output(start, end, null), batch).item() == pytest.approx(expected.item(), rel=1e-5)
    without_null = Batch(*[None] * 10, answer_starts=torch.tensor([5]), answer_ends=torch.tensor([6]),
                         row_group=torch.tensor([0, 0]), row_slot=torch.tensor([0, 1]))
    alone = -torch.log_softmax(torch.cat([start[0], start[1]]), 0)[5] - torch.log_softmax(torch.cat([end[0], end[1]]), 0)[6]
    assert span_loss(_output(start[:2], end[:2]), without_null).item() == pytest.approx(alone.item(), rel=1e-5)
    with pytest.raises(ValueError, match="no_answer"):
        span_loss(_output(start, end), batch)


def test_the_null_score_is_one_logit_per_row(squad_file, vectors):
    data = prepare(load_squad(str(squad_file)))
    config = _small(no_answer=True)
    batch = _batch(data, Batcher(Vocabulary([]), config.max_word_chars), range(4), with_answers=False)
    output = ReaderNet(config, vectors)(batch)
    assert output.null_logits.shape == (4,) and torch.isfinite(output.null_logits).all()
    assert ReaderNet(_small(), vectors)(batch).null_logits is None



def _bilstm_and_inputs():
    from qa.model import BiLSTM

    torch.manual_seed(0)
    inputs, mask = torch.randn(3, 7, 6), torch.ones(3, 7, dtype=torch.bool)
    mask[1, 4:] = False
    return BiLSTM(6, 4, 2, 0.0).eval(), inputs, mask


def test_the_bilstm_runs_under_bfloat16_autocast_on_this_cpu():
    lstm, inputs, mask = _bilstm_and_inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = lstm(inputs, mask)  # bfloat16 where the CPU's LSTM kernel has it, float32 where not
    assert torch.allclose(mixed.float(), lstm(inputs, mask), atol=0.05)


def test_without_a_bfloat16_lstm_kernel_the_bilstm_steps_out_of_autocast(monkeypatch):
    from qa import model

    lstm, inputs, mask = _bilstm_and_inputs()
    monkeypatch.setattr(model, "cpu_has_bfloat16_kernels", lambda: False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = lstm(inputs.bfloat16(), mask)
    assert mixed.dtype == torch.float32 and torch.equal(mixed, lstm(inputs.bfloat16().float(), mask))
