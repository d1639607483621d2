"""The rendering shows the heat it is given on the absolute scale of ``qa.heat.levels``, with and
without colour, the evidence with its labels, the document strip, and an escaped HTML page."""
import io
import json
import re

import numpy as np
import pytest
from rich.cells import cell_len
from rich.console import Console
from rich.style import Style

from qa.answers import Answer, DocumentHeat, Evidence, Heat, Prediction
from qa.heat import LEVEL_RATIOS
from qa.render import (
    ANSWER_STYLE,
    BLOCKS,
    HEAT_STYLES,
    document_strip,
    export_html,
    passage_region,
    render,
    result_dict,
    visible,
)
from qa.tokenize import tokenize

CONTEXT = "Warsaw is the capital of Poland and stands on the Vistula River ."
QUESTION = "What river does Warsaw stand on ?"
ANSWER = "Vistula River"


def _heat(context: str, ratios: dict[str, float]) -> Heat:
    """The question view over ``context``'s tokens: every token named at its ratio to uniform, the
    rest of the weight spread evenly over the other tokens."""
    tokens = tokenize(context)
    words = np.array(tokens.words)
    ratio = np.zeros(len(words))
    for word, value in ratios.items():
        ratio[words == word] = value
    named = np.isin(words, list(ratios))
    ratio[~named] = (len(words) - ratio.sum()) / (~named).sum()
    assert (ratio >= 0).all()
    return Heat("question", list(tokens.starts), list(tokens.ends), (ratio / len(words)).astype(np.float32), LEVEL_RATIOS)


def _answer(heat: Heat | None = None, evidence: Evidence | None = None, context: str = CONTEXT, **extra) -> Answer:
    start = context.index(ANSWER)
    return Answer(ANSWER, start, start + len(ANSWER), 0.9, heat=heat, evidence=evidence, **extra)


def _recorded(width: int = 100) -> Console:
    return Console(record=True, force_terminal=True, color_system="truecolor", width=width)


def _opening(style: str) -> str:
    """The escape sequence that switches ``style`` on."""
    return Style.parse(style).render("x").split("x")[0]


def test_each_token_gets_the_style_of_its_level_and_the_answer_its_own():
    console = _recorded()
    render(console, QUESTION, CONTEXT, Prediction("q", [_answer(_heat(CONTEXT, {"capital": 3.5, "Poland": 1.2, "Warsaw": 1.7}))]), explain=True)
    styled = console.export_text(styles=True, clear=False)
    assert Style.parse(HEAT_STYLES[2]).render("capital") in styled  # 3.5x uniform: level 3 (>= 3x)
    assert Style.parse(HEAT_STYLES[0]).render("Warsaw") in styled  # 1.7x: level 1
    assert " of Poland and stands on the " in styled  # 1.2x: below level 1, unstyled
    assert Style.parse(ANSWER_STYLE).render(ANSWER) in styled
    plain = console.export_text()
    assert "Answer: Vistula River   score 0.900" in plain
    assert "≥1.5x uniform" in plain and "≥5x" in plain and "question view" in plain  # the legend
    assert re.search(r"│ capital +│ +14-21 │ +0\.269 │ +3\.5 │", plain)  # weight 3.5 / 13 tokens, 3.5x
    assert re.search(r"│ Warsaw +│ +0-6 │ +0\.131 │ +1\.7 │", plain) and "│ Poland" not in plain


def test_a_model_with_flatter_heat_shades_and_labels_at_its_own_levels():
    from dataclasses import replace

    heat = replace(_heat(CONTEXT, {"capital": 3.5, "Poland": 1.2, "Warsaw": 1.7}), level_ratios=(1.15, 1.3, 1.6, 3.0))
    console = _recorded()
    render(console, QUESTION, CONTEXT, Prediction("q", [_answer(heat)]))
    styled = console.export_text(styles=True, clear=False)
    assert Style.parse(HEAT_STYLES[3]).render("capital") in styled  # 3.5x: level 4 (>= 3x) at these levels
    assert Style.parse(HEAT_STYLES[2]).render("Warsaw") in styled  # 1.7x: level 3 (>= 1.6x)
    assert Style.parse(HEAT_STYLES[0]).render("Poland") in styled  # 1.2x: level 1 (>= 1.15x)
    plain = console.export_text()
    assert "≥1.15x uniform" in plain and "≥1.6x" in plain and "≥1.5x" not in plain  # the legend says which


