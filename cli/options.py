"""Options shared by several commands, defined once."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable[..., object])


def jobs_option(fn: F) -> F:
    """``--jobs N``: worker processes for parsing."""
    return click.option(
        "--jobs",
        "-j",
        type=click.IntRange(min=1),
        default=None,
        help="Worker processes for parsing (default: the CPUs available; 1 parses serially).",
    )(fn)


def debug_option(fn: F) -> F:
    """``--debug``: show tracebacks of internal errors."""
    return click.option("--debug", is_flag=True, help="Show the traceback of internal errors.")(fn)


def incident_argument(fn: F) -> F:
    """The incident path: a directory, a bundle archive or an ingested table directory."""
    return click.argument("incident", type=click.Path(path_type=str))(fn)
