"""The library API on a small untrained network (behaviour, not accuracy)."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import split_windows, tiny_net
from qa.inference import ReadingOptions
from qa.reader import Answer, Reader
from qa.tokenize import tokenize
from qa.windows import merge_ranked

PASSAGE = "Warsaw is the capital and largest city of Poland. It stands on the Vistula River."


@pytest.fixture(scope="module")
def reader():
    return Reader(*tiny_net(3), folder=None)


def test_answers_are_slices_best_first_and_exactly_top_k(reader):
    answers = reader.answer("What river?", PASSAGE, top_k=5)
    assert len(answers) == 5
    assert [a.score for a in answers] == sorted((a.score for a in answers), reverse=True)
    assert len({(a.start, a.end) for a in answers}) == 5
    for a in answers:
        assert PASSAGE[a.start : a.end] == a.text and a.text.strip()
        assert a.to_dict() == {"answer": a.text, "score": a.score, "start": a.start, "end": a.end}


def test_batch_equals_one_by_one(reader):
    questions = ["What river?", "Which city is the capital?", "Where is Warsaw?"]
    contexts = [PASSAGE, PASSAGE, "Warsaw is in Poland, on a river."]
    batched = reader.answer_batch(questions, contexts, batch_size=2, top_k=3)
    for question, context, answers in zip(questions, contexts, batched):
        single = reader.answer(question, context, top_k=3)
        assert [(a.start, a.end) for a in answers] == [(a.start, a.end) for a in single]
        assert [a.score for a in answers] == pytest.approx([a.score for a in single], rel=1e-4)


def test_long_passages_are_windowed_and_answers_stay_in_place(reader):
    long_passage = " ".join(["Filler words about nothing much."] * 120) + " " + PASSAGE
    answers = reader.answer("What river does Warsaw stand on?", long_passage, top_k=3)
    assert len(answers) == 3
    assert all(long_passage[a.start : a.end] == a.text for a in answers)


def test_windows_cover_every_token_and_keep_offsets():
    tokens = tokenize(" ".join(str(i) for i in range(25)))
    windows = split_windows(tokens, size=10, stride=7)
    covered = {start for w in windows for start in w.starts}
    assert covered == set(tokens.starts)
    assert all(len(w) <= 10 for w in windows)
    with pytest.raises(ValueError, match="stride"):
        split_windows(tokens, size=10, stride=11)


def test_merge_keeps_each_span_once_with_its_best_score():
    found = [Answer("a", 0, 1, 0.2), Answer("a", 0, 1, 0.5), Answer("b", 2, 3, 0.3)]
    assert [(a.text, a.score) for a in merge_ranked(found, 5)] == [("a", 0.5), ("b", 0.3)]


def test_with_attention_maps_match_the_tokens(reader):
    [answer] = reader.answer("What river?", PASSAGE, with_attention=True)
    maps = answer.attention
    assert maps.general.shape == (len(maps.passage_tokens), len(maps.question_tokens))
    assert all(PASSAGE[s:e] == text for text, s, e in maps.passage_tokens)


def test_bfloat16_reader_gives_slices_with_float32_scores_and_maps(reader):
    fast = Reader(reader.net, reader.batcher, folder=None, options=ReadingOptions(bfloat16=True))
    answers = fast.answer("What river?", PASSAGE, top_k=3, with_attention=True)
    assert answers and all(PASSAGE[a.start : a.end] == a.text and 0 < a.score <= 1 for a in answers)
    assert answers[0].attention.general.dtype == np.float32
    exact = reader.answer("What river?", PASSAGE, top_k=3)
    assert [a.score for a in answers] == pytest.approx([a.score for a in exact], abs=0.05)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"top_k": 0}, "at least 1"), ({"max_answer_len": 0}, "at least 1")],
)
def test_invalid_arguments_raise_value_errors(reader, kwargs, message):
    with pytest.raises(ValueError, match=message):
        reader.answer("What river?", PASSAGE, **kwargs)
    with pytest.raises(ValueError, match="empty"):
        reader.answer(" ", PASSAGE)


def test_min_score_lets_callers_abstain(reader):
    [best] = reader.answer("What river?", PASSAGE)
    assert reader.answer("What river?", PASSAGE, min_score=min(1.0, best.score * 1.01 + 1e-9)) == []
    assert reader.answer("What river?", PASSAGE, min_score=best.score * 0.99)[0].text == best.text


def test_window_stride_must_be_below_window_size(reader):
    with pytest.raises(ValueError, match="window_stride"):
        Reader(reader.net, reader.batcher, None, ReadingOptions(window_tokens=100, window_stride=100))


def test_models_are_found_by_shipped_name_or_by_folder(tmp_path, monkeypatch):
    from qa.reader import SHIPPED_MODELS, model_folder

    assert model_folder(None) == model_folder("default") == SHIPPED_MODELS / "default"
    assert model_folder("fast") == SHIPPED_MODELS / "fast"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fast").mkdir()  # a folder named like a shipped model is reached by its path
    assert model_folder("./fast") == Path("./fast") and model_folder(tmp_path / "fast") == tmp_path / "fast"
    assert Reader.load("fast").folder == SHIPPED_MODELS / "fast"


def test_model_files_load_and_bad_ones_are_named(reader, tmp_path):
    from qa.checkpoint import ModelFileError, save_model

    folder = tmp_path / "model"
    save_model(folder, reader.net, {"model": reader.net.config.to_dict()})
    loaded = Reader.load(folder)
    assert loaded.answer("What river?", PASSAGE)[0].text == reader.answer("What river?", PASSAGE)[0].text

    weights = (folder / "model.safetensors").read_bytes()
    tampered = bytearray(weights)
    tampered[-5] ^= 0x40  # one bit of one weight: still a well-formed safetensors file
    (folder / "model.safetensors").write_bytes(bytes(tampered))
    with pytest.raises(ModelFileError, match="model.safetensors: contents do not match the SHA-256 in config.json"):
        Reader.load(folder)

    (folder / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "weights_sha256"}))
    with pytest.raises(ModelFileError, match="model.safetensors: not a readable safetensors file"):
        Reader.load(folder)

    state = reader.net.state_dict()
    name = next(iter(state))
    save_file({**state, name: state[name].double()}, str(folder / "model.safetensors"))
    with pytest.raises(ModelFileError, match=f"wrong tensor type .*{name} is torch.float64"):
        Reader.load(folder)
    save_file({**state, name: torch.full_like(state[name], float("nan"))}, str(folder / "model.safetensors"))
    with pytest.raises(ModelFileError, match=f"non-finite values \\(NaN or infinity\\) in \\['{name}'\\]"):
        Reader.load(folder)

    save_model(folder, reader.net, {"model": {**reader.net.config.to_dict(), "hidden": 24}})
    with pytest.raises(ModelFileError, match="does not match config.json"):
        Reader.load(folder)

    (folder / "config.json").write_text('{"model": {"colour": "blue"}}')
    with pytest.raises(ModelFileError, match="not a reader config"):
        Reader.load(folder)


def test_a_model_shows_the_attention_view_its_config_records(reader, tmp_path):
    from qa.checkpoint import ModelFileError, save_model
    from qa.heat import DEFAULT_VIEW

    folder = tmp_path / "model"
    save_model(folder, reader.net, {"model": reader.net.config.to_dict()})
    assert Reader.load(folder).attention_view == DEFAULT_VIEW  # a model that records none
    save_model(folder, reader.net, {"model": reader.net.config.to_dict(), "attention": {"view": "question"}})
    loaded = Reader.load(folder)
    assert loaded.attention_view == "question"
    [shown] = loaded.answer("What river?", PASSAGE, with_attention=True)
    [chosen] = loaded.answer("What river?", PASSAGE, with_attention=True, attention_view="self")
    assert (shown.heat.view, chosen.heat.view) == ("question", "self")  # a call's own choice wins
    save_model(folder, reader.net, {"model": reader.net.config.to_dict(), "attention": {"view": "sideways"}})
    with pytest.raises(ModelFileError, match="config.json: unknown attention view 'sideways'"):
        Reader.load(folder)
    save_model(folder, reader.net, {"model": reader.net.config.to_dict(), "attention": {"view": ["self"]}})
    with pytest.raises(ModelFileError, match=r"config.json: unknown attention view \['self'\]"):
        Reader.load(folder)


def test_a_model_shades_at_the_levels_its_config_records_per_view(reader, tmp_path):
    from qa.checkpoint import ModelFileError, save_model
    from qa.heat import LEVEL_RATIOS

    folder = tmp_path / "model"
    levels = {"question": [1.1, 1.2, 1.4, 2.0]}
    save_model(folder, reader.net, {"model": reader.net.config.to_dict(),
                                    "attention": {"view": "question", "levels": levels}})
    loaded = Reader.load(folder)
    [own] = loaded.answer("What river?", PASSAGE, with_attention=True)
    [other] = loaded.answer("What river?", PASSAGE, with_attention=True, attention_view="self")
    assert own.heat.level_ratios == (1.1, 1.2, 1.4, 2.0)
    assert other.heat.level_ratios == LEVEL_RATIOS  # a view the model records no levels for
    assert (own.heat.levels() == np.searchsorted([1.1, 1.2, 1.4, 2.0], own.heat.ratio, side="right")).all()
    for bad, message in (({"question": [2.0, 1.0, 3.0, 4.0]}, "increasing"), ({"sideways": [1, 2, 3, 4]}, "map views"),
                         ({"self": "high"}, "4 numbers"), ([1, 2, 3, 4], "map views")):
        save_model(folder, reader.net, {"model": reader.net.config.to_dict(), "attention": {"view": "self", "levels": bad}})
        with pytest.raises(ModelFileError, match=f"config.json: attention .*{message}"):
            Reader.load(folder)


def test_a_reader_that_judges_no_answer_abstains_keeps_its_guess_and_can_be_forced(abstaining_model):
    shipped, abstaining = Reader.load("fast"), Reader.load(abstaining_model)
    question, context = "What river does Warsaw stand on?", "Warsaw stands on the Vistula River in Poland."
    assert abstaining.answer(question, context) == []
    prediction = abstaining.predict(question, context)
    assert prediction.abstained and prediction.no_answer > 0.99 and prediction.text == ""
    guess, [forced], [expected] = prediction.answers[0], abstaining.answer(question, context, force=True), \
        shipped.answer(question, context)
    assert guess.text == forced.text == expected.text == "Vistula River"
    assert forced.score < 0.01  # the null option holds nearly all the probability
    plain = shipped.predict(question, context)
    assert plain.no_answer is None and not plain.abstained


@pytest.mark.parametrize("kernels", [True, False])
def test_bfloat16_on_a_cpu_without_bfloat16_kernels_says_it_will_be_slow(monkeypatch, kernels):
    import warnings

    from qa import model

    monkeypatch.setattr(model, "cpu_has_bfloat16_kernels", lambda: kernels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Reader.load("fast", bfloat16=True)
    assert [str(w.message) for w in caught if "bfloat16 kernels" in str(w.message)] == ([] if kernels else [model.BFLOAT16_SLOW])


def test_the_precision_is_as_asked_else_as_pinned_else_as_the_cpu_suits(monkeypatch):
    from qa import model
    from qa.errors import UserError
    from qa.reader import PRECISION_ENV, reads_in_bfloat16

    for kernels in (True, False):
        monkeypatch.setattr(model, "cpu_has_bfloat16_kernels", lambda: kernels)
        monkeypatch.delenv(PRECISION_ENV)
        assert reads_in_bfloat16(None) is kernels  # fast by default where the CPU has the kernels
        assert reads_in_bfloat16(None, contextual=False) is False  # where it measured faster: the encoder's matmuls
        assert reads_in_bfloat16(False) is False and reads_in_bfloat16(True) is True  # exact when asked
        monkeypatch.setenv(PRECISION_ENV, "float32")
        assert reads_in_bfloat16(None) is False and reads_in_bfloat16(True) is True
        monkeypatch.setenv(PRECISION_ENV, "bfloat16")
        assert reads_in_bfloat16(None) is True
    monkeypatch.setenv(PRECISION_ENV, "half")
    with pytest.raises(UserError, match="float32 or bfloat16"):
        reads_in_bfloat16(None)
    monkeypatch.setenv(PRECISION_ENV, "float32")
    monkeypatch.setattr(model, "cpu_has_bfloat16_kernels", lambda: True)  # no warning that bfloat16 would be slow
    assert Reader.load("fast").precision == "float32" and Reader.load("fast", bfloat16=True).precision == "bfloat16"


def test_a_model_folder_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """A crash between writing the weights and the config that records their digest leaves the old folder,
    which still loads; a crash between the two renames is put right by the next save or resume."""
    import qa.checkpoint
    from qa.checkpoint import restore_model_folder, save_model

    net, _ = tiny_net(0)
    folder = tmp_path / "best"
    save_model(folder, net, {"model": net.config.to_dict()})
    before = (folder / "model.safetensors").read_bytes()
    with torch.no_grad():
        next(net.parameters()).add_(1.0)

    def crash(*args, **kwargs):
        raise OSError("killed")

    monkeypatch.setattr(qa.checkpoint, "write_json", crash)
    with pytest.raises(OSError):
        save_model(folder, net, {"model": net.config.to_dict()})
    assert (folder / "model.safetensors").read_bytes() == before
    Reader.load(folder)  # the old weights with their own digest
    monkeypatch.undo()
    folder.rename(tmp_path / "best.old")  # as if killed between the renames
    restore_model_folder(folder)
    assert (folder / "model.safetensors").read_bytes() == before and not (tmp_path / "best.old").exists()
    shutil.copytree(folder, tmp_path / "best.old")  # as if killed after the swap, before the old one went
    save_model(folder, net, {"model": net.config.to_dict()})
    assert (folder / "model.safetensors").read_bytes() != before and sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_a_text_of_nothing_but_invisible_characters_is_empty(reader):
    from qa.errors import UserError

    with pytest.raises(UserError, match="a question is empty"):
        reader.predict("\u200b\ufeff", "Rollo led the Normans.")
    with pytest.raises(UserError, match="a passage is empty"):
        reader.predict_batch(["Who led?"], ["\u200b \u2060"])
    for answer in reader.predict("Who led the Normans?", "\u200bRollo\u200e led the Normans.", top_k=20).answers:
        assert answer.text.strip() and answer.text == answer.text.strip("\u200b\u200e")  # never begin or end in one
