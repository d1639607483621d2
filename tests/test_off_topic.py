"""The off-topic file: every question about its own whole article, and again about another article."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))

import off_topic  # noqa: E402
from conftest import squad_payload  # noqa: E402
from qa.data import load_squad  # noqa: E402


def test_each_question_is_asked_of_its_article_and_of_one_other(tmp_path):
    payload = squad_payload()
    documents = off_topic.off_topic(payload["data"], seed=3)
    path = tmp_path / "off.json"
    path.write_text(json.dumps({"version": "v2.0", "data": documents}))
    records = load_squad(str(path))  # the official SQuAD 2.0 layout, every record valid
    asked = {q["id"]: q for a in payload["data"] for p in a["paragraphs"] for q in p["qas"]}
    assert len(records) == 2 * len(asked)
    for record in records:
        if record["id"].endswith(off_topic.SUFFIX):
            own = asked[record["id"][: -len(off_topic.SUFFIX)]]
            assert record["answers"]["text"] == [] and record["question"] == own["question"]
        else:
            for text, start in zip(record["answers"]["text"], record["answers"]["answer_start"]):
                assert record["context"][start : start + len(text)] == text  # offsets into the whole article
    titles = {record["id"]: record["title"] for record in records}
    assert all(titles[i + off_topic.SUFFIX] != titles[i] for i in asked)  # never its own article


def test_every_article_receives_one_other_articles_questions():
    for count in (2, 3, 7):
        target = off_topic.derangement(count, seed=5)
        assert sorted(target) == list(range(count)) and all(t != i for i, t in enumerate(target))
