"""pcie-aer: fatal → device loss, corrected storm → degraded, a few corrected errors → silence."""

from __future__ import annotations

from pathlib import Path

from tests.analyzers.detectors.kernel_support import analyze, of
from tracecore.analyzers.report import Severity


def _corrected(n: int, step: float) -> str:
    return "".join(
        f"[{100 + i * step:12.6f}] pcieport 0000:00:02.0: AER: Corrected error received: 0000:3b:00.0\n"
        f"[{100 + i * step:12.6f}] nvidia 0000:3b:00.0: PCIe Bus Error: severity=Corrected, type=Physical Layer, (Receiver ID)\n"
        for i in range(n)
    )


def test_fatal_error_is_device_loss(tmp_path: Path) -> None:
    log = (
        "[ 5000.100000] pcieport 0000:00:01.2: AER: Uncorrected (Fatal) error received: 0000:63:00.0\n"
        "[ 5000.100020] pcieport 0000:00:01.2:    [ 5] Surprise Down Error    (First)\n"
    )
    [verdict] = of(analyze(tmp_path, log), "pcie-aer")
    assert verdict.severity == Severity.CRITICAL
    assert verdict.details["root_port"] == "0000:00:01.2"
    assert verdict.details["pci_bus_id"] == "0000:63:00.0"
    assert verdict.details["aer_errors"] == ["Surprise Down Error"]


def test_corrected_storm_is_degraded_link_on_the_gpu(tmp_path: Path) -> None:
    [verdict] = of(analyze(tmp_path, _corrected(200, 0.2)), "pcie-aer")
    assert verdict.severity == Severity.WARNING
    assert verdict.details["corrected_events"] == 200
    assert verdict.culprit.ranks == [0]
    assert verdict.details["action_class"] == "DEGRADED_LINK"


def test_few_corrected_errors_are_silent(tmp_path: Path) -> None:
    assert of(analyze(tmp_path, _corrected(5, 0.2)), "pcie-aer") == []
    # Many, but spread thinly: 30 errors over an hour is one every two minutes.
    assert of(analyze(tmp_path / "slow", _corrected(30, 120.0)), "pcie-aer") == []
