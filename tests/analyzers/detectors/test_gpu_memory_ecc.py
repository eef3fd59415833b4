"""gpu-memory-ecc: contained (94) vs uncontained (95) actions, floods, DCGM DBE corroboration."""

from __future__ import annotations

from pathlib import Path

from tests.analyzers.detectors.kernel_support import analyze, dcgm_two_scrapes, of
from tracecore.analyzers.report import Confidence, Severity

XID95 = "[{t:.6f}] NVRM: Xid (PCI:0000:5e:00): 95, pid=41001, Uncontained: LTC TAG (0x2, 0x1). RST: Yes, D-RST: No"


def test_uncontained_flood_is_one_critical_verdict(tmp_path: Path) -> None:
    log = "\n".join(XID95.format(t=100 + i * 0.001) for i in range(500)) + "\n"
    [verdict] = of(analyze(tmp_path, log), "gpu-memory-ecc")
    assert verdict.severity == Severity.CRITICAL
    assert verdict.details["containment"] == "uncontained"
    assert verdict.details["count"] == 500
    assert verdict.details["reset_required"] is True
    assert verdict.culprit.ranks == [1]
    assert verdict.affected.ranks == [0, 1, 2, 3]
    assert "reset the GPU" in verdict.actions[1]


def test_contained_error_blames_only_the_process(tmp_path: Path) -> None:
    log = "[ 7000.000100] NVRM: Xid (PCI:0000:b1:00 GPU-I:05): 94, pid=41002, Contained: CE User Channel (0x9). RST: No, D-RST: No\n"
    [verdict] = of(analyze(tmp_path, log), "gpu-memory-ecc")
    assert verdict.severity == Severity.ERROR
    assert verdict.details["containment"] == "contained"
    assert verdict.details["action_class"] == "RESTART_APP"
    assert verdict.culprit.pids == [41002]
    assert verdict.details["victim_ranks"] == [2]
    assert verdict.affected.ranks == [2]


def test_dcgm_dbe_delta_corroborates_and_alone_is_partial(tmp_path: Path) -> None:
    prom = dcgm_two_scrapes(
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", {"00000000:3B:00.0": (0, 2), "00000000:5E:00.0": (0, 4)}
    )
    report = analyze(tmp_path, XID95.format(t=100.0) + "\n", extra={"node-1/dcgm/dcgm.prom": prom})
    verdicts = {v.details["pci_bus_id"]: v for v in of(report, "gpu-memory-ecc")}
    assert verdicts["0000:5e:00.0"].confidence == Confidence.FULL
    only_dcgm = verdicts["0000:3b:00.0"]
    assert (only_dcgm.confidence, only_dcgm.severity, only_dcgm.details["count"]) == (
        Confidence.PARTIAL,
        Severity.ERROR,
        2,
    )
    assert only_dcgm.culprit.ranks == [0]


def test_silent_on_row_remap_and_app_faults(tmp_path: Path) -> None:
    log = (
        "[ 1.000000] NVRM: Xid (PCI:0000:5e:00): 63, pid='<unknown>', name=<unknown>, Row Remapper: New row (0x0000000000000a1b) Marked for Remapping, reset gpu to activate.\n"
        "[ 2.000000] NVRM: Xid (PCI:0000:5e:00): 31, pid=41001, name=python3, Ch 00000003, intr 10000000\n"
    )
    assert of(analyze(tmp_path, log), "gpu-memory-ecc") == []
