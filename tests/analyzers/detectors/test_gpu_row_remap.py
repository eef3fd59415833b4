"""gpu-row-remap: failure (64) is RMA class, pending (63) needs a reset."""

from __future__ import annotations

from pathlib import Path

from tests.analyzers.detectors.kernel_support import analyze, of
from tracecore.analyzers.report import Severity


def test_remap_failure_is_critical(tmp_path: Path) -> None:
    log = "[ 9000.000100] NVRM: Xid (PCI:0000:dc:00): 64, pid='<unknown>', name=<unknown>, Row Remapper Error: remap failed\n"
    [verdict] = of(analyze(tmp_path, log), "gpu-row-remap")
    assert verdict.severity == Severity.CRITICAL
    assert verdict.details["state"] == "remap failure"
    assert verdict.culprit.ranks == [3]
    assert verdict.missing_evidence == ["no DCGM row-remap fields for this GPU"]


def test_pending_remap_is_a_warning(tmp_path: Path) -> None:
    log = "[ 10.000000] NVRM: Xid (PCI:0000:5e:00): 63, pid='<unknown>', name=<unknown>, Row Remapper: New row Marked for Remapping, reset gpu to activate.\n"
    [verdict] = of(analyze(tmp_path, log), "gpu-row-remap")
    assert (verdict.severity, verdict.details["state"], verdict.culprit.ranks) == (
        Severity.WARNING,
        "remap pending",
        [1],
    )


def test_silent_on_ecc_lines(tmp_path: Path) -> None:
    log = "[ 10.000000] NVRM: Xid (PCI:0000:5e:00): 48, pid=41001, name=python3, An uncorrectable double bit error (DBE) has been detected\n"
    assert of(analyze(tmp_path, log), "gpu-row-remap") == []
