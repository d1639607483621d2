"""The ``qa`` command: answers with the shipped model, and one-line errors for user mistakes."""
import json
import subprocess
import sys

import pytest

from qa.cli import main

PASSAGE = ("The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, "
           "a region in France. They were led by Rollo, a Viking chieftain.")


def test_ask_with_the_shipped_model_answers_from_the_passage(capsys):
    assert main(["ask", "Who led the Normans?", "--context", PASSAGE]) == 0
    out = capsys.readouterr().out
    assert "Rollo" in out


def test_ask_reads_the_passage_from_a_file(tmp_path, capsys):
    path = tmp_path / "passage.txt"
    path.write_text(PASSAGE, encoding="utf-8")
    assert main(["ask", "In what country is Normandy?", "--file", str(path), "--top-k", "2"]) == 0
    assert "France" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["ask", "   ", "--context", PASSAGE], "the question is empty"),
        (["ask", "Who?", "--context", " \n "], "the passage is empty"),
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
    path.write_bytes(b"\xff\xfe\x00\x81binary")
    assert main(["ask", "Who?", "--file", str(path)]) == 2
    assert "not a UTF-8 text file" in capsys.readouterr().err


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
