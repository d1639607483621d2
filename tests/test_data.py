import json

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
        ({"data": [{"paragraphs": [{"context": "abc", "qas": [{"id": "x"}]}]}]}, "question 0: missing"),
        ({"data": [{"paragraphs": [{"context": "abc", "qas": [
            {"id": "x", "question": "q?", "answers": [{"text": "zz", "answer_start": 0}]}]}]}]}, "not at answer_start"),
        ({"data": [{"paragraphs": [{"context": "abc", "qas": [
            {"id": "x", "question": "q?", "answers": []}, {"id": "x", "question": "q?", "answers": []}]}]}]},
         "duplicate id 'x'"),
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
    from collections import Counter

    skipped = Counter()
    records = load_squad(str(path), lenient=True, skipped=skipped)
    assert records["id"] == ["g"]
    assert sum(skipped.values()) == 3 and skipped["duplicate id"] == 1
