"""The ``qa`` command: answers with the shipped model, and one-line errors for user mistakes."""
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROLLO
from qa.cli import main
from qa.context import Context
from qa.heat import LEVEL_RATIOS, VIEWS
from qa.reader import Reader
from qa.render import ATTENTION_CHOICES

PASSAGE = ("The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, "
           "a region in France. They were led by Rollo, a Viking chieftain.")


def _answer_line(out: str) -> str:
    """The answer printed on the rendering's ``Answer:`` line (the passage always holds every word)."""
    [answer] = re.findall(r"^Answer: (.+?) {3}score", out, re.M)
    return answer


def test_ask_with_the_shipped_model_answers_from_the_passage(capsys):
    assert main(["ask", "Who led the Normans?", "--context", PASSAGE]) == 0
    assert _answer_line(capsys.readouterr().out) in ROLLO


@pytest.mark.parametrize("name", ["default", "fast"])
def test_each_shipped_model_answers_by_name(name, capsys):
    assert main(["ask", "Who led the Normans?", "--context", PASSAGE, "--model", name, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] in ROLLO


def test_ask_reads_the_passage_from_a_file(tmp_path, capsys):
    path = tmp_path / "passage.txt"
    path.write_text(PASSAGE, encoding="utf-8")
    assert main(["ask", "In what country is Normandy?", "--file", str(path), "--top-k", "2"]) == 0
    assert _answer_line(capsys.readouterr().out) == "France"


def test_ask_json_gives_the_answer_with_its_offsets(capsys):
    assert main(["ask", "Who led the Normans?", "--context", PASSAGE, "--json", "--top-k", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["answer"] in ROLLO and PASSAGE[result["start"] : result["end"]] == result["answer"]
    assert len(result["answers"]) == 3 and result["answers"][0]["answer"] == result["answer"]
    assert [a["score"] for a in result["answers"]] == sorted((a["score"] for a in result["answers"]), reverse=True)
    assert result["attention"] == result["heat"]["view"] == Reader.load().attention_view  # the model's own view
    assert abs(sum(t["weight"] for t in result["heat"]["tokens"]) - 1) < 1e-3
    for side, text in (("passage", PASSAGE), ("question", "Who led the Normans?")):
        rows = result["evidence"][side]
        assert rows and all(text[r["start"] : r["end"]] == r["text"] for r in rows)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["ask", "   ", "--context", PASSAGE], "the question is empty"),
        (["ask", "Who?", "--context", " \n "], "the passage is empty"),
        (["ask", "\u200b \ufeff", "--context", PASSAGE], "the question is empty"),  # only characters that show nothing
        (["ask", "Who?", "--context", "\u200b\u200e \u2060"], "the passage is empty"),
        (["ask", "Who?", "--file", "/nonexistent/passage.txt"], "no such file"),
        (["evaluate", "/nonexistent/dev.json"], "no such file"),
        (["ask", "Who?", "--context", PASSAGE, "--model", "/nonexistent/model"], "no such model folder"),
    ],
)
def test_bad_input_gives_one_line_and_nonzero_exit(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_binary_file_is_refused(tmp_path, capsys):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"\x00\x81\x02binary\x00\xff\x00")
    assert main(["ask", "Who?", "--file", str(path)]) == 2
    err = capsys.readouterr().err
    assert "blob.bin: not a text file (binary data)" in err and len(err.strip().splitlines()) == 1


def test_malformed_dataset_is_named_without_traceback(tmp_path):
    path = tmp_path / "bad.json"
    good = {"paragraphs": [{"context": "Warsaw is in Poland.", "qas": [
        {"id": "w", "question": "Where is Warsaw?", "answers": [{"text": "Poland", "answer_start": 13}]}]}]}
    path.write_text(json.dumps({"data": [good, {"paragraphs": [{"qas": []}]}]}))  # the second article is broken
    output = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "qa", "evaluate", str(path), "--output", str(output)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "article 1 paragraph 0: missing or empty 'context'" in result.stderr and "Traceback" not in result.stderr
    assert not output.exists()  # nothing half-written


