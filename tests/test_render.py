"""The terminal rendering follows the attention weights it is given."""
import json

import numpy as np
from rich.console import Console

from qa.answers import AttentionMaps
from qa.reader import Answer
from qa.render import (
    ANSWER_STYLE,
    LEVEL_STYLES,
    merge_spans,
    passage_region,
    passage_text,
    render,
    result_dict,
    token_weights,
    visible,
)
from qa.tokenize import tokenize

CONTEXT = "Warsaw is the capital of Poland and stands on the Vistula River ."
QUESTION = "What river does Warsaw stand on ?"


def _maps(general_rows: dict[int, int]) -> AttentionMaps:
    """Maps where passage token i attends fully to question token general_rows[i] (uniform otherwise)."""
    passage, question = tokenize(CONTEXT), tokenize(QUESTION)
    p, q = len(passage), len(question)
    general = np.full((p, q), 1.0 / q)
    for i, j in general_rows.items():
        general[i] = 0.0
        general[i, j] = 1.0
    question_weights = np.zeros(q)
    question_weights[1] = 1.0  # the summary is all on "river"
    return AttentionMaps(list(zip(passage.words, passage.starts, passage.ends)),
                         list(zip(question.words, question.starts, question.ends)),
                         general, np.full((p, p), 1.0 / p), question_weights)


def _answer(maps) -> Answer:
    start = CONTEXT.index("Vistula River")
    return Answer("Vistula River", start, start + len("Vistula River"), 0.9, maps)


def test_highlighted_spans_follow_the_weights():
    # passage tokens 10 and 11 ("Vistula River") attend fully to "river"; token 0 ("Warsaw") to "Warsaw".
    maps = _maps({10: 1, 11: 1, 0: 3})
    weights = token_weights(maps, "general", range(10, 12))
    spans = merge_spans(maps, weights, CONTEXT)
    assert spans[0].text == "Vistula River"
    assert all(s.text != "Warsaw" for s in spans)  # its question word has no summary weight
    assert abs(weights.sum() - 1) < 1e-9


def test_heavier_tokens_get_stronger_styles_and_the_answer_its_style():
    maps = _maps({10: 1, 11: 1, 3: 1})
    weights = token_weights(maps, "general", range(10, 12))
    weights[3] = weights[10] * 0.7  # "capital": above the highlight threshold, lighter than "Vistula"
    answer = _answer(maps)
    text = passage_text(CONTEXT, answer, maps, weights, (0, len(CONTEXT)), markers=False)
    styles = {CONTEXT[span.start : span.end]: str(span.style) for span in text.spans}
    assert LEVEL_STYLES.index(styles["capital"]) < LEVEL_STYLES.index(styles["Vistula"])
    assert styles["Vistula River"] == ANSWER_STYLE


def test_recorded_rendering_shows_answer_weights_and_labels():
    maps = _maps({10: 1, 11: 1})
    console = Console(record=True, width=100, force_terminal=True, color_system="truecolor")
    render(console, QUESTION, CONTEXT, [_answer(maps)], "general")
    plain = console.export_text(clear=False)
    assert "Answer: Vistula River" in plain and "score 0.900" in plain
    assert "most attended spans" in plain and "Vistula River" in plain
    styled = console.export_text(styles=True)
    assert "\x1b[" in styled  # colours on a terminal


def test_plain_console_marks_the_answer_without_colour():
    console = Console(record=True, width=100, no_color=True)
    render(console, QUESTION, CONTEXT, [_answer(_maps({10: 1}))], "none")
    assert "[[Vistula River]]" in console.export_text()


def test_json_result_offsets_slice_the_passage():
    payload = json.loads(json.dumps(result_dict(QUESTION, CONTEXT, [_answer(_maps({10: 1, 11: 1}))], "general")))
    assert CONTEXT[payload["start"] : payload["end"]] == payload["answer"]
    assert all(CONTEXT[s["start"] : s["end"]] == s["text"] for s in payload["attended_spans"])


def test_long_passages_show_the_region_around_the_answer():
    context = "word " * 2000 + "Vistula River" + " word" * 2000
    start = context.index("Vistula")
    first, last = passage_region(context, start, start + 13, limit=200)
    assert first <= start and start + 13 <= last and last - first < 300


def test_passage_markup_and_terminal_escapes_are_shown_not_obeyed():
    context = "The box [/] holds [bold]gold[/bold]\x1b[31m and\r red\x07 text."
    question = "What does the [red]box[/red] hold?\x1b]0;title\x07"
    passage, asked = tokenize(context), tokenize(question)
    p, q = len(passage), len(asked)
    maps = AttentionMaps(list(zip(passage.words, passage.starts, passage.ends)),
                         list(zip(asked.words, asked.starts, asked.ends)),
                         np.full((p, q), 1.0 / q), np.full((p, p), 1.0 / p), np.full(q, 1.0 / q))
    start = context.index("gold")
    answers = [Answer("gold", start, start + 4, 0.9, maps), Answer(context[8:11], 8, 11, 0.1, maps)]
    for colour in (True, False):
        console = Console(record=True, width=100, force_terminal=colour, no_color=not colour)
        render(console, question, context, answers, "general")
        shown = console.export_text()
        assert "[/] holds [bold]" in shown and "[red]box[/red]" in shown  # markup printed literally
        assert "\u241b[31m" in shown and "\u241b]0;title\u2407" in shown  # ESC and BEL as control pictures
        assert not any(c in shown for c in "\x1b\x07\r")
    assert visible(context)[start : start + 4] == "gold" and len(visible(context)) == len(context)


def test_a_two_token_passage_still_shows_where_it_looked():
    context, question = "Vistula River", "What river ?"
    passage, asked = tokenize(context), tokenize(question)
    general = np.array([[0.2, 0.2, 0.6], [0.1, 0.8, 0.1]])  # "River" attends to "river"
    maps = AttentionMaps(list(zip(passage.words, passage.starts, passage.ends)),
                         list(zip(asked.words, asked.starts, asked.ends)), general, None, np.array([0.0, 1.0, 0.0]))
    weights = token_weights(maps, "general", range(0, 2))
    assert weights.max() < 2 / len(weights)  # the old 2 / P threshold highlighted nothing here
    spans = merge_spans(maps, weights, context)
    assert spans and spans[0].text == "River"
    payload = result_dict(question, context, [Answer(context, 0, len(context), 0.9, maps)], "general")
    assert payload["attended_spans"][0]["text"] == "River"
