"""Options shared by several commands, defined once."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, TypeVar

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


class ByteSize(click.ParamType):
    """A byte count: ``1000000``, or with a binary suffix ``512K``, ``100M``, ``8G``, ``1T``."""

    name = "SIZE"
    _UNITS: ClassVar[dict[str, int]] = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        """Parse ``value`` into a positive number of bytes."""
        if isinstance(value, int):
            return value
        text = str(value).strip().upper().removesuffix("B").removesuffix("I")
        unit = text[-1:] if text[-1:] in "KMGT" else ""
        number = text[: len(text) - len(unit)]
        if not number.isdigit() or int(number) <= 0:
            self.fail(f"{value!r} is not a size (e.g. 500M, 8G, 1000000)", param, ctx)
        return int(number) * self._UNITS[unit]


def bundle_limit_options(fn: F) -> F:
    """``--max-bundle-bytes`` and ``--max-bundle-files``: what an incident bundle may unpack to."""
    from tracecore.analyzers.bundle import DEFAULT_MAX_BUNDLE_BYTES, DEFAULT_MAX_BUNDLE_FILES

    fn = click.option(
        "--max-bundle-files",
        type=click.IntRange(min=1),
        default=DEFAULT_MAX_BUNDLE_FILES,
        show_default=True,
        help="Refuse a bundle archive with more entries than this.",
    )(fn)
    return click.option(
        "--max-bundle-bytes",
        type=ByteSize(),
        default=f"{DEFAULT_MAX_BUNDLE_BYTES >> 30}G",
        show_default=True,
        help="Refuse a bundle that unpacks to more than SIZE (also bounds any single .gz/.zst file).",
    )(fn)