def test_the_installed_command_answers_exits_and_stops_quietly_on_a_closed_pipe():
    ask = [sys.executable, "-m", "qa", "ask", "Who led the Normans?", "--context", PASSAGE, "--model", "fast"]
    result = subprocess.run([*ask, "--json"], capture_output=True, text=True)  # output flushed before the quick exit
    assert result.returncode == 0 and json.loads(result.stdout)["answer"] in ROLLO
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # the answer waits in the buffer
    for output, env in ((["--json"], None), ([], None), (["--json"], buffered)):  # print's or rich's output
        reader = subprocess.Popen([*ask, *output], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        reader.stdout.close()  # nobody reads the answer
        assert reader.wait() == 141 and b"Traceback" not in reader.stderr.read()


def _load_raising(error: Exception):
    def load(cls, path=None, bfloat16=False, abstain_above=None):
        raise error

    return classmethod(load)


def _load_returning(make, precisions: list | None = None):
    """A stand-in for ``Reader.load`` that returns ``make()``, noting each call's ``bfloat16`` in ``precisions``."""
    def load(cls, path=None, bfloat16=None, abstain_above=None):
        if precisions is not None:
            precisions.append(bfloat16)
        return make()

    return classmethod(load)


def test_an_internal_error_is_not_reported_as_a_user_mistake(monkeypatch, capsys):
    monkeypatch.setattr("qa.reader.Reader.load", _load_raising(ValueError("internal")))
    with pytest.raises(ValueError, match="internal"):
        main(["ask", "Who led the Normans?", "--context", PASSAGE])
    assert "qa: error" not in capsys.readouterr().err


def test_a_user_error_from_below_the_cli_is_one_line(monkeypatch, capsys):
    from qa.errors import UserError

    monkeypatch.setattr("qa.reader.Reader.load", _load_raising(UserError("model.safetensors: damaged")))
    assert main(["ask", "Who led the Normans?", "--context", PASSAGE]) == 2
    assert capsys.readouterr().err == "qa: error: model.safetensors: damaged\n"


@pytest.mark.parametrize(
    "recipe, message",
    [
        (None, "recipe.json: no such file"),
        ("{not json", "recipe.json: not valid JSON"),
        ("[1, 2]", "recipe.json: expected a JSON object"),
        ('{"training": {"epochz": 3}}', "recipe.json: unknown training settings: epochz"),
        ('{"training": {"decay_fraction": 2}}', "decay_fraction must be between 0 and 1, not 2"),
        ('{"training": {"epochs": "x"}}', "recipe.json: training settings: epochs must be int, not 'x'"),
        ('{"training": {"max_minutes": -1}}', "recipe.json: max_minutes must not be negative, not -1"),
        ('{"model": {"hidden": "x"}}', "recipe.json: model settings: hidden must be int, not 'x'"),
        ('{"model": {"contextual": false}}', "recipe.json: model settings: contextual must be str, not False"),
        ('{"training": {"model": {}}}', 'the model settings go under the recipe\'s "model" key'),
    ],
)
def test_a_bad_training_recipe_is_named_in_one_line(tmp_path, capsys, recipe, message):
    path = tmp_path / "recipe.json"
    if recipe is not None:
        path.write_text(recipe, encoding="utf-8")
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("device", ["tpu", "cuda"])
def test_an_unusable_device_is_a_user_error(device, monkeypatch):
    from qa.distributed import pick_device
    from qa.errors import UserError

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(UserError, match="unknown device 'tpu'" if device == "tpu" else "no CUDA GPU"):
        pick_device(device)


def test_an_unknown_optimizer_is_a_user_error():
    import torch

    from qa.errors import UserError
    from qa.train import TrainConfig, make_optimizer

    with pytest.raises(UserError, match="unknown optimizer 'adam'"):
        make_optimizer(TrainConfig(optimizer="adam"), torch.nn.Linear(2, 2))


class _FakeReader:
    """Stands in for a model in ``qa chat``: answers with an internal error, as a bug would."""

    attention_view = "self"

    def predict(self, question, passage, **options):
        raise ValueError("internal")


class _AnsweringReader:
    """Stands in for a model: answers "Rollo" with a hand-made heat, and records its options."""

    options: dict = {}
    attention_view = "question"  # the model's own view: shown unless the user names another
    precision = "float32"

    def predict(self, question, passage, force=False, **options):
        import numpy as np

        from qa.answers import Answer, Heat, Prediction

        _AnsweringReader.options = options
        start = passage.index("Rollo")
        heat = Heat(options["attention_view"], [start], [start + 5], np.ones(1, dtype=np.float32), LEVEL_RATIOS)
        return Prediction("q", [Answer("Rollo", start, start + 5, 0.9, heat=heat if options["with_attention"] else None)])


def _chat(monkeypatch, lines: str, reader=_FakeReader):
    import io

    from qa.chat import Chat

    monkeypatch.setattr("qa.reader.Reader.load", _load_returning(reader))
    monkeypatch.setattr("sys.stdin", io.StringIO(lines))
    return Chat(None, None)


def test_chat_reports_a_bad_line_and_goes_on(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    chat = _chat(monkeypatch, ":frobnicate\n:file\n:file .\n:attention sideways\n:file none.txt\n:show\n:quit\n")
    chat.context = Context.of_passage("Warsaw is in Poland.")
    assert chat.run() == 0
    out, err = capsys.readouterr()
    messages = ("unknown command :frobnicate", ":file needs a PATH", "no documents found in .",
                "unknown attention view 'sideways'", "none.txt: no such file or folder")
    lines = err.splitlines()  # on stderr, one line each
    assert len(lines) == len(messages) and all(line.startswith(f"qa: error: {m}") for line, m in zip(lines, messages))
    assert "Warsaw is in Poland." in out  # :show ran after the errors


def test_chat_cycles_the_views_and_writes_the_last_answer_as_html(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    page = tmp_path / "rollo.html"
    cycle = ":attention\n" * len(ATTENTION_CHOICES)
    chat = _chat(monkeypatch, f"{PASSAGE}\n.\n:html rollo.html\n:attention none\nWho led them?\n{cycle}"
                              f":html\n:html rollo.html\n:html .\n:help\n", _AnsweringReader)
    assert chat.attention == "question"
    assert chat.run() == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == ["qa: error: no answer to write yet: ask a question first",
                                "qa: error: :html needs a FILE", "qa: error: .: is a folder, not a file"]
    assert _AnsweringReader.options == {"with_attention": False, "attention_view": "none"}
    views = re.findall(r"^attention view: (\S+)", out, re.M)
    assert views == ["none", *ATTENTION_CHOICES] and ATTENTION_CHOICES == (*VIEWS, "none")  # round to none again
    assert "Rollo" in page.read_text(encoding="utf-8") and "wrote rollo.html" in out
    assert ":html FILE" in out  # documented in :help


def test_chat_lets_an_internal_error_propagate(monkeypatch):
    chat = _chat(monkeypatch, "Warsaw is in Poland.\n.\nWhere is Warsaw?\n")
    with pytest.raises(ValueError, match="internal"):
        chat.run()


def test_chat_without_a_passage_exits_2(monkeypatch, capsys):
    assert _chat(monkeypatch, "\n").run() == 2
    assert capsys.readouterr().err == "qa: error: no passage given\n"


def test_a_passage_over_the_limit_is_refused(monkeypatch, capsys):
    monkeypatch.setattr("qa.inputs.MAX_PASSAGE_CHARS", 10)
    assert main(["ask", "Who?", "--context", "x" * 11]) == 2
    assert "the passage has 11 characters; the limit is 10" in capsys.readouterr().err


def test_ask_writes_the_rendering_as_html(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("qa.reader.Reader.load", _load_returning(_AnsweringReader))
    page = tmp_path / "answer.html"
    assert main(["ask", "Who led the Normans?", "--context", PASSAGE, "--attention", "self", "--html", str(page)]) == 0
    assert _AnsweringReader.options == {"top_k": 1, "with_attention": True, "attention_view": "self"}
    assert _answer_line(capsys.readouterr().out) in ROLLO
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "self view" in html and "background-color: #ffaf00" in html


@pytest.mark.parametrize("where, message", [("missing/answer.html", "missing/answer.html: the folder"),
                                            (".", ".: is a folder, not a file")])
def test_an_unwritable_html_file_is_one_line_and_the_answer_is_still_printed(monkeypatch, tmp_path, capsys, where,
                                                                           message):
    monkeypatch.setattr("qa.reader.Reader.load", _load_returning(_AnsweringReader))
    monkeypatch.chdir(tmp_path)
    assert main(["ask", "Who led the Normans?", "--context", PASSAGE, "--html", where]) == 2
    captured = capsys.readouterr()
    assert _answer_line(captured.out) == "Rollo"
    assert message in captured.err and len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, view", [([], None), (["--attention", "general"], "general"),
                                        (["--attention", "none"], "none")])
def test_evaluate_passes_the_attention_view(monkeypatch, argv, view):
    calls = []
    monkeypatch.setattr("qa.evaluation.run_evaluation", lambda *args, **kwargs: calls.append(kwargs))
    assert main(["evaluate", "dev.json", *argv]) == 0
    assert calls[0]["attention_view"] == view


def test_ask_json_when_the_reader_abstains(abstaining_model, capsys):
    argv = ["ask", "Which NFL team represented the AFC at Super Bowl 50?", "--context",
            "The 1973 oil crisis began when OAPEC proclaimed an oil embargo.", "--model", str(abstaining_model), "--json"]
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["answer"] is None and payload["abstained"] is True and payload["no_answer_probability"] > 0.99
    recorded = json.loads((abstaining_model / "config.json").read_text())["calibration"]["no_answer_threshold"]
    assert payload["no_answer_threshold"] == recorded
    assert payload["best_guess"]["answer"] and payload["answers"] == []
    assert main(argv + ["--force"]) == 0
    forced = json.loads(capsys.readouterr().out)
    assert forced["answer"] == payload["best_guess"]["answer"] and forced["abstained"] is False
    assert main(argv + ["--abstain-above", "1.0"]) == 0  # no probability is above 1: it answers
    moved = json.loads(capsys.readouterr().out)
    assert moved["no_answer_threshold"] == 1.0 and moved["answer"] == payload["best_guess"]["answer"]
    assert main(argv[:-1]) == 0
    shown = capsys.readouterr().out
    assert "does not seem to answer" in shown and f"Best guess: {payload['best_guess']['answer']}" in shown
    assert f"(threshold {recorded:.3g})" in shown


@pytest.mark.parametrize("command", ["ask", "chat"])
@pytest.mark.parametrize("argv, bfloat16", [([], None), (["--bfloat16"], True), (["--float32"], False)])
def test_ask_and_chat_pass_the_precision_to_the_reader(monkeypatch, command, argv, bfloat16):
    import io

    loads = []
    monkeypatch.setattr("qa.reader.Reader.load", _load_returning(_AnsweringReader, loads))
    monkeypatch.setattr("sys.stdin", io.StringIO(":quit\n"))
    question = ["Who led the Normans?"] if command == "ask" else []
    assert main([command, *question, "--context", PASSAGE, *argv]) == 0
    assert loads == [bfloat16]


def test_an_argument_that_is_not_utf8_is_a_one_line_error():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "qa", "ask", "Who founded it?", "--context",
                             b"Alice \xff founded it.", "--model", "fast"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == "qa: error: the passage is not valid Unicode text (is it UTF-8?)\n"


def test_the_html_page_never_replaces_a_document_being_read(monkeypatch, tmp_path, capsys):
    import io

    from qa.chat import Chat

    document = tmp_path / "normans.txt"
    document.write_text(PASSAGE)
    assert main(["ask", "Who led the Normans?", str(document), "--html", str(document)]) == 2
    assert "is one of the files being read" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("Who led the Normans?\n:html normans.txt\n"))
    assert Chat("fast", Context.of_paths(["normans.txt"])).run() == 0
    assert "normans.txt: is one of the files being read" in capsys.readouterr().err
    assert document.read_text() == PASSAGE


def test_paths_may_follow_the_options(tmp_path, capsys, monkeypatch):
    document = tmp_path / "normans.txt"
    document.write_text(PASSAGE)
    assert main(["ask", "Who led the Normans?", "--model", "fast", str(document), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["documents"] == [str(document)]
    with pytest.raises(SystemExit):
        main(["ask", "Who led the Normans?", "--top-k", "2", str(document), "--frobnicate"])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-normans.txt").write_text(PASSAGE)  # after "--", a PATH may begin with "-"
    assert main(["ask", "Who led the Normans?", "--model", "fast", "--json", "--", "-normans.txt"]) == 0
    assert json.loads(capsys.readouterr().out)["documents"] == ["-normans.txt"]


def test_closed_or_endless_standard_input_is_one_line(monkeypatch, capsys):
    import io

    monkeypatch.setattr("qa.reader.Reader.load", _load_returning(_AnsweringReader))
    monkeypatch.setattr("sys.stdin", None)  # closed before qa started (qa ask Q <&-)
    assert main(["ask", "Who led the Normans?"]) == 2
    assert "give documents as PATH..., or the passage" in capsys.readouterr().err
    assert main(["chat"]) == 2
    assert "standard input is closed" in capsys.readouterr().err

    class Endless(io.TextIOBase):  # yes | qa ask Q: never ends, so reading it all would fill the memory
        def isatty(self):
            return False

        def read(self, size=-1):
            assert size > 0, "read to the end of an endless stream"
            return "y\n" * (size // 2 + 1)

    monkeypatch.setattr("sys.stdin", Endless())
    assert main(["ask", "Who led the Normans?"]) == 2
    assert "the passage on standard input has over 1,000,000 characters" in capsys.readouterr().err


def test_chat_refuses_a_passage_over_the_limit_and_reads_on_after_it(monkeypatch, capsys):
    monkeypatch.setattr("qa.chat.MAX_PASSAGE_CHARS", 50)
    chat = _chat(monkeypatch, ":passage\n" + "long line of the passage\n" * 5 + ".\n:passage\nRollo led the Normans.\n.\n"
                 "Who led the Normans?\n", _AnsweringReader)
    chat.context = Context.of_passage("Warsaw is in Poland.")
    assert chat.run() == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == ["qa: error: the passage has over 50 characters; the limit is 50"]
    assert "Rollo" in out  # the lines after the refused passage were not read as questions


def test_evaluate_refuses_an_output_that_is_a_file_before_reading(squad_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("qa.reader.Reader.load", _load_raising(AssertionError("the model was loaded")))
    taken = tmp_path / "taken"
    taken.write_text("keep")
    for command in (["evaluate", str(squad_file), "--output"], ["calibrate", str(squad_file), "--model", "fast", "--output"]):
        for output in (taken, taken / "below"):
            assert main([*command, str(output)]) == 2
            assert "is a file, not a folder" in capsys.readouterr().err
    assert taken.read_text() == "keep"


def test_predictions_take_no_model_options(squad_file, tmp_path, capsys):
    answers = tmp_path / "answers.json"
    answers.write_text("{}")
    assert main(["evaluate", str(squad_file), "--predictions", str(answers), "--model", "nowhere"]) == 2
    assert "--predictions scores a file of answers: it takes no model" in capsys.readouterr().err


def test_an_error_that_is_not_the_output_s_keeps_its_traceback(monkeypatch):
    monkeypatch.setattr("qa.reader.Reader.load", _load_raising(FileNotFoundError(2, "No such file", "weights")))
    with pytest.raises(FileNotFoundError):  # a bug, shown whole, not "cannot write the output"
        main(["ask", "Who led the Normans?", "--context", PASSAGE])


def test_chat_reads_an_endless_line_as_one_line(monkeypatch, capsys):
    monkeypatch.setattr("qa.chat.MAX_PASSAGE_CHARS", 20)
    chat = _chat(monkeypatch, "Who led the Normans into Normandy in 911 :quit\nWho led the Normans?\n", _AnsweringReader)
    chat.context = Context.of_passage(PASSAGE)
    assert chat.run() == 0
    out = capsys.readouterr().out
    assert out.count("Rollo") >= 2 and out.count("Question:") == 2  # the long line once, cut; ":quit" not a command
