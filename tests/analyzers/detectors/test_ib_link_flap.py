"""ib-link-flap: repeated down/up is an error, one flap is weak, boot-time INIT→ACTIVE is silent."""

from __future__ import annotations

from pathlib import Path

from tests.analyzers.detectors.kernel_support import analyze, of
from tracecore.analyzers.report import Confidence, Severity

PORT = "mlx5_core 0000:ab:00.0 mlx5_5: Port: 1 Link {state}"


def _log(states: list[str]) -> str:
    return "".join(f"[{100 + i * 5:12.6f}] {PORT.format(state=s)}\n" for i, s in enumerate(states))


def test_repeated_flaps_are_an_error(tmp_path: Path) -> None:
    [verdict] = of(
        analyze(tmp_path, _log(["DOWN", "ACTIVE", "DOWN", "ACTIVE", "DOWN", "ACTIVE"])), "ib-link-flap"
    )
    assert (verdict.severity, verdict.details["cycles"], verdict.details["down_events"]) == (
        Severity.ERROR,
        3,
        3,
    )
    assert verdict.culprit.links == ["node-1:mlx5_5/1"]
    assert verdict.confidence == Confidence.PARTIAL


def test_single_flap_is_weak(tmp_path: Path) -> None:
    [verdict] = of(analyze(tmp_path, _log(["DOWN", "INIT", "ACTIVE"])), "ib-link-flap")
    assert (verdict.severity, verdict.details["cycles"]) == (Severity.WARNING, 1)


def test_port_that_stays_down_is_an_error(tmp_path: Path) -> None:
    [verdict] = of(analyze(tmp_path, _log(["ACTIVE", "DOWN"])), "ib-link-flap")
    assert (verdict.severity, verdict.details["still_down"]) == (Severity.ERROR, True)


def test_boot_time_port_bring_up_is_silent(tmp_path: Path) -> None:
    assert of(analyze(tmp_path, _log(["INIT", "ACTIVE"])), "ib-link-flap") == []
