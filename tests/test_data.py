import json
from collections import Counter
from pathlib import Path

import pytest

from qa.data import DataError, load_squad
from qa.features import prepare


def test_local_file_becomes_flat_records(squad_file):
    records = load_squad(str(squad_file))
    assert records.column_names == ["id", "title", "context", "question", "answers"]
    assert len(records) == 8
    first = records[0]
    assert first["question"] == "Who led the Normans?"
    start = first["answers"]["answer_start"][0]
    assert first["context"][start : start + 5] == "Rollo"


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"version": "1.1"}, "'data' list"),
        ({"data": [{"paragraphs": [{"qas": []}]}]}, "article 0 paragraph 0: missing or empty 'context'"),
        ({"data": [{"paragraphs": [{"context": "abc", "qas": [{"id": "x"}]}]}]}, "question 0 \\(id 'x'\\): missing"),
        ({"data": [{"paragraphs": [{"context": "abc", "qas": [
            {"id": "x", "question": "q?", "answers": [{"text": "zz", "answer_start": 0}]}]}]}]}, "not at answer_start"),
        ({"data": [{"paragraphs": [{"context": "abc", "qas": [
            {"id": "x", "question": "q?", "answers": []}, {"id": "x", "question": "q?", "answers": []}]}]}]},
         "duplicate id 'x'"),
        ({"data": [{"paragraphs": [{"context": "abc", "qas": None}]}]}, "paragraph 0: 'qas' is not a list"),
        ({"data": [{"title": ["a"], "paragraphs": []}]}, "article 0: a 'title' that is not text"),
        ({"data": [{"paragraphs": [{"context": "abc", "qas": [
            {"id": "x", "question": "q?", "answers": [{"text": " ", "answer_start": 0}]}]}]}]}, "empty answer text"),
        ({"data": [{"paragraphs": [{"context": "led by Rollo.", "qas": [  # -6 would slice "Rollo" from the end
            {"id": "x", "question": "q?", "answers": [{"text": "Rollo", "answer_start": -6}]}]}]}]},
         "'Rollo' is not at answer_start -6"),
    ],
)
def test_malformed_files_name_the_record(tmp_path, payload, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(DataError, match=message):
        load_squad(str(path))


def test_truncated_json_and_missing_file(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text('{"data": [')
    with pytest.raises(DataError, match="not a UTF-8 JSON file"):
        load_squad(str(path))
    with pytest.raises(DataError, match="no such file"):
        load_squad(str(tmp_path / "missing.json"))


def test_prepare_maps_answers_to_token_spans_and_caches(squad_file):
    records = load_squad(str(squad_file))
    data = prepare(records)
    assert data.stats["passages"] == 3 and data.stats["misaligned_answers"] == 0
    for example in data.examples:
        tokens = data.context_tokens[example.context_index]
        first, last = example.answer_span
        text = data.contexts[example.context_index][tokens.starts[first] : tokens.ends[last]]
        assert text == example.answers["text"][0]
    again = prepare(records)  # from the on-disk cache
    assert [e.answer_span for e in again.examples] == [e.answer_span for e in data.examples]


def test_preparing_in_two_processes_gives_the_same_tokens(squad_file):
    records = load_squad(str(squad_file))
    alone, parallel = prepare(records, cache=False), prepare(records, cache=False, workers=2)
    assert parallel.context_tokens == alone.context_tokens
    assert [e.question for e in parallel.examples] == [e.question for e in alone.examples]
    assert [e.answer_span for e in parallel.examples] == [e.answer_span for e in alone.examples]


def test_repeated_answer_is_realigned_next_to_the_question_words(tmp_path):
    filler = "Many other things happened in the region during those busy years of growth and change. " * 3
    context = "In 1900 the bridge opened. " + filler + "The tower was finished in 1900 by the city engineers."
    payload = {"data": [{"title": "t", "paragraphs": [{"context": context, "qas": [
        {"id": "a", "question": "When was the tower finished?",
         "answers": [{"text": "1900", "answer_start": context.index("1900")}]}]}]}]}
    path = tmp_path / "repeat.json"
    path.write_text(json.dumps(payload))
    data = prepare(load_squad(str(path)))
    tokens = data.context_tokens[0]
    first, _ = data.examples[0].answer_span
    assert tokens.starts[first] == context.rindex("1900")
    assert data.stats["repeated_answers"] == 1


def test_lenient_loading_skips_and_counts_bad_records(tmp_path):
    good = {"id": "g", "question": "q?", "answers": [{"text": "abc", "answer_start": 0}]}
    moved = {"id": "m", "question": "q?", "answers": [{"text": "zz", "answer_start": 0}]}
    payload = {"data": [{"paragraphs": [{"context": "abc", "qas": [good, moved, dict(good)]}, {"context": " "}]}]}
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(payload))
    skipped = Counter()
    records = load_squad(str(path), lenient=True, skipped=skipped)
    assert records["id"] == ["g"]
    assert skipped == {"answer not at its answer_start": 1, "duplicate id": 1, "missing or empty 'context'": 1}


def _questions_file(tmp_path, qas: list[dict]) -> str:
    path = tmp_path / "ids.json"
    path.write_text(json.dumps({"data": [{"paragraphs": [{"context": "abc", "qas": qas}]}]}))
    return str(path)


def _question(qid) -> dict:
    return {"id": qid, "question": "q?", "answers": [{"text": "abc", "answer_start": 0}]}


def test_numeric_ids_become_text(tmp_path):
    records = load_squad(_questions_file(tmp_path, [_question(5), _question("x"), _question(12345678901234567890)]))
    assert records["id"] == ["5", "x", "12345678901234567890"]


@pytest.mark.parametrize("first, second", [(5, "5"), ("5", 5)])
def test_an_id_that_collides_once_converted_is_named(tmp_path, first, second):
    path = _questions_file(tmp_path, [_question(first), _question(second)])
    with pytest.raises(DataError, match=r"question 1 \(id .+\): duplicate id '5' \(after converting the number 5 to text\)"):
        load_squad(path)
    skipped = Counter()
    assert load_squad(path, lenient=True, skipped=skipped)["id"] == ["5"]
    assert skipped == {"duplicate id": 1}


def test_the_same_number_twice_is_a_plain_duplicate(tmp_path):
    with pytest.raises(DataError, match=r"duplicate id '7'$"):
        load_squad(_questions_file(tmp_path, [_question(7), _question(7)]))


@pytest.mark.parametrize("qid", [True, False, 1.5, None, ["a"]])
def test_booleans_and_other_non_ids_are_missing_ids(tmp_path, qid):
    path = _questions_file(tmp_path, [_question(qid), _question("ok")])
    with pytest.raises(DataError, match="question 0: missing 'id' or 'question'"):
        load_squad(path)
    skipped = Counter()
    assert load_squad(path, lenient=True, skipped=skipped)["id"] == ["ok"]
    assert skipped == {"missing 'id' or 'question'": 1}


def test_a_boolean_answer_start_is_not_a_position(tmp_path):
    bad = {"id": "b", "question": "q?", "answers": [{"text": "bc", "answer_start": True}]}
    with pytest.raises(DataError, match="answer without 'text' and 'answer_start'"):
        load_squad(_questions_file(tmp_path, [bad]))


def test_squad_v2_records_load_and_contradictions_are_named(tmp_path):
    from qa.data import DataError, has_unanswerable

    context = "Warsaw is in Poland."
    good = [{"id": "a", "question": "Where is Warsaw?", "answers": [{"text": "Poland", "answer_start": 13}],
             "is_impossible": False},
            {"id": "b", "question": "Who founded Warsaw?", "answers": [], "is_impossible": True}]
    bad = {"id": "c", "question": "When?", "answers": [], "is_impossible": False}
    path = tmp_path / "v2.json"
    path.write_text(json.dumps({"data": [{"paragraphs": [{"context": context, "qas": good}]}]}))
    records = load_squad(str(path))
    assert has_unanswerable(records) and list(records["answers"])[1] == {"text": [], "answer_start": []}
    assert not has_unanswerable(records.select([0]))
    path.write_text(json.dumps({"data": [{"paragraphs": [{"context": context, "qas": good + [bad]}]}]}))
    with pytest.raises(DataError, match="question 2 \\(id 'c'\\): is_impossible is False but the question has 0 answers"):
        load_squad(str(path))
    skipped = Counter()
    assert len(load_squad(str(path), lenient=True, skipped=skipped)) == 2
    assert skipped == {"is_impossible contradicts the answers": 1}


def test_odd_but_valid_files_load_and_hostile_ones_are_one_error(tmp_path):
    path = tmp_path / "odd.json"
    payload = {"data": [{"title": None, "paragraphs": [{"context": "abc", "qas": [_question("x")]}]}]}
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(payload).encode())  # a byte-order mark, as Windows tools write
    records = load_squad(str(path))
    assert records["title"] == [""] and records["id"] == ["x"]
    path.write_text(json.dumps({"data": [{"paragraphs": [{"context": "abc", "qas": [_question("x\ud800")]}]}]}))
    with pytest.raises(DataError, match="not valid Unicode"):
        load_squad(str(path))
    path.write_text('{"data": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(DataError, match="nested too deeply"):
        load_squad(str(path))


def test_an_interrupted_cache_write_leaves_no_broken_cache(squad_file, monkeypatch):
    import datasets

    records = load_squad(str(squad_file))
    save = datasets.Dataset.save_to_disk
    calls = []

    def interrupted(self, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # killed while writing the examples: their folder holds part of a shard
            Path(path).mkdir(parents=True)
            (Path(path) / "data-00000-of-00001.arrow").write_bytes(b"part of a shard")
            raise KeyboardInterrupt
        save(self, path, *args, **kwargs)

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare(records)
    monkeypatch.setattr(datasets.Dataset, "save_to_disk", save)
    first = prepare(records)  # prepared again, not read from a half-saved folder
    second = prepare(records)  # from the cache
    assert [e.answer_span for e in first.examples] == [e.answer_span for e in second.examples]


def test_a_cache_save_killed_midway_is_swept_and_a_finished_one_kept(squad_file, tmp_path, monkeypatch):
    import subprocess
    import sys

    from qa.features import cache_root, dataset_key

    records = load_squad(str(squad_file))
    folder = cache_root() / "features" / dataset_key(records)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = folder.with_name(f"{folder.name}.partial-{dead.stdout.strip()}")  # a process that has ended
    (stale / "examples").mkdir(parents=True)
    prepare(records)
    assert not stale.exists() and (folder / "examples").exists()