def test_a_flat_heat_highlights_nothing():
    console = _recorded()
    render(console, QUESTION, CONTEXT, Prediction("q", [_answer(_heat(CONTEXT, {}))]), explain=True)
    styled = console.export_text(styles=True)
    passage = styled[styled.index("╭") : styled.index("╰")]
    assert not any(_opening(style) in passage for style in HEAT_STYLES)
    assert _opening(ANSWER_STYLE) in passage
    assert "most attended spans" not in styled and "the question view is flat here" in styled


@pytest.mark.parametrize("console", [Console(record=True, width=100, no_color=True, force_terminal=True),
                                     Console(record=True, width=100, force_terminal=False)],
                         ids=["NO_COLOR", "piped"])
def test_without_colour_the_heat_is_a_line_of_blocks_under_its_characters(console):
    render(console, QUESTION, CONTEXT, Prediction("q", [_answer(_heat(CONTEXT, {"capital": 3.5, "Poland": 1.2, "Warsaw": 1.7}))]), explain=True)
    shown = console.export_text(styles=True)
    assert "\x1b[" not in shown and "[[Vistula River]]" in shown
    lines = shown.splitlines()
    [row] = [i for i, line in enumerate(lines) if "capital" in line and "[[" in line]
    text, blocks = lines[row], lines[row + 1]
    at = text.index("capital")
    assert blocks[at : at + len("capital")] == BLOCKS[3] * len("capital")  # 3.5x: level 3
    at = text.index("Warsaw")
    assert blocks[at : at + len("Warsaw")] == BLOCKS[1] * len("Warsaw")  # 1.7x: level 1
    assert set(blocks[text.index("Poland") : text.index("Poland") + 6]) == {" "}  # 1.2x: nothing


def test_blocks_stay_under_their_characters_when_the_passage_wraps():
    context = "aaa bbb capital ccc 電電 capital ddd\teee " * 3 + CONTEXT
    console = Console(record=True, width=24, no_color=True)
    render(console, QUESTION, context, Prediction("q", [_answer(_heat(context, {"capital": 1.7}), context=context)]))
    lines = console.export_text().splitlines()
    pairs = [(text, blocks) for text, blocks in zip(lines, lines[1:]) if BLOCKS[1] in blocks and "≥" not in blocks
             and "heat (" not in blocks]  # not the key's lines
    assert len(pairs) == 7  # one line of blocks under each line holding "capital"
    for text, blocks in pairs:
        columns = "".join(c + "\0" * (cell_len(c) - 1) for c in text)  # wide characters (電) take two columns
        assert cell_len(text) <= 24 and cell_len(blocks) <= 24
        assert "".join(c for c, b in zip(columns, blocks) if b == BLOCKS[1]) == "capital"


def test_the_evidence_tables_label_every_weight_with_its_tokens():
    start = CONTEXT.index("stands")
    evidence = Evidence([("stands", start, start + 6, 0.412), ("Warsaw", 0, 6, 0.1)], [("river", 5, 10, 0.75)])
    console = Console(record=True, width=100, no_color=True)
    render(console, QUESTION, CONTEXT, Prediction("q", [_answer(_heat(CONTEXT, {}), evidence)]), explain=True)
    shown = console.export_text()
    assert "the answer drew on" in shown and "question words the answer aligned with" in shown
    assert re.search(r"│ stands +│ +36-42 │ +0\.412 │", shown)
    assert re.search(r"│ Warsaw +│ +0-6 │ +0\.100 │", shown)
    assert re.search(r"│ river +│ +5-10 │ +0\.750 │", shown)
    assert "Normandy" not in shown


