"""Terminal rendering: the answer inside its passage, the attended spans highlighted by weight.

The highlighted weights are the model's own attention weights from the forward pass that
produced the answer (``AttentionMaps``), aggregated per passage token by ``ATTENTION_RULES``;
contiguous tokens at or above twice the uniform weight are merged into spans. Text from the user
is shown through ``visible``, so a passage can neither carry rich markup nor terminal escape codes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from qa.answers import AttentionMaps
from qa.errors import UserError
from qa.tokenize import STOP_WORDS

ATTENTION_RULES = {
    "general": "passage token i gets sum_j q_j * a_ij: its general attention a_ij over question word j, "
               "weighted by the question self-attention q_j, normalised over the passage",
    "self": "passage token i gets the mean self-attention that the answer's tokens pay to it",
}
ANSWER_STYLE = "bold black on green3"
LEVEL_STYLES = ("on grey23", "on grey35", "on dark_goldenrod", "black on gold3", "black on yellow1")
# One character for one, so offsets still hold: C0 controls become their Unicode control pictures
# (ESC shows as U+241B), carriage returns spaces, DEL U+2421 and C1 controls U+FFFD.
_VISIBLE = {**{c: 0x2400 + c for c in range(0x20) if c not in (9, 10)}, 13: " ", 0x7F: 0x2421,
            **{c: 0xFFFD for c in range(0x80, 0xA0)}}


def visible(text: str) -> str:
    """``text`` with control characters replaced one for one by visible ones (tabs and newlines kept)."""
    return text.translate(_VISIBLE)


@dataclass
class Highlight:
    """An attended passage span: characters ``[start, end)``, its tokens' summed weight."""

    start: int
    end: int
    weight: float
    text: str


def token_weights(maps: AttentionMaps, mode: str, answer_tokens: range) -> np.ndarray:
    """(P,) weight per passage token under ``ATTENTION_RULES[mode]``; sums to 1."""
    if mode == "general":
        weights = maps.general @ maps.question  # (P, Q) @ (Q,) -> (P,)
    elif mode == "self":
        if maps.self_attention is None:
            raise UserError("this model has no passage self-attention to show")
        weights = maps.self_attention[list(answer_tokens)].mean(0)  # (P,)
    else:
        raise UserError(f"unknown attention view {mode!r}; choose general, self or none")
    return weights / max(float(weights.sum()), 1e-12)


def answer_token_range(maps: AttentionMaps, start: int, end: int) -> range:
    """Indices of the passage tokens inside characters ``[start, end)``."""
    inside = [i for i, (_, s, e) in enumerate(maps.passage_tokens) if s >= start and e <= end]
    return range(inside[0], inside[-1] + 1) if inside else range(0)


def highlight_threshold(weights: np.ndarray) -> float:
    """The weight a passage token needs to be highlighted: twice the uniform 1 / P, but never
    above the heaviest token's, so a passage of one or two tokens still shows where it looked."""
    return min(2.0 / max(len(weights), 1), float(weights.max(initial=0.0)))


def merge_spans(maps: AttentionMaps, weights: np.ndarray, context: str) -> list[Highlight]:
    """Contiguous tokens with weight at or above ``highlight_threshold`` merged into spans, heaviest first."""
    threshold = highlight_threshold(weights)
    spans: list[Highlight] = []
    run: list[int] = []
    for i in list(range(len(weights))) + [None]:
        if i is not None and weights[i] >= threshold:
            run.append(i)
            continue
        if run:
            start, end = maps.passage_tokens[run[0]][1], maps.passage_tokens[run[-1]][2]
            spans.append(Highlight(start, end, float(weights[run].sum()), context[start:end]))
            run = []
    return sorted(spans, key=lambda h: -h.weight)


def question_alignments(maps: AttentionMaps, context: str) -> list[tuple[str, str, float]]:
    """For each content word of the question: the passage token that attends to it most, and that weight."""
    rows = []
    for j, (word, _, _) in enumerate(maps.question_tokens):
        if word.lower() in STOP_WORDS or not any(c.isalnum() for c in word):
            continue
        i = int(maps.general[:, j].argmax())
        _, start, end = maps.passage_tokens[i]
        rows.append((word, context[start:end], float(maps.general[i, j])))
    return rows


def level(weight: float, highest: float) -> int:
    """Style level 0..4 of a token weight relative to the heaviest token."""
    return min(len(LEVEL_STYLES) - 1, int(len(LEVEL_STYLES) * weight / max(highest, 1e-12)))


