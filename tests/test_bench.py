"""The benchmark scripts' own logic (no model runs): dev pair selection, the table dump, and that the
scripts which share code import each other."""
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))

import bench  # noqa: E402


def prepared(paragraphs: list[tuple[str, int, list[str]]]):
    """A stand-in for ``qa.features.PreparedSet``: (article, tokens, questions) per paragraph."""
    examples = [SimpleNamespace(context_index=i, question_text=q) for i, (_, _, qs) in enumerate(paragraphs) for q in qs]
    return SimpleNamespace(contexts=[f"{title} paragraph {i}" for i, (title, _, _) in enumerate(paragraphs)],
                           context_tokens=[[None] * tokens for _, tokens, _ in paragraphs],
                           titles=[title for title, _, _ in paragraphs], examples=examples)


DATA = prepared([("A", 150, ["a0", "a0b"]), ("A", 400, ["a1"]), ("A", 500, ["a2"]), ("A", 130, ["a3"]),
                 ("B", 600, ["b0"]), ("B", 300, ["b1"]), ("B", 160, ["b2"])])


def test_paragraphs_are_grouped_by_article_with_their_questions():
    articles = bench.dev_articles(DATA)
    assert [len(article) for article in articles] == [4, 3]
    assert [p.question for p in articles[0][0]] == ["a0", "a0b"]
    assert articles[1][2][0] == bench.Pair("b2", "B paragraph 6", 160)


def test_short_pairs_take_one_question_per_paragraph_in_range():
    articles = bench.dev_articles(DATA)
    assert [p.question for p in bench.short_pairs(articles, 3)] == ["a0", "a3", "b2"]
    with pytest.raises(ValueError, match="only 3 paragraphs"):
        bench.short_pairs(articles, 4)


def test_grouped_pairs_join_consecutive_paragraphs_of_one_article_within_bounds():
    articles = bench.dev_articles(DATA)
    pairs = bench.grouped_pairs(articles, 2, lambda p: p.tokens, (900, 1100))
    assert pairs[0] == bench.Pair("a1", "A paragraph 0\n\nA paragraph 1\n\nA paragraph 2", 1050)
    assert pairs[1].passage == "B paragraph 4\n\nB paragraph 5" and pairs[1].question == "b1"
    with pytest.raises(ValueError, match="only 2 runs"):
        bench.grouped_pairs(articles, 3, lambda p: p.tokens, (900, 1100))


def test_markdown_table_has_a_row_per_figure_and_a_column_per_model():
    report = {"command": "python scripts/bench.py", "date": "today", "machine": {"processor": "x86_64", "cpu_count": 2},
              "latency_ms_p50": 12.34, "dev_eval_s_bfloat16": None}
    lines = bench.markdown_table({"fast": report, "default": report}).splitlines()
    assert lines[2] == "| figure | fast | default |"
    assert "| latency p50, ~150-token passage | 12.3 ms | 12.3 ms |" in lines
    assert "| dev evaluation, --bfloat16 | not run | not run |" in lines
    assert len(lines) == 4 + len(bench.ROWS)


def test_the_moved_measurements_import_where_their_users_look():
    import bench_recurrence
    import bench_terminal
    import bench_training

    assert bench_recurrence.training_speed is bench_training.training_speed
    assert callable(bench_terminal.timed_process) and callable(bench_terminal.cold_start)


def test_every_ablation_row_changes_the_recipe_and_the_default_row_says_what_it_is():
    import json

    import ablation

    recipe = json.loads((Path(__file__).parent.parent / "pipelines" / "fast.json").read_text())
    assert (recipe["model"]["score"], recipe["model"]["gate"]) == ("dot", False)  # what the rows below follow from
    rows = {name: description for name, description, *_ in ablation.rows_to_run(recipe["model"])}
    assert rows["default"].startswith("dot score, gate off")
    assert "bilinear" in rows and "gate" in rows and "dot" not in rows and "no-gate" not in rows
    older = {name for name, *_ in ablation.rows_to_run({**recipe["model"], "score": "bilinear", "gate": True})}
    assert {"dot", "no-gate"} <= older and not {"bilinear", "gate"} & older
