"""Consoles: results go to stdout (or --output), progress and diagnostics to stderr."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console


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
