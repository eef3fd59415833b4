"""`tracecore check`: the corpus passes, and a changed expected.json makes it fail."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.helpers.cli import run_cli
from tests.helpers.paths import INCIDENTS


def _copy_two_incidents(tmp_path: Path) -> list[Path]:
    chosen = []
    for expected in sorted(INCIDENTS.rglob("expected.json")):
        if json.loads(expected.read_text())["root_cause"] is not None:
            target = tmp_path / expected.parent.name
            shutil.copytree(expected.parent, target)
            chosen.append(target)
        if len(chosen) == 2:
            break
    assert len(chosen) == 2
    return chosen


def test_check_passes_and_writes_junit(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    _copy_two_incidents(corpus)
    junit = tmp_path / "check.xml"
    result = run_cli(["check", str(corpus), "--junit", str(junit), "--jobs", "1"])
    assert result.exit_code == 0, result.stdout
    assert "2 passed, 0 failed" in result.stdout
    suite = ET.parse(junit).getroot()
    assert suite.get("tests") == "2" and suite.get("failures") == "0"


def test_changed_expectation_fails(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    first, _ = _copy_two_incidents(corpus)
    expected = json.loads((first / "expected.json").read_text())
    expected["root_cause"]["pattern"] = (
        "config-drift" if expected["root_cause"]["pattern"] != "config-drift" else "slow-rank"
    )
    (first / "expected.json").write_text(json.dumps(expected))
    junit = tmp_path / "check.xml"
    result = run_cli(["check", str(corpus), "--junit", str(junit), "--jobs", "1"])
    assert result.exit_code == 1
    assert "1 passed, 1 failed" in result.stdout
    assert ET.parse(junit).getroot().get("failures") == "1"


def test_check_of_a_folder_without_incidents_is_exit_3(tmp_path: Path) -> None:
    assert run_cli(["check", str(tmp_path)]).exit_code == 3
