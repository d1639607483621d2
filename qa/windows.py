"""Long passages -> overlapping token windows, and answers from all windows -> one ranked list.

A window is a slice of the passage's tokens that keeps the tokens' absolute character offsets,
so an answer found in any window is still a slice of the original passage.
"""
from __future__ import annotations

from qa.errors import UserError
from qa.tokenize import Tokens


def check_windows(size: int, stride: int) -> None:
    """A ``UserError`` unless windows of ``size`` tokens every ``stride`` tokens cover a text without gaps."""
    if size < 1 or not 0 < stride <= size:
        raise UserError(f"window stride must be between 1 and the window size ({size}), got {stride}")


def window_starts(length: int, size: int, stride: int) -> list[int]:
    """First token of each window of at most ``size`` tokens, every ``stride`` tokens, covering ``length`` tokens."""
    check_windows(size, stride)
    starts = list(range(0, max(length - size, 0) + 1, stride))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def segment_windows(length: int, breaks: list[int], size: int, stride: int) -> list[tuple[int, int]]:
    """``[first, end)`` tokens of the windows of a text whose segments (the documents of a collection)
    start at tokens ``breaks`` (ascending, the first 0): ``window_starts`` within each segment, so that
    no window runs from one document into the next."""
    spans = []
    for first, end in zip(breaks, [*breaks[1:], length]):
        if end > first:
            spans += [(first + s, min(first + s + size, end)) for s in window_starts(end - first, size, stride)]
    return spans


def cut_windows(tokens: Tokens, spans: list[tuple[int, int]]) -> list[Tokens]:
    """The windows ``[first, end)`` of ``tokens``, each keeping its tokens' character offsets."""
    return [Tokens(tokens.words[s:e], tokens.lemmas[s:e], tokens.starts[s:e], tokens.ends[s:e]) for s, e in spans]


def owned_ranges(starts: list[int], size: int, length: int, ends: list[int] | None = None) -> list[tuple[int, int]]:
    """For windows of ``size`` tokens (or up to ``ends``) starting at ``starts`` (ascending) in a passage of
    ``length``, the local ``[lo, hi)`` of the tokens each one owns: every token read once, an overlap split
    at its middle, so a passage-wide softmax counts each token once."""
    ends = ends or [min(start + size, length) for start in starts]
    cuts = [0] + [(following + end) // 2 for end, following in zip(ends, starts[1:])] + [length]
    return [(max(cuts[k] - start, 0), min(cuts[k + 1], ends[k]) - start) for k, start in enumerate(starts)]


def merge_ranked(candidates: list, top_k: int | None = None) -> list:
    """The ``top_k`` best candidates (objects with ``start``, ``end``, ``score``; None: all), each character
    span once: a span found in two overlapping windows keeps its higher score. Ties are broken by
    position, so the result does not depend on the order the candidates arrive in."""
    best: dict[tuple[int, int], object] = {}
    for candidate in candidates:
        key = (candidate.start, candidate.end)
        if key not in best or candidate.score > best[key].score:
            best[key] = candidate
    return sorted(best.values(), key=lambda c: (-c.score, c.start, c.end))[:top_k]
