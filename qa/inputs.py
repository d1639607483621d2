"""Checked user input: passages and the files they, or training recipes, come from.

The commands (``qa ask``, ``qa chat``, ``qa train``) share these checks, so every bad input gets the
same ``UserError`` naming the file or the problem. A module of its own, light to import, that
needs none of the commands.
"""
from __future__ import annotations

import json
from pathlib import Path

from qa.errors import UserError

MAX_PASSAGE_CHARS = 1_000_000  # longer passages are refused (about 170,000 words)


def read_text_file(path: str) -> str:
    """A UTF-8 text file's contents, or a ``UserError`` naming the file and the problem."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not a file") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror})") from None
    if b"\x00" in raw:
        raise UserError(f"{path}: not a UTF-8 text file (binary data)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file") from None


def read_json_object(path: str, expected: str = "a JSON object {...}") -> dict:
    """A UTF-8 file holding one JSON object, or a ``UserError`` naming the file and the problem
    (``expected`` says what the file should hold)."""
    try:
        payload = json.loads(read_text_file(path))
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(payload, dict):
        raise UserError(f"{path}: expected {expected}")
    return payload


def checked_passage(text: str) -> str:
    """``text`` unchanged, or a ``UserError`` when it is blank or over ``MAX_PASSAGE_CHARS``."""
    if not text.strip():
        raise UserError("the passage is empty")
    if len(text) > MAX_PASSAGE_CHARS:
        raise UserError(f"the passage has {len(text):,} characters; the limit is {MAX_PASSAGE_CHARS:,}")
    return text
