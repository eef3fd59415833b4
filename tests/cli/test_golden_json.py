"""The JSON contract, compared exactly with reviewed golden files for a few bundled incidents.

A difference fails with the diff; rewrite the goldens with ``pytest --update-goldens`` only when
the new output is right, and say why in the commit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.cli import run_cli
from tests.helpers.paths import INCIDENTS

GOLDEN = Path(__file__).parent / "golden"
CASES = ["gpu-fell-off-bus-hang", "dataloader-stall", "host-oom-kill", "healthy-job"]


def _normalised(stdout: str) -> dict[str, object]:
    document = json.loads(stdout)
    document["tool"]["version"] = "<version>"
    document["incident"]["path"] = "<incident>"
    return document


@pytest.mark.parametrize("name", CASES)
def test_json_matches_golden(name: str, update_goldens: bool) -> None:
    result = run_cli(
        ["analyze", str(INCIDENTS / name), "--format", "json", "--fail-on", "never", "--jobs", "1"]
    )
    assert result.exit_code == 0, result.stderr
    actual = json.dumps(_normalised(result.stdout), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    golden = GOLDEN / f"{name}.json"
    if update_goldens:
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(actual, encoding="utf-8")
        return
    assert golden.is_file(), f"no golden for {name}: run pytest --update-goldens and review it"
    assert actual == golden.read_text(encoding="utf-8")
