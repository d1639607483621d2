"""User-facing errors: one base class, so the CLI reports these as one line and lets every other
exception (an internal bug) surface as one.

``UserError`` subclasses ``ValueError`` so that library callers who catch ``ValueError`` for bad
arguments keep working; the CLI catches ``UserError`` only.
"""
from __future__ import annotations


class UserError(ValueError):
    """Bad input from the person or program using the reader: the message says what and where."""
