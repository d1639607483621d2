"""Small SQuAD-format fixtures written by the tests themselves."""
import json

import pytest

PASSAGES = [
    {
        "title": "Normans",
        "context": "The Normans were the people who in the 10th and 11th centuries gave their name to "
                   "Normandy, a region in France. They were led by Rollo, a Viking chieftain.",
        "qas": [
            ("n1", "Who led the Normans?", "Rollo"),
            ("n2", "In what country is Normandy located?", "France"),
            ("n3", "In which centuries did the Normans name Normandy?", "10th and 11th centuries"),
        ],
    },
    {
        "title": "Warsaw",
        "context": "Warsaw is the capital and largest city of Poland. It stands on the Vistula River, "
                   "roughly 260 kilometres from the Baltic Sea.",
        "qas": [
            ("w1", "What river does Warsaw stand on?", "Vistula River"),
            ("w2", "How far is Warsaw from the Baltic Sea?", "260 kilometres"),
        ],
    },
    {
        "title": "Oxygen",
        "context": "Oxygen is a chemical element with symbol O and atomic number 8. It was discovered "
                   "by Carl Wilhelm Scheele in Uppsala in 1773.",
        "qas": [
            ("o1", "What is the atomic number of oxygen?", "8"),
            ("o2", "Who discovered oxygen?", "Carl Wilhelm Scheele"),
            ("o3", "When was oxygen discovered?", "1773"),
        ],
    },
]


def squad_payload() -> dict:
    """The fixture passages in the official nested SQuAD v1.1 layout."""
    data = []
    for passage in PASSAGES:
        context = passage["context"]
        qas = [
            {"id": qid, "question": question, "answers": [{"text": text, "answer_start": context.index(text)}]}
            for qid, question, text in passage["qas"]
        ]
        data.append({"title": passage["title"], "paragraphs": [{"context": context, "qas": qas}]})
    return {"version": "1.1", "data": data}


@pytest.fixture
def squad_file(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(squad_payload()))
    return path


@pytest.fixture(autouse=True)
def feature_cache(tmp_path, monkeypatch):
    """Keep prepared-feature caches inside each test's folder."""
    monkeypatch.setenv("QA_CACHE", str(tmp_path / "cache"))
