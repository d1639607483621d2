"""The prepared-features cache is keyed by everything that decides its content."""
import copy
import json

import pytest

from conftest import squad_payload
from qa.cli import main
from qa.data import load_squad
from qa.features import dataset_key, prepare


def _with_other_answers(payload: dict) -> dict:
    """The same articles, passages, questions and ids, with different gold answers."""
    changed = copy.deepcopy(payload)
    for article in changed["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                text = paragraph["context"].split()[0]
                qa["answers"] = [{"text": text, "answer_start": 0}]
    return changed


def test_files_that_differ_only_in_answers_are_prepared_and_scored_apart(tmp_path):
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    first.write_text(json.dumps(squad_payload()))
    second.write_text(json.dumps(_with_other_answers(squad_payload())))
    records_first, records_second = load_squad(str(first)), load_squad(str(second))
    assert dataset_key(records_first) != dataset_key(records_second)
    prepare(records_first)  # fills the cache
    again = prepare(records_second)
    assert [e.answers for e in again.examples] == list(records_second["answers"])
    assert {e.answer_span for e in again.examples} == {(0, 0)}

    # scoring the same predictions against each file gives each file's own score
    predictions = tmp_path / "predictions.json"
    predictions.write_text(json.dumps({qa["id"]: qa["answers"][0]["text"] for a in squad_payload()["data"]
                                       for p in a["paragraphs"] for qa in p["qas"]}))
    for path, f1 in ((first, 100.0), (second, None)):
        out = tmp_path / path.stem
        assert main(["evaluate", str(path), "--predictions", str(predictions), "--output", str(out)]) == 0
        scored = json.loads((out / "metrics.json").read_text())["f1"]
        assert scored == f1 if f1 is not None else scored < 50


def test_the_key_follows_the_tokenizer_versions(squad_file, monkeypatch):
    import importlib.metadata

    records = load_squad(str(squad_file))
    key = dataset_key(records)
    real_version = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "0.0-other" if name == "spacy-lookups-data" else real_version(name))
    assert dataset_key(records) != key


@pytest.mark.parametrize("column", ["id", "context", "question"])
def test_the_key_follows_every_text_column(squad_file, column):
    records = load_squad(str(squad_file))
    changed = records.map(lambda row, i: {column: row[column] + " " if i == 0 else row[column]}, with_indices=True)
    assert dataset_key(changed) != dataset_key(records)
