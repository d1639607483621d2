"""User-facing errors: one base class, so the CLI reports these as one line and lets every other
exception (an internal bug) surface as one.

``UserError`` subclasses ``ValueError`` so that library callers who catch ``ValueError`` for bad
arguments keep working; the CLI catches ``UserError`` only.
"""
from __future__ import annotations


class UserError(ValueError):
    """Bad input from the person or program using the reader: the message says what and where."""


def run_script(main) -> None:
    """Exit with what a script's ``main()`` returns (0 for None); bad input, a ``UserError``, ends the script
    with one line on stderr and status 2, as it ends the ``qa`` command."""
    import sys
    from pathlib import Path

    try:
        code = main()
    except UserError as error:
        print(f"{Path(sys.argv[0]).name}: error: {error}", file=sys.stderr)
        code = 2
    sys.exit(code or 0)
