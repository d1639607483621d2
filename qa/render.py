"""Terminal and HTML rendering: the answer in its passage, the passage shaded by the answer's heat.

The heat is the answer's ``Heat`` (``qa.heat``): one attention view of the forward pass as a
distribution over the passage tokens of the answer's window, on an absolute scale. A token's level
is how many of the heat's ``level_ratios`` (multiples of the uniform weight, fitted per model and
view so that each level marks the same share of tokens on dev; 1.5, 2, 3, 5 for a model that
records none) its weight reaches, so a flat distribution shows nothing. In colour, levels 1-4 are
a light-to-dark blue background and the answer is black on orange (safe for colour-blind
readers); without colour (``NO_COLOR`` or output that is not a terminal) nothing is styled, the
answer is marked ``[[ ]]`` and a line of blocks `` ▂▄▆█`` under each line of the passage gives the
level of the characters above it.

An answer read from a collection of documents names its source (path, page or heading) above the
window. By default the rendering stops there, readable at a glance: the answer, its source, the
shaded window and the key to the levels. With ``explain``: the view's rule, the hottest spans, the
evidence (the passage tokens and question words the answer's own tokens attended to, each weight
labelled with its tokens) and, for a passage read in several windows, a one-line strip of where in
the whole document the attention lies. ``export_html``
writes the same rendering as a standalone HTML page. Text from the user is shown through
``visible``, so a passage can carry neither rich markup nor terminal escape codes.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import numpy as np
from rich.cells import cell_len
from rich.console import Console, Group
from rich.panel import Panel
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from qa.answers import Answer, Evidence, Heat, Prediction, token_levels
from qa.errors import UserError
from qa.heat import VIEWS

ATTENTION_CHOICES = (*VIEWS, "none")  # the values of ``--attention`` and chat's ``:attention``
ANSWER_STYLE = "bold black on color(214)"  # orange
# levels 1-4: light to dark blue
HEAT_STYLES = ("black on color(153)", "black on color(75)", "white on color(26)", "bold white on color(18)")
BLOCKS = " ▂▄▆█"  # levels 0-4 without colour
SPAN_ROWS = 8
# One character for one, so offsets still hold: C0 controls become their Unicode control pictures
# (ESC shows as U+241B), carriage returns spaces, DEL U+2421 and C1 controls U+FFFD.
_VISIBLE = {**{c: 0x2400 + c for c in range(0x20) if c not in (9, 10)}, 13: " ", 0x7F: 0x2421,
            **{c: 0xFFFD for c in range(0x80, 0xA0)}}


def visible(text: str) -> str:
    """``text`` with control characters replaced one for one by visible ones (tabs and newlines kept)."""
    return text.translate(_VISIBLE)


@dataclass
class Span:
    """Contiguous passage tokens of level 1 or more: characters ``[start, end)``, their summed weight
    and their highest ratio to the uniform weight."""

    start: int
    end: int
    weight: float
    ratio: float

    def to_dict(self, context: str) -> dict:
        return {"text": context[self.start : self.end], "start": self.start, "end": self.end,
                "weight": round(self.weight, 4), "max_ratio": round(self.ratio, 2)}


def hot_spans(heat: Heat) -> list[Span]:
    """Runs of contiguous tokens with level >= 1, heaviest first."""
    ratio, hot = heat.ratio, heat.levels() > 0
    spans = []
    for is_hot, run in groupby(range(len(hot)), key=lambda i: bool(hot[i])):
        if is_hot:
            run = list(run)
            spans.append(Span(int(heat.starts[run[0]]), int(heat.ends[run[-1]]), float(heat.weights[run].sum()),
                              float(ratio[run].max())))
    return sorted(spans, key=lambda s: -s.weight)


def _heat_style(ratio: float, heat: Heat) -> str:
    return HEAT_STYLES[int(token_levels(ratio, heat.level_ratios)) - 1]


def character_levels(heat: Heat | None, region: tuple[int, int]) -> np.ndarray:
    """Level 0..4 of each character of the passage region: that of the token holding it."""
    first, last = region
    shown = np.zeros(last - first, dtype=np.int64)
    if heat is not None:
        for start, end, level in zip(heat.starts, heat.ends, heat.levels()):
            if level and start < last and end > first:
                shown[max(start, first) - first : min(end, last) - first] = level
    return shown


def passage_text(context: str, answer: Answer, region: tuple[int, int]) -> Text:
    """The passage region as rich ``Text``: tokens shaded by heat level, the answer in its style on top."""
    first, last = region
    text = Text(visible(context[first:last]))
    for level, run in groupby(enumerate(character_levels(answer.heat, region)), key=lambda c: int(c[1])):
        run = list(run)
        if level:
            text.stylize(HEAT_STYLES[level - 1], run[0][0], run[-1][0] + 1)
    text.stylize(ANSWER_STYLE, answer.start - first, answer.end - first)
    return text


def _columns(cells: list[tuple[str, int]]) -> int:
    return sum(cell_len(c) for c, _ in cells)


def _wrap(cells: list[tuple[str, int]], width: int) -> list[list[tuple[str, int]]]:
    """(character, level) cells in lines of at most ``width`` terminal columns, broken at spaces
    where possible (the spaces at a break are dropped) and at newlines."""
    paragraphs: list[list[tuple[str, int]]] = [[]]
    for cell in cells:
        if cell[0] == "\n":
            paragraphs.append([])
        else:
            paragraphs[-1].append(cell)
    lines: list[list[tuple[str, int]]] = []
    for paragraph in paragraphs:
        line: list[tuple[str, int]] = []
        used = 0
        for is_space, chunk in groupby(paragraph, key=lambda c: c[0] == " "):
            chunk = list(chunk)
            size = _columns(chunk)
            if used + size > width and line:
                lines.append(line)
                line, used = [], 0
                if is_space:
                    continue
            for piece in [chunk] if size <= width else [[cell] for cell in chunk]:  # a word wider than a line is cut
                step = _columns(piece)
                if used + step > width and line:
                    lines.append(line)
                    line, used = [], 0
                line += piece
                used += step
        lines.append(line)
    return lines


def plain_passage(context: str, answer: Answer, region: tuple[int, int], width: int) -> Text:
    """The passage region without styles: the answer marked ``[[ ]]``, wrapped at ``width`` columns,
    each line followed by its line of heat blocks when any character on it has a level."""
    first, last = region
    shown = visible(context[first:last]).replace("\t", " ")
    level_of = character_levels(answer.heat, region)
    a, b = answer.start - first, answer.end - first
    cells = ([*zip(shown[:a], level_of[:a]), ("[", 0), ("[", 0), *zip(shown[a:b], level_of[a:b]), ("]", 0), ("]", 0),
              *zip(shown[b:], level_of[b:])])
    rows = []
    for line in _wrap(cells, width):
        rows.append("".join(c for c, _ in line))
        blocks = "".join(BLOCKS[level] * cell_len(c) for c, level in line).rstrip()
        if blocks:
            rows.append(blocks)
    return Text("\n".join(rows), no_wrap=True)


def passage_region(context: str, start: int, end: int, limit: int = 1200,
                   within: tuple[int, int] | None = None) -> tuple[int, int]:
    """Characters to show: all of ``within`` (default: the passage) if short, else ``limit``
    characters of it around the answer at ``[start, end)``."""
    low, high = within or (0, len(context))
    if high - low <= limit:
        return low, high
    middle = (start + end) // 2
    first = max(low, min(middle - limit // 2, high - limit))
    last = min(high, first + limit)
    while first > low and not context[first - 1].isspace() and first > middle - limit:
        first -= 1
    while last < high and not context[last].isspace() and last < middle + limit:
        last += 1
    return first, last


def document_strip(answer: Answer, length: int, width: int) -> tuple[str, int]:
    """The document's ``length`` characters in ``width`` equal buckets, each the block of the highest
    level of ``answer.document_heat`` among the tokens starting in it; and the answer's bucket."""
    heat = answer.document_heat
    buckets = np.zeros(width, dtype=np.int64)
    np.maximum.at(buckets, np.asarray(heat.starts, dtype=np.int64) * width // length, heat.levels())
    return "".join(BLOCKS[level] for level in buckets), answer.start * width // length


def result_dict(question: str, context: str, prediction: Prediction, mode: str) -> dict:
    """Machine-readable result: answers with offsets and scores (``answer`` null when the reader
    abstains or found none), the no-answer probability and the threshold it abstains above (null for
    a model without the option), the best guess when it abstained, and the ``mode`` asked for; with
    attention, the top answer's heat (its view and each token's weight), its hottest spans and its evidence."""
    answers = prediction.answers
    payload = {"question": question, "answer": None, "start": None, "end": None, "score": None,
               "no_answer_probability": prediction.no_answer, "no_answer_threshold": prediction.threshold,
               "abstained": prediction.abstained,
               "answers": [] if prediction.abstained else [a.to_dict() for a in answers], "attention": mode}
    if prediction.abstained and answers:
        payload["best_guess"] = answers[0].to_dict()
    if not answers or prediction.abstained:
        return payload
    best = answers[0]
    payload.update(answer=best.text, start=best.start, end=best.end, score=best.score)
    if best.source is not None:
        payload["source"] = best.source.to_dict()
    if best.heat is not None:
        payload["heat"] = best.heat.to_dict()
        payload["attended_spans"] = [s.to_dict(context) for s in hot_spans(best.heat)[:SPAN_ROWS]]
    if best.evidence is not None:
        payload["evidence"] = best.evidence.to_dict()
    return payload


def _legend(heat: Heat, plain: bool, explain: bool) -> Text:
    """What each level of the shading means; with ``explain``, the view's rule first."""
    rule = f": {VIEWS[heat.view]}\nlevels: " if explain else ": "
    legend = Text.assemble(("heat", "bold"), f" ({heat.view} view){rule}")
    for k, ratio in enumerate(heat.level_ratios, 1):
        label = f"≥{ratio:g}x uniform" if k == 1 else f"≥{ratio:g}x"
        swatch = Text(f"{BLOCKS[k]} {label}  ") if plain else Text.assemble((f" {label} ", HEAT_STYLES[k - 1]), " ")
        legend.append_text(swatch)
    answer = Text("  answer: [[ ]]") if plain else Text.assemble("  answer: ", (" answer ", ANSWER_STYLE))
    return legend.append_text(answer)


class TerminalConsole(Console):
    """rich's ``Console`` for the answers ``qa ask`` and ``qa chat`` print: a reader that stops reading
    (``qa ask ... | head``) ends it as a ``print`` would, with ``BrokenPipeError`` (exit 141), where rich exits 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


MIN_WIDTH = 20  # columns the rendering is laid out in at least (rich's tables fail at 5)


def _evidence_tables(evidence: Evidence) -> list[Table]:
    """'The answer drew on' (passage tokens) and 'question words the answer aligned with'."""
    tables = []
    for rows, title, columns in (
        (evidence.passage, "the answer drew on", ("passage token", "characters", "self-attention")),
        (evidence.question, "question words the answer aligned with", ("question word", "characters",
                                                                        "general attention")),
    ):
        if not rows:
            continue
        table = Table(title=title, title_justify="left", min_width=40)
        for column in columns:
            table.add_column(column, justify="left" if column == columns[0] else "right")
        for token, start, end, weight in rows:
            table.add_row(Text(visible(token)), f"{start}-{end}", f"{weight:.3f}")
        tables.append(table)
    return tables


def _spans_table(heat: Heat, context: str) -> Table | Text:
    """The hottest spans of ``hot_spans`` with their weight and highest ratio, or a line saying there are none."""
    spans = hot_spans(heat)[:SPAN_ROWS]
    if not spans:
        return Text(f"no passage token reaches {heat.level_ratios[0]:g}x the uniform weight: "
                    f"the {heat.view} view is flat here")
    table = Table(title=f"most attended spans ({heat.view} view)", title_justify="left", min_width=40)
    for column in ("span", "characters", "weight", "max x uniform"):
        table.add_column(column, justify="left" if column == "span" else "right")
    for span in spans:
        table.add_row(Text(visible(context[span.start : span.end]), _heat_style(span.ratio, heat)),
                      f"{span.start}-{span.end}", f"{span.weight:.3f}", f"{span.ratio:.1f}")
    return table


def _strip_lines(answer: Answer, context: str, width: int) -> list[Text]:
    """The label, the strip and the answer's marker line of ``document_strip``."""
    strip, column = document_strip(answer, len(context), width)
    label = (f"where the reader looked across the document ({answer.document_heat.view} view, highest level "
             f"per 1/{width} of its {len(context):,} characters; ▲ the answer):")
    return [Text(label, style="bold"), Text(strip, no_wrap=True),
            Text.assemble(" " * column, ("▲", "bold color(214)"), no_wrap=True)]


def _header(question: str, prediction: Prediction, documents: int | None) -> Text:
    """The question and the answer with its score and source; when the reader abstained, that it did
    (that none of the ``documents`` seems to answer, for a collection) and the best guess, dimmed."""
    best = prediction.answers[0]
    no_answer = "" if prediction.no_answer is None else f"   no-answer probability {prediction.no_answer:.3f}"
    if prediction.no_answer is not None and prediction.threshold is not None:
        no_answer += f" (threshold {prediction.threshold:.3g})"
    start, end = (best.source.start, best.source.end) if best.source else (best.start, best.end)
    where = f"   score {best.score:.3f}   characters {start}-{end}"
    source = Text.assemble("\n", ("Source: ", "bold"), visible(str(best.source))) if best.source else Text("")
    if prediction.abstained:
        refusal = ("The passage does not seem to answer this question." if documents is None else
                   f"None of the {documents:,} documents seems to answer this question.")
        return Text.assemble(("Question: ", "bold"), visible(question), "\n", (refusal, "bold"), no_answer, "\n",
                             (f"Best guess: {visible(best.text)}{where}", "dim"), source)
    return Text.assemble(("Question: ", "bold"), visible(question), "\n", ("Answer: ", "bold"),
                         (visible(best.text), ANSWER_STYLE), where + no_answer, source)


def _paragraph(context: str, start: int, end: int) -> tuple[int, int]:
    """The characters between the blank lines around ``[start, end)``: the answer's paragraph, never
    running into another document of a collection (they are joined by blank lines)."""
    first = context.rfind("\n\n", 0, start)
    last = context.find("\n\n", end)
    return (0 if first < 0 else first + 2), (len(context) if last < 0 else last)


def _panel_title(best: Answer, context: str, region: tuple[int, int], window: tuple[int, int] | None) -> str:
    """What the panel shows: the answer's document (of a collection, whose joined offsets mean nothing to a
    reader), else the passage and, when only part of it is shown, which characters."""
    if best.source is not None:
        return visible(str(best.source))
    title = "passage"
    if region != (0, len(context)):
        title += f", characters {region[0]:,}-{region[1]:,} of {len(context):,}"
    if window:
        title += f", the answer's window {window[0]:,}-{window[1]:,}"
    return title


def _answer_parts(console: Console, question: str, context: str, prediction: Prediction, plain: bool,
                  explain: bool, documents: int | None) -> list:
    """What ``render`` prints for an answered question, in order: the header, the passage (or the answer's
    window of a document) with the answer and the heat, the legend, the document strip with ``explain``,
    the alternatives, and with ``explain`` the attended spans and the evidence tables."""
    answers = prediction.answers
    best = answers[0]
    several = best.document_heat is not None or best.source is not None
    window = (int(best.heat.starts[0]), int(best.heat.ends[-1])) if several and best.heat is not None else None
    if best.source is not None and window is None:
        window = _paragraph(context, best.start, best.end)
    region = passage_region(context, best.start, best.end, within=window)
    header = _header(question, prediction, documents)
    title = _panel_title(best, context, region, window)
    body = plain_passage(context, best, region, console.width - 4) if plain else passage_text(context, best, region)
    parts = [header, Panel(body, title=title, title_align="left")]
    if best.heat is not None:
        parts.append(_legend(best.heat, plain, explain))
    if explain and best.document_heat is not None:
        parts += _strip_lines(best, context, console.width)
    if len(answers) > 1:
        alternatives = Table(title="alternatives", title_justify="left")
        where = "source" if best.source is not None else "characters"
        for column in ("#", "answer", "score", where):
            alternatives.add_column(column, justify="left" if column in ("answer", "source") else "right")
        for rank, answer in enumerate(answers[1:], 2):
            place = visible(str(answer.source)) if answer.source is not None else f"{answer.start}-{answer.end}"
            alternatives.add_row(str(rank), Text(visible(answer.text)), f"{answer.score:.3f}", Text(place))
        parts.append(alternatives)
    if explain and best.heat is not None:
        parts.append(_spans_table(best.heat, context))
    if explain and best.evidence is not None:
        parts += _evidence_tables(best.evidence)
    return parts


class _Unstyled:
    """A renderable drawn without any style, so no escape code reaches the output."""

    def __init__(self, renderable):
        self.renderable = renderable

    def __rich_console__(self, console, options):
        yield from Segment.strip_styles(console.render(self.renderable, options))


def render(console: Console, question: str, context: str, prediction: Prediction, explain: bool = False,
           documents: int | None = None) -> None:
    """Print the answer and score (or that the reader abstained, and its best guess), its source, the
    passage with the answer and heat and the key to the levels; with ``explain``, the view's rule and
    the attention tables too. ``documents``: how many documents a collection's ``context`` joins (None: a
    passage). Without colour (``console.no_color`` or not a terminal) without any style."""
    plain = console.no_color or not console.is_terminal
    measured = console._width  # None: rich measures the terminal on each call (a resize is followed); kept so
    if console.width < MIN_WIDTH:  # a narrower terminal wraps the lines
        console.width = MIN_WIDTH
    try:
        parts = [Text("the reader found no answer")]
        if prediction.answers:
            parts = _answer_parts(console, question, context, prediction, plain, explain, documents)
        console.print(_Unstyled(Group(*parts)) if plain else Group(*parts))
    finally:
        console._width = measured


def export_html(path: str, question: str, context: str, prediction: Prediction, width: int,
                explain: bool = False, documents: int | None = None) -> None:
    """Write the coloured rendering as a standalone HTML page to ``path``, atomically; a path that
    cannot be written is a ``UserError``."""
    from qa.checkpoint import write_text

    target = Path(path)
    if target.is_dir():
        raise UserError(f"{path}: is a folder, not a file")
    if not target.parent.is_dir():
        raise UserError(f"{path}: the folder {target.parent} does not exist")
    console = Console(record=True, file=io.StringIO(), force_terminal=True, color_system="truecolor", no_color=False,
                      width=width)  # coloured even under NO_COLOR, which is about terminals
    render(console, question, context, prediction, explain, documents)
    try:
        write_text(target, console.export_html(inline_styles=True))
    except OSError as error:
        raise UserError(f"{path}: cannot write ({error.strerror})") from None
