"""Docs that cannot drift: generated references are current, every command is documented."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers.paths import DOCS, REPO
from tracecore.cli.main import tracecore


def test_generated_docs_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_command_has_help_and_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    for name, command in tracecore.commands.items():
        assert command.help, f"{name} has no help"
        assert f"tracecore {name}" in readme, f"`tracecore {name}` missing from README.md"
        assert f"## `tracecore {name}`" in (DOCS / "cli.md").read_text()
