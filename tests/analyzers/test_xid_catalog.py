"""The Xid catalogue covers every code the kernel-log detectors and docs rely on."""

from __future__ import annotations

from tests.helpers.paths import DOCS
from tracecore.analyzers.xid_catalog import CATALOG, CLASSES, action_of, class_of, severity_of

REQUIRED = [
    8,
    13,
    31,
    32,
    38,
    43,
    44,
    45,
    48,
    56,
    57,
    58,
    61,
    62,
    63,
    64,
    65,
    68,
    69,
    73,
    74,
    79,
    80,
    81,
    92,
    94,
    95,
]
REQUIRED += [109, 110, 119, 120, 121, 122, 123, 136, 140, 143, *range(144, 151), 151, 154, *range(155, 171)]


def test_required_codes_present_with_valid_class_and_severity() -> None:
    missing = [code for code in REQUIRED if code not in CATALOG]
    assert missing == []
    for entry in CATALOG.values():
        assert entry.cls in CLASSES, entry
        assert entry.severity in ("critical", "error", "warning", "info"), entry
        assert entry.meaning and entry.mnemonic


def test_key_semantics() -> None:
    assert (class_of(79), severity_of(79), CATALOG[79].immediate) == ("bus", "critical", "RESTART_BM")
    assert (class_of(94), CATALOG[94].immediate) == ("memory", "RESTART_APP")
    assert (class_of(95), CATALOG[95].immediate) == ("memory", "RESET_GPU")
    assert class_of(45) == "cascade" and class_of(154) == "cascade"
    assert class_of(13) == "application"
    assert "not in the catalogue" in action_of(9999)
    assert severity_of(9999) == "error"


def test_documented() -> None:
    text = (DOCS / "xid-catalog.md").read_text(encoding="utf-8")
    for code in CATALOG:
        assert f"\n| {code} | `" in text, code
