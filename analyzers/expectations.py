"""Fixture corpora: compare an analysis with an incident's ``expected.json`` (``tracecore check``).

``expected.json`` keys (all optional except ``root_cause``)::

    {"description": "...",
     "root_cause": {"pattern": "collective-hang", "culprit": {"ranks": [3], "hosts": ["node-1"]}} | null,
     "must_include": ["watchdog-timeout"],        # patterns that must appear
     "must_not_include": ["gpu-fell-off-bus"],    # patterns that must not appear
     "max_severity": "warning"}                   # no verdict worse than this
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import IncidentInputError
from .report import Report, Severity

EXPECTED_NAME = "expected.json"
_KEYS = {"description", "root_cause", "must_include", "must_not_include", "max_severity", "origin", "notes"}


@dataclass
class CheckResult:
    """Outcome of one fixture incident."""

    name: str
    expected: str
    got: str
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """True when nothing drifted."""
        return not self.failures


def find_incidents(corpus: Path) -> list[Path]:
    """Incident folders (those holding an expected.json) under ``corpus``, sorted."""
    if (corpus / EXPECTED_NAME).is_file():
        return [corpus]
    return sorted(p.parent for p in corpus.rglob(EXPECTED_NAME))


def load_expected(incident: Path) -> dict[str, Any]:
    """Read and validate one expected.json."""
    path = incident / EXPECTED_NAME
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise IncidentInputError(f"{path}: unreadable expected.json: {exc}") from exc
    if not isinstance(document, dict) or "root_cause" not in document:
        raise IncidentInputError(f"{path}: expected.json needs a 'root_cause' key (an object or null)")
    unknown = sorted(set(document) - _KEYS)
    if unknown:
        raise IncidentInputError(f"{path}: unknown key {unknown[0]!r}")
    return document


def describe_expected(expected: dict[str, Any]) -> str:
    """One-line summary of what is expected."""
    root = expected.get("root_cause")
    if root is None:
        return "no root cause"
    culprit = root.get("culprit", {})
    who = "; ".join(f"{k} {v}" for k, v in sorted(culprit.items()) if v)
    return f"{root['pattern']}" + (f" ({who})" if who else "")


def describe_report(report: Report) -> str:
    """One-line summary of what the analysis concluded."""
    root = report.verdict(report.root_cause) if report.root_cause else None
    if root is None:
        worst = report.worst_severity()
        return "no root cause" + (f" (worst: {worst.value})" if worst else "")
    culprit = root.culprit.to_dict()
    who = "; ".join(f"{k} {culprit[k]}" for k in ("ranks", "hosts") if culprit[k])
    return f"{root.pattern}" + (f" ({who})" if who else "")


def compare(expected: dict[str, Any], report: Report) -> list[str]:
    """Every way ``report`` differs from ``expected``; empty when it matches."""
    failures: list[str] = []
    patterns = {v.pattern for v in report.verdicts}
    root = report.verdict(report.root_cause) if report.root_cause else None
    want = expected.get("root_cause")
    if want is None:
        if root is not None:
            failures.append(f"expected no root cause, got {root.pattern}")
    elif root is None:
        failures.append(f"expected root cause {want['pattern']}, got none")
    else:
        if root.pattern != want["pattern"]:
            failures.append(f"root cause pattern: expected {want['pattern']}, got {root.pattern}")
        culprit = root.culprit.to_dict()
        for key, value in (want.get("culprit") or {}).items():
            if key in ("ranks", "hosts", "pids", "links") and sorted(set(value)) != culprit.get(key):
                failures.append(
                    f"root cause culprit {key}: expected {sorted(set(value))}, got {culprit.get(key)}"
                )
    for pattern in expected.get("must_include", []):
        if pattern not in patterns:
            failures.append(f"missing pattern {pattern}")
    for pattern in expected.get("must_not_include", []):
        if pattern in patterns:
            failures.append(f"unexpected pattern {pattern}")
    if "max_severity" in expected:
        limit = Severity(expected["max_severity"])
        worse = sorted({v.pattern for v in report.verdicts if v.severity.rank < limit.rank})
        if worse:
            failures.append(f"verdicts above {limit.value}: {', '.join(worse)}")
    return failures
