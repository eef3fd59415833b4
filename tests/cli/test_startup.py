"""`tracecore --help` stays fast: heavy libraries are imported only by the commands that need them."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("polars", "pyarrow", "opentelemetry", "rich", "numpy")


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys, io, contextlib\n"
        "from tracecore.cli.main import tracecore\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        tracecore.main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout
