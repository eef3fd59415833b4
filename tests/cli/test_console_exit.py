"""The installed console script ends the process without teardown: output and exit codes intact.

``tracecore.cli.main.main`` keeps the analysed tables alive and calls ``os._exit`` after
flushing stdout/stderr, so these run the real script in a subprocess (Click's runner never goes
through it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TRACECORE = str(Path(sys.executable).with_name("tracecore"))
INCIDENT = str(REPO / "fixtures" / "incidents" / "gpu-fell-off-bus-hang")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TRACECORE, *args], capture_output=True, text=True, timeout=300)


def test_results_on_stdout_are_complete_and_the_exit_code_is_the_commands() -> None:
    failing = run("analyze", INCIDENT, "--format", "json")
    assert failing.returncode == 1, failing.stderr
    report = json.loads(failing.stdout)  # the whole document was flushed before the exit
    assert report["verdicts"]
    clean = run("analyze", INCIDENT, "--format", "json", "--fail-on", "never")
    assert clean.returncode == 0
    assert json.loads(clean.stdout)["verdicts"] == report["verdicts"]


def test_output_file_is_complete(tmp_path: Path) -> None:
    target = tmp_path / "ticket.md"
    result = run("analyze", INCIDENT, "--format", "markdown", "-o", str(target))
    assert result.returncode == 1
    assert result.stdout == ""
    text = target.read_text()
    assert text.startswith("#") and "gpu-fell-off-bus" in text
    assert text.endswith("\n")


def test_errors_keep_their_exit_codes_and_messages(tmp_path: Path) -> None:
    usage = run("analyze", INCIDENT, "--format", "yaml")
    assert usage.returncode == 2
    assert "yaml" in usage.stderr
    missing = run("analyze", str(tmp_path / "nowhere"))
    assert missing.returncode == 3
    assert missing.stderr.startswith("tracecore: error:") and "no such file or directory" in missing.stderr


def test_a_reader_that_stops_early_is_not_an_error() -> None:
    # `tracecore analyze … | head -1`: the pipe closes before the report is written.
    with subprocess.Popen(
        [TRACECORE, "analyze", INCIDENT, "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        process.stdout.read(10)
        process.stdout.close()
        stderr = process.stderr.read().decode()
        code = process.wait(timeout=300)
    assert "Traceback" not in stderr
    assert code in (0, 1)