def test_json_carries_the_heat_and_the_evidence():
    evidence = Evidence([("Warsaw", 0, 6, 0.3)], [("river", 5, 10, 0.75)])
    heat = _heat(CONTEXT, {"capital": 9.0})
    payload = json.loads(json.dumps(result_dict(QUESTION, CONTEXT, Prediction("q", [_answer(heat, evidence)]), "question")))
    assert CONTEXT[payload["start"] : payload["end"]] == payload["answer"] == ANSWER
    assert payload["heat"]["view"] == "question" and len(payload["heat"]["tokens"]) == len(heat.weights)
    assert payload["evidence"]["question"] == [{"text": "river", "start": 5, "end": 10, "weight": 0.75}]
    [span] = payload["attended_spans"]
    assert span["text"] == "capital" == CONTEXT[span["start"] : span["end"]] and span["max_ratio"] == 9.0
    abstained = result_dict(QUESTION, CONTEXT, Prediction("q", []), "question")
    assert abstained["answer"] is None and abstained["answers"] == [] and "heat" not in abstained


def test_an_abstention_shows_the_best_guess_dimmed_and_json_gives_null():
    guess = _answer(_heat(CONTEXT, {}))
    prediction = Prediction("q", [guess], no_answer=0.83, abstained=True, threshold=0.069)
    console = _recorded(width=140)
    render(console, QUESTION, CONTEXT, prediction)
    styled = console.export_text(styles=True, clear=False)
    shown = console.export_text()
    assert "does not seem to answer" in shown and "no-answer probability 0.830 (threshold 0.069)" in shown
    assert _opening("dim") + f"Best guess: {ANSWER}" in styled
    payload = result_dict(QUESTION, CONTEXT, prediction, "self")
    assert payload["answer"] is None and payload["abstained"] is True and payload["answers"] == []
    assert payload["no_answer_probability"] == 0.83 and payload["no_answer_threshold"] == 0.069
    assert payload["best_guess"] == {"answer": ANSWER, "score": guess.score, "start": guess.start, "end": guess.end}
    answered = result_dict(QUESTION, CONTEXT, Prediction("q", [guess], no_answer=0.1), "self")
    assert answered["answer"] == ANSWER and answered["no_answer_probability"] == 0.1 and "best_guess" not in answered


def test_an_abstention_is_said():
    console = Console(record=True, width=100)
    render(console, QUESTION, CONTEXT, Prediction("q", []))
    assert console.export_text().strip() == "the reader found no answer"


def _document() -> tuple[str, Answer]:
    """A passage of about 11,000 characters read in windows: the answer's window around character
    5,000, and the hottest token of the document about 10,000 characters in."""
    filler = "word " * 1000
    context = filler + CONTEXT + " " + filler + "capital " + "word " * 200
    tokens = tokenize(context)
    ratio = np.ones(len(tokens), dtype=np.float32)
    ratio[tokens.words.index("capital", 1100)] = 30.0  # the second "capital", far past the answer
    ratio[tokens.words.index("Warsaw")] = 1.7
    inside = [i for i, (s, e) in enumerate(zip(tokens.starts, tokens.ends)) if s >= 4500 and e <= 5600]
    window = Heat("question", [tokens.starts[i] for i in inside], [tokens.ends[i] for i in inside],
                  np.full(len(inside), 1 / len(inside), dtype=np.float32), LEVEL_RATIOS)
    start = context.index(ANSWER)
    answer = Answer(ANSWER, start, start + len(ANSWER), 0.9, heat=window,
                    document_heat=DocumentHeat("question", list(tokens.starts), list(tokens.ends), ratio, LEVEL_RATIOS))
    return context, answer


def test_the_document_strip_shows_where_the_attention_lies():
    context, answer = _document()
    strip, column = document_strip(answer, len(context), 50)
    assert strip[context.index("capital", 6000) * 50 // len(context)] == BLOCKS[4] and strip.count(BLOCKS[4]) == 1
    assert column == answer.start * 50 // len(context) and strip[column] == BLOCKS[1]  # "Warsaw", 1.7x, by the answer
    assert set(strip) == {" ", BLOCKS[1], BLOCKS[4]}
    console = Console(record=True, width=80, no_color=True)
    render(console, QUESTION, context, Prediction("q", [answer]), explain=True)
    shown = console.export_text()
    lines = shown.splitlines()
    [row] = [i for i, line in enumerate(lines) if line.strip() == "▲"]
    assert lines[row].index("▲") == answer.start * 80 // len(context)
    assert lines[row - 1].rstrip() == document_strip(answer, len(context), 80)[0].rstrip()
    assert "where the reader looked across the document" in shown
    first, last = answer.heat.starts[0], answer.heat.ends[-1]  # the window, under 1,200 characters, is shown whole
    title = f"passage, characters {first:,}-{last:,} of {len(context):,}, the answer's window {first:,}-{last:,}"
    assert title in shown
    answer.document_heat = None
    console = Console(record=True, width=80, no_color=True)
    render(console, QUESTION, context, Prediction("q", [answer]))
    assert "across the document" not in console.export_text()


def test_the_html_page_is_coloured_and_the_passage_escaped(tmp_path, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")  # about terminals: the page keeps its colours
    context = "<script>alert(1)</script> & [bold]markup[/] say: the Vistula River flows."
    path = tmp_path / "answer.html"
    export_html(str(path), "What <b>river</b>?", context, Prediction("q", [_answer(_heat(context, {"flows": 3.0}), context=context)]),
                width=100)
    page = path.read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; [bold]markup[/]" in page
    assert "<script>alert" not in page and "<b>river" not in page
    assert "background-color: #ffaf00" in page and "background-color: #afd7ff" in page  # answer, level 1
    assert [p.name for p in tmp_path.iterdir()] == ["answer.html"]  # no temporary file left


def test_long_passages_show_the_region_around_the_answer():
    context = "word " * 2000 + "Vistula River" + " word" * 2000
    start = context.index("Vistula")
    first, last = passage_region(context, start, start + 13, limit=200)
    assert first <= start and start + 13 <= last and last - first < 300
    assert passage_region(context, start, start + 13, within=(start - 50, start + 60)) == (start - 50, start + 60)


def test_passage_markup_and_terminal_escapes_are_shown_not_obeyed():
    context = "The box [/] holds [bold]gold[/bold]\x1b[31m and\r red\x07 text."
    question = "What does the [red]box[/red] hold?\x1b]0;title\x07"
    start = context.index("gold")
    answers = [Answer("gold", start, start + 4, 0.9, heat=_heat(context, {"holds": 4.0})),
               Answer(context[8:11], 8, 11, 0.1)]
    for colour in (True, False):
        console = Console(record=True, width=100, force_terminal=colour, no_color=not colour)
        render(console, question, context, Prediction("q", answers))
        shown = console.export_text()
        assert "[/] holds [bold]" in shown and "[red]box[/red]" in shown  # markup printed literally
        assert "\u241b[31m" in shown and "\u241b]0;title\u2407" in shown  # ESC and BEL as control pictures
        assert not any(c in shown for c in "\x1b\x07\r")
    assert visible(context)[start : start + 4] == "gold" and len(visible(context)) == len(context)


@pytest.mark.parametrize("width", [3, 5, 12])
def test_a_terminal_a_few_columns_wide_still_gets_the_whole_rendering(width):
    start = CONTEXT.index("stands")
    evidence = Evidence([("stands", start, start + 6, 0.412)], [("river", 5, 10, 0.75)])
    for colour in (True, False):
        console = Console(record=True, width=width, force_terminal=colour, no_color=not colour)
        render(console, QUESTION, CONTEXT, Prediction("q", [_answer(_heat(CONTEXT, {"Vistula": 8.0}), evidence)]),
               explain=True)
        shown = console.export_text()  # rich shortens the tables' cells to fit; the rendering is whole
        assert "Vistula" in shown and "5-10" in shown and shown.count("┃") >= 6  # the passage, both tables
        assert console.width == width  # the caller's console is left as it was
    measuring = Console(record=True, file=io.StringIO())  # no width given: rich measures on each call
    render(measuring, QUESTION, CONTEXT, Prediction("q", [_answer(_heat(CONTEXT, {}))]))
    assert measuring._width is None  # a terminal resized later is still followed (qa chat keeps one console)
