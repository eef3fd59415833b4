"""`tracecore analyze`: output formats, exit codes and the JSON contract on real fixture incidents."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from tests.helpers.cli import run_cli
from tests.helpers.paths import DOCS, INCIDENTS

SCHEMA = json.loads((DOCS / "report.schema.json").read_text())
ALL_INCIDENTS = sorted(p.parent for p in INCIDENTS.rglob("expected.json"))


def test_there_are_fixture_incidents() -> None:
    assert len(ALL_INCIDENTS) >= 5, ALL_INCIDENTS


@pytest.mark.parametrize("incident", ALL_INCIDENTS, ids=lambda p: p.name)
def test_json_output_validates_and_is_deterministic(incident: Path) -> None:
    first = run_cli(["analyze", str(incident), "--format", "json", "--fail-on", "never", "--jobs", "1"])
    assert first.exit_code == 0, first.stderr
    document = json.loads(first.stdout)  # stdout holds only JSON
    jsonschema.validate(document, SCHEMA)
    ids = [v["id"] for v in document["verdicts"]]
    assert ids == [f"v{i}" for i in range(1, len(ids) + 1)]
    if document["root_cause"] is not None:
        assert document["root_cause"] in ids
    for verdict in document["verdicts"]:
        assert set(verdict["explains"]) <= set(ids)
    second = run_cli(["analyze", str(incident), "--format", "json", "--fail-on", "never", "--jobs", "1"])
    assert second.stdout == first.stdout


@pytest.mark.parametrize("fmt", ["rich", "markdown"])
def test_human_formats_render(fmt: str) -> None:
    incident = ALL_INCIDENTS[0]
    result = run_cli(["analyze", str(incident), "--format", fmt, "--fail-on", "never", "--jobs", "1"])
    assert result.exit_code == 0, result.stderr
    assert "Ingest ledger" in result.stdout


def test_exit_code_follows_fail_on(tmp_path: Path) -> None:
    with_verdicts = [
        p for p in ALL_INCIDENTS if json.loads((p / "expected.json").read_text())["root_cause"] is not None
    ]
    incident = with_verdicts[0]
    document = json.loads(
        run_cli(["analyze", str(incident), "--format", "json", "--fail-on", "never"]).stdout
    )
    worst = min(
        {"critical": 0, "error": 1, "warning": 2, "info": 3}[v["severity"]] for v in document["verdicts"]
    )
    assert run_cli(["analyze", str(incident), "--format", "json", "--fail-on", "info"]).exit_code == 1
    at_worst = ["critical", "error", "warning", "info"][worst]
    assert run_cli(["analyze", str(incident), "--format", "json", "--fail-on", at_worst]).exit_code == 1
    assert run_cli(["analyze", str(incident), "--format", "json", "--fail-on", "never"]).exit_code == 0


def test_output_file_leaves_stdout_empty(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    result = run_cli(
        ["analyze", str(ALL_INCIDENTS[0]), "--format", "json", "-o", str(target), "--fail-on", "never"]
    )
    assert result.exit_code == 0
    assert result.stdout == ""
    jsonschema.validate(json.loads(target.read_text()), SCHEMA)


def test_empty_directory_is_exit_3(tmp_path: Path) -> None:
    result = run_cli(["analyze", str(tmp_path)])
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "empty incident directory" in result.stderr


def test_unrelated_files_are_exit_3(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("shopping list: eggs, milk\n")
    (tmp_path / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    result = run_cli(["analyze", str(tmp_path)])
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1 and "nothing ingestible" in result.stderr


def test_missing_path_is_exit_3(tmp_path: Path) -> None:
    result = run_cli(["analyze", str(tmp_path / "nope")])
    assert result.exit_code == 3
    assert "no such file or directory" in result.stderr


def test_unknown_explain_id_is_usage_error() -> None:
    result = run_cli(["analyze", str(ALL_INCIDENTS[0]), "--explain", "v999"])
    assert result.exit_code == 2
