"""The ``tracecore`` command group and the process entry point (exit codes: README.md)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from tracecore import __version__
from tracecore.analyzers.errors import ExitCode, TracecoreError

from .commands import COMMANDS


class TracecoreGroup(click.Group):
    """The root group: turns every failure into a one-line message and a documented exit code.

    Done in ``main`` (not a wrapper function) so the console script and Click's test runner
    behave the same.
    """

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any) -> Any:  # type: ignore[override]
        """Run the group; exit with the code the failure calls for."""
        argv = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in argv
        extra.pop("standalone_mode", None)
        try:
            code = super().main(args=argv, prog_name=prog_name or "tracecore", standalone_mode=False, **extra)
        except click.exceptions.Abort:
            _fail("aborted", ExitCode.INTERNAL)
        except click.ClickException as exc:
            exc.show()
            sys.exit(ExitCode.USAGE if isinstance(exc, click.UsageError) else exc.exit_code)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except TracecoreError as exc:
            _fail(exc.message, exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", ExitCode.INTERNAL)
        except BrokenPipeError:
            sys.exit(ExitCode.OK)
        except Exception as exc:
            if debug:
                raise
            _fail(
                f"internal error: {type(exc).__name__}: {exc} (re-run with --debug for the traceback)",
                ExitCode.INTERNAL,
            )
        sys.exit(code if isinstance(code, int) else ExitCode.OK)


@click.group(
    cls=TracecoreGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(__version__, "--version", prog_name="tracecore", message="%(prog)s %(version)s")
def tracecore() -> None:
    """Find the root cause of a distributed-training incident.

    Point it at an incident directory (flight-recorder dumps, py-spy stacks, DCGM exports, kernel
    and job logs); it reads everything into tables, runs the detectors and prints which rank, host,
    GPU or link started it, with the evidence line by line.

    \b
    Exit codes: 0 no verdict at or above --fail-on, 1 verdicts at or above it, 2 usage error,
    3 no ingestible input, 4 internal error.
    """


for _command in COMMANDS:
    tracecore.add_command(_command)


def _fail(message: str, code: int) -> NoReturn:
    from .app import error_console

    error_console().print(f"tracecore: error: {message}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs the command, then ends the process without teardown."""
    from .app import enable_fast_exit, exit_now

    enable_fast_exit()
    try:
        tracecore.main(args=argv)
    except SystemExit as exc:
        exit_now(exc.code)
    exit_now(0)
