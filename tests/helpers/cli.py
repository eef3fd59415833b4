"""Run the real CLI in-process with Click's runner; exceptions propagate so tests fail loudly."""

from __future__ import annotations

from collections.abc import Sequence

from click.testing import CliRunner, Result

from tracecore.cli.main import tracecore


def run_cli(args: Sequence[str], env: dict[str, str] | None = None, input: str | None = None) -> Result:
    """Invoke ``tracecore ARGS`` and return the result (stdout and stderr kept apart)."""
    runner = CliRunner()
    return runner.invoke(tracecore, list(args), env=env, input=input, catch_exceptions=False)
