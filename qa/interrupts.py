"""Ctrl-C (SIGINT) as a request that long jobs honour at a safe point instead of an exception
raised wherever the program happens to be."""
from __future__ import annotations

import signal


class InterruptRequest:
    """Inside the block Ctrl-C only sets ``requested``; the caller acts on it at a safe point
    (training: between optimizer steps, so resuming stays exact; evaluation: after all its files)."""

    def __enter__(self) -> "InterruptRequest":
        self.requested = False
        self.previous = signal.signal(signal.SIGINT, self._request)
        return self

    def _request(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self.previous)
