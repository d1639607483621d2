"""Long passages -> overlapping token windows, and answers from all windows -> one ranked list.

A window is a slice of the passage's tokens that keeps the tokens' absolute character offsets,
so an answer found in any window is still a slice of the original passage.
"""
from __future__ import annotations

from qa.tokenize import Tokens


def window_starts(length: int, size: int, stride: int) -> list[int]:
    """First token of each window of at most ``size`` tokens, every ``stride`` tokens, covering ``length`` tokens."""
    if size < 1 or not 0 < stride <= size:
        raise ValueError(f"window stride must be between 1 and the window size ({size}), got {stride}")
    starts = list(range(0, max(length - size, 0) + 1, stride))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def split_windows(tokens: Tokens, size: int, stride: int) -> list[Tokens]:
    """Windows of at most ``size`` tokens, starting every ``stride`` tokens, covering every token."""
    return [
        Tokens(tokens.words[s : s + size], tokens.lemmas[s : s + size], tokens.starts[s : s + size], tokens.ends[s : s + size])
        for s in window_starts(len(tokens), size, stride)
    ]


def owned_ranges(starts: list[int], size: int, length: int) -> list[tuple[int, int]]:
    """For windows of ``size`` tokens starting at ``starts`` (ascending) in a passage of ``length``, the
    local ``[lo, hi)`` of the tokens each one owns: every token read once, an overlap split at its
    middle, so a passage-wide softmax counts each token once."""
    cuts = [0] + [(following + previous + size) // 2 for previous, following in zip(starts, starts[1:])] + [length]
    return [(max(cuts[k] - start, 0), min(cuts[k + 1], start + size) - start) for k, start in enumerate(starts)]


def merge_ranked(candidates: list, top_k: int) -> list:
    """The ``top_k`` best candidates (objects with ``start``, ``end``, ``score``), each character span
    once: a span found in two overlapping windows keeps its higher score. Ties are broken by
    position, so the result does not depend on the order the candidates arrive in."""
    best: dict[tuple[int, int], object] = {}
    for candidate in candidates:
        key = (candidate.start, candidate.end)
        if key not in best or candidate.score > best[key].score:
            best[key] = candidate
    return sorted(best.values(), key=lambda c: (-c.score, c.start, c.end))[:top_k]
