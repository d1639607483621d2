"""Checked user input: passages and the files they, or training recipes, come from.

The commands (``qa ask``, ``qa chat``, ``qa train``) share these checks, so every bad input gets the
same ``UserError`` naming the file or the problem. A module of its own, light to import, that
needs none of the commands.
"""
from __future__ import annotations

import json
import typing
from pathlib import Path

from qa.errors import UserError

MAX_PASSAGE_CHARS = 1_000_000  # longer passages are refused (about 170,000 words)


def check_output_folder(path: str | Path) -> None:
    """A ``UserError`` for an output folder that cannot be one: an existing file, or a path under a file.
    Checked before a long run, whose results would otherwise be lost at the end."""
    target = Path(path)
    for place in (target, *target.parents):
        if place.exists():
            if not place.is_dir():
                raise UserError(f"{path}: {'is' if place == target else f'{place} is'} a file, not a folder")
            return


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
        return raw.decode("utf-8-sig")  # a byte-order mark, as Windows tools write, is not text
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


def is_unicode(text: str) -> bool:
    """Whether ``text`` is valid Unicode: no lone surrogate, which a file or argument that is not UTF-8
    leaves in Python's strings and which the tokenizer cannot take."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Characters that show nothing and join nothing, common in web and PDF text: the zero-width space, the
# left-to-right and right-to-left marks, the word joiner and a byte-order mark inside a text. The tokenizer
# drops them (``qa.tokenize``); a text of nothing else is blank.
INVISIBLE = "\u200b\u200e\u200f\u2060\ufeff"
_NO_INVISIBLE = str.maketrans("", "", INVISIBLE)


def is_blank(text: str) -> bool:
    """Whether ``text`` holds nothing to read: only whitespace and ``INVISIBLE`` characters."""
    return not text.translate(_NO_INVISIBLE).strip()


def checked_passage(text: str) -> str:
    """``text`` unchanged, or a ``UserError`` when it is blank, not valid Unicode or over ``MAX_PASSAGE_CHARS``."""
    if is_blank(text):
        raise UserError("the passage is empty")
    if not is_unicode(text):
        raise UserError("the passage is not valid Unicode text (is it UTF-8?)")
    if len(text) > MAX_PASSAGE_CHARS:
        raise UserError(f"the passage has {len(text):,} characters; the limit is {MAX_PASSAGE_CHARS:,}")
    return text


def _fits(value, kind) -> bool:
    """Whether a JSON ``value`` fits the annotation ``kind`` (int, float, bool, str, or a list of one of
    them); an int fits a float, a bool fits no number. Other annotations are not checked here."""
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind) if kind in (bool, str) else True


def checked_settings(cls, values: dict, what: str) -> dict:
    """``values`` for the dataclass ``cls``, or a ``UserError`` naming the unknown keys or the first value of
    the wrong type (``what``: the kind of settings, as the message says it), so that a recipe or model
    config with a typo fails in one line instead of deep inside training or the network's constructor."""
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise UserError(f"unknown {what}: {', '.join(unknown)}")
    for key, value in values.items():
        if not _fits(value, hints[key]):
            kind = getattr(hints[key], "__name__", str(hints[key]))
            raise UserError(f"{what}: {key} must be {kind}, not {value!r}")
    return values
