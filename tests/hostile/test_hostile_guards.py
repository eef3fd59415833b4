"""Guards: no code execution primitives on input in the package, no network by default, --strict."""

from __future__ import annotations

import ast
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import run_cli
from tests.helpers.paths import HOSTILE, REPO

PACKAGE_DIRS = ("analyzers", "cli", "entry")
# Calls that execute or deserialize arbitrary input. ``ast.literal_eval`` is allowed only on a
# line (or the line above) carrying a ``# bounded:`` comment that says how its input is bounded.
FORBIDDEN_NAMES = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_ATTRS = {
    ("pickle", "load"),
    ("pickle", "loads"),
    ("cPickle", "loads"),
    ("marshal", "loads"),
    ("marshal", "load"),
    ("shelve", "open"),
    ("builtins", "eval"),
    ("builtins", "exec"),
}


def _package_sources() -> list[Path]:
    return sorted(p for d in PACKAGE_DIRS for p in (REPO / d).rglob("*.py"))


def _violations(path: Path, base: Path = REPO) -> list[str]:
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    found: list[str] = []
    tree = ast.parse(source, filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("pickle", "marshal"):
            for alias in node.names:
                if alias.name in ("load", "loads"):
                    found.append(
                        f"{path.relative_to(base)}:{node.lineno}: from {node.module} import {alias.name}"
                    )
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        where = f"{path.relative_to(base)}:{node.lineno}"
        if isinstance(func, ast.Name) and func.id in FORBIDDEN_NAMES:
            found.append(f"{where}: {func.id}()")
        elif isinstance(func, ast.Attribute):
            owner = func.value.id if isinstance(func.value, ast.Name) else None
            if (owner, func.attr) in FORBIDDEN_ATTRS:
                found.append(f"{where}: {owner}.{func.attr}()")
            if func.attr == "literal_eval":
                context = " ".join(lines[max(0, node.lineno - 2) : node.lineno])
                if "# bounded:" not in context:
                    found.append(f"{where}: literal_eval() without a '# bounded:' note")
        if isinstance(func, ast.Name) and func.id == "literal_eval":
            context = " ".join(lines[max(0, node.lineno - 2) : node.lineno])
            if "# bounded:" not in context:
                found.append(f"{where}: literal_eval() without a '# bounded:' note")
    return found


def test_package_has_no_eval_exec_or_plain_unpickling() -> None:
    sources = _package_sources()
    assert len(sources) > 20
    violations = [v for path in sources for v in _violations(path)]
    assert violations == []


def test_the_scanner_catches_what_it_should(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text(
        "import pickle, ast\n"
        "pickle.loads(b'')\n"
        "eval('1')\n"
        "ast.literal_eval(x)\n"
        "# bounded: at most 64 characters\n"
        "ast.literal_eval(x[:64])\n"
        "from pickle import loads\n"
    )
    found = sorted(v.split(": ", 1)[1] for v in _violations(sample, tmp_path))
    assert found == sorted(
        ["from pickle import loads", "pickle.loads()", "eval()", "literal_eval() without a '# bounded:' note"]
    )


class _NoNetwork(socket.socket):
    """A socket class that refuses internet families: any attempt is a test failure."""

    def __init__(self, family: Any = -1, *args: Any, **kwargs: Any) -> None:
        if family in (socket.AF_INET, socket.AF_INET6, -1):
            raise AssertionError("network access attempted")
        super().__init__(family, *args, **kwargs)


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("network access attempted")


@pytest.mark.parametrize("extra", [[], ["--selftel", "stdout"], ["-f", "markdown"]])
def test_analyze_makes_no_network_access(extra: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Guard (not a mock): with internet sockets made impossible, analysis still completes."""
    monkeypatch.setattr(socket, "socket", _NoNetwork)
    monkeypatch.setattr(socket, "create_connection", _refuse)
    monkeypatch.setattr(socket, "getaddrinfo", _refuse)
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"):
        monkeypatch.setenv(name, "http://192.0.2.1:4318")  # set, but not requested: must stay unused
    result = run_cli(["analyze", str(HOSTILE / "markup"), "--fail-on", "never", "-j", "1", *extra])
    assert result.exit_code == 0, result.stderr
    assert "network access attempted" not in result.stderr


def test_strict_turns_rejections_into_exit_3() -> None:
    incident = HOSTILE / "truncated" / "pyspy_json_cut"
    relaxed = run_cli(["analyze", str(incident), "-f", "json", "--fail-on", "never", "-j", "1"])
    assert relaxed.exit_code == 0, relaxed.stderr
    rejected = json.loads(relaxed.stdout)["ingest"]["sources"][0]["rejected"]
    assert rejected >= 1
    strict = run_cli(["analyze", str(incident), "-f", "json", "--fail-on", "never", "-j", "1", "--strict"])
    assert strict.exit_code == 3
    assert strict.stderr == (
        f"tracecore: error: --strict: {rejected} input record(s) rejected (see the ingest ledger)\n"
    )
    assert json.loads(strict.stdout)["ingest"]["sources"][0]["rejected"] == rejected  # report still written


def test_strict_passes_a_clean_incident() -> None:
    result = run_cli(["analyze", str(HOSTILE / "markup"), "--fail-on", "never", "-j", "1", "--strict"])
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("fmt", ["rich", "markdown", "json"])
def test_ledger_shows_rejections_by_reason_and_skips(fmt: str) -> None:
    incident = HOSTILE / "truncated" / "pyspy_json_cut"
    result = run_cli(["analyze", str(incident), "-f", fmt, "--fail-on", "never", "-j", "1"])
    assert result.exit_code == 0, result.stderr
    if fmt == "json":
        ledger = json.loads(result.stdout)["ingest"]["sources"][0]
        assert ledger["rejected_by_reason"] == {"bad-json": 1}
    else:
        assert "bad-json: 1" in result.stdout.replace("\\", "")  # Markdown escapes - and :
        assert "Ingest ledger" in result.stdout
