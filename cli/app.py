"""Consoles: results go to stdout (or --output), progress and diagnostics to stderr."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console


# Set by the console entry point only (tests and embedders free everything as usual): the
# analysis state of a large incident is kept until the process ends, which then exits without
# freeing it, object by object, first (over a second for millions of entries; mypy's main does
# the same).
_retained: list[object] | None = None


def keep_until_exit() -> list[object] | None:
    """A list whose contents live until :func:`exit_now`, or None when exiting normally."""
    return _retained


def enable_fast_exit() -> None:
    global _retained
    _retained = []


def exit_now(code: object) -> None:
    """Flush the standard streams and end the process with ``code`` (as ``sys.exit`` reads it)."""
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more can reach it
            stream.flush()
    os._exit(status)


def error_console() -> Console:
    """Console on the current stderr (looked up at call time so test runners can capture it)."""
    from rich.console import Console

    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def result_console(out: TextIO, *, color: bool | None = None, width: int | None = None) -> Console:
    """Console for the human report on ``out``; colours only on a terminal unless forced."""
    from rich.console import Console

    is_terminal = out.isatty() if color is None else color
    env_width = os.environ.get("COLUMNS")
    return Console(
        file=out,
        highlight=False,
        force_terminal=is_terminal,
        no_color=not is_terminal,
        width=width
        or (int(env_width) if env_width and env_width.isdigit() else (None if is_terminal else 120)),
        emoji=False,
    )