def passage_text(context: str, answer, maps: AttentionMaps | None, weights: np.ndarray | None,
                 region: tuple[int, int], markers: bool) -> Text:
    """The passage region as rich ``Text``: attended tokens styled by weight, the answer on top."""
    first, last = region
    text = Text(visible(context[first:last]))
    if maps is not None and weights is not None:
        threshold, highest = highlight_threshold(weights), float(weights.max())
        for (_, s, e), w in zip(maps.passage_tokens, weights):
            if w >= threshold and s >= first and e <= last:
                text.stylize(LEVEL_STYLES[level(float(w), highest)], s - first, e - first)
    text.stylize(ANSWER_STYLE, answer.start - first, answer.end - first)
    if markers:  # plain-text fallback: mark the answer where styles cannot be seen
        text = Text.assemble(text[: answer.start - first], "[[", text[answer.start - first : answer.end - first],
                             "]]", text[answer.end - first :])
    return text


def passage_region(context: str, start: int, end: int, limit: int = 1200) -> tuple[int, int]:
    """Characters to show: the whole passage if short, else ``limit`` characters around the answer."""
    if len(context) <= limit:
        return 0, len(context)
    middle = (start + end) // 2
    first = max(0, min(middle - limit // 2, len(context) - limit))
    last = min(len(context), first + limit)
    while first > 0 and not context[first - 1].isspace() and first > middle - limit:
        first -= 1
    while last < len(context) and not context[last].isspace() and last < middle + limit:
        last += 1
    return first, last


def result_dict(question: str, context: str, answers: list, mode: str) -> dict:
    """Machine-readable result: answers with offsets and scores, and the top attended spans."""
    best = answers[0]
    payload = {"question": question, "answer": best.text, "start": best.start, "end": best.end, "score": best.score,
               "answers": [a.to_dict() for a in answers], "attention": mode}
    if mode != "none" and best.attention is not None:
        weights = token_weights(best.attention, mode, answer_token_range(best.attention, best.start, best.end))
        payload["attended_spans"] = [
            {"text": h.text, "start": h.start, "end": h.end, "weight": round(h.weight, 4)}
            for h in merge_spans(best.attention, weights, context)[:8]
        ]
    return payload


def render(console: Console, question: str, context: str, answers: list, mode: str = "general") -> None:
    """Print the answer and score, the passage with answer and attention, and the attention tables."""
    if not answers:
        console.print("[yellow]no answer found[/]")
        return
    best = answers[0]
    maps = best.attention if mode != "none" else None
    weights = None
    if maps is not None:
        weights = token_weights(maps, mode, answer_token_range(maps, best.start, best.end))
    region = passage_region(context, best.start, best.end)
    plain = console.no_color or not console.is_terminal
    header = Text.assemble(("Question: ", "bold"), visible(question), "\n", ("Answer: ", "bold"),
                           (visible(best.text), ANSWER_STYLE if not plain else "bold"),
                           f"   score {best.score:.3f}   characters {best.start}-{best.end}")
    where = "" if region == (0, len(context)) else f" (characters {region[0]:,}-{region[1]:,} of {len(context):,})"
    parts = [header, Panel(passage_text(context, best, maps, weights, region, plain),
                           title=f"passage{where}", title_align="left")]
    if len(answers) > 1:
        alternatives = Table(title="alternatives", title_justify="left")
        for column in ("#", "answer", "score", "characters"):
            alternatives.add_column(column, justify="right" if column != "answer" else "left")
        for rank, answer in enumerate(answers[1:], 2):
            alternatives.add_row(str(rank), Text(visible(answer.text)), f"{answer.score:.3f}", f"{answer.start}-{answer.end}")
        parts.append(alternatives)
    if maps is not None:
        spans = Table(title=f"most attended spans ({mode} attention)", title_justify="left", min_width=40)
        spans.add_column("span")
        spans.add_column("characters", justify="right")
        spans.add_column("weight", justify="right")
        highlights = merge_spans(maps, weights, context)[:8]
        for highlight in highlights:
            style = "" if plain else LEVEL_STYLES[level(highlight.weight, highlights[0].weight)]
            spans.add_row(Text(visible(highlight.text), style), f"{highlight.start}-{highlight.end}", f"{highlight.weight:.3f}")
        parts += [spans, Text(f"weights: {ATTENTION_RULES[mode]}", style="dim")]
        aligned = Table(title="question words -> passage token attending to them most", title_justify="left",
                        min_width=40)
        for column in ("question word", "passage token", "weight"):
            aligned.add_column(column, justify="right" if column == "weight" else "left")
        for word, phrase, weight in question_alignments(maps, context):
            aligned.add_row(Text(visible(word)), Text(visible(phrase)), f"{weight:.3f}")
        parts.append(aligned)
    console.print(Group(*parts))
