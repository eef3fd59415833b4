"""nvlink-fault: NVLink5 fatal vs nonfatal, Xid 45 cascade, SXid, one-GPU counter outlier."""

from __future__ import annotations

from pathlib import Path

from tests.analyzers.detectors.kernel_support import analyze, dcgm_two_scrapes, of
from tracecore.analyzers.report import Confidence, Severity


def test_fatal_nvlink5_error_and_its_cascade(tmp_path: Path) -> None:
    log = (
        "[ 1.000000] NVRM: Xid (PCI:0000:dc:00): 149, NETIR Fatal XC0 i0 Link -1 (0x000fe406 0x00000000 0x00000000 0x00000000 0x00000000 0x00000000)\n"
        "[ 1.500000] NVRM: Xid (PCI:0000:b1:00): 45, pid=41002, name=python3, Ch 0000000c caused by previous Xid 149\n"
    )
    report = analyze(tmp_path, log)
    [verdict] = of(report, "nvlink-fault")
    assert verdict.severity == Severity.CRITICAL
    assert verdict.details["units"] == ["NETIR"]
    assert verdict.culprit.ranks == [3]
    assert verdict.affected.ranks == [0, 1, 2, 3]
    assert of(report, "gpu-app-fault") == [] and of(report, "gpu-memory-ecc") == []


def test_nonfatal_nvlink5_is_a_warning_with_its_link(tmp_path: Path) -> None:
    log = "[ 1.000000] NVRM: Xid (PCI:0000:3b:00): 145, RLW_RXPIPE Nonfatal XC0 i0 Link 13 (0x0409a0c2 0x00000008 0x00000001 0x00000000 0x00100000 0x00000004)\n"
    [verdict] = of(analyze(tmp_path, log), "nvlink-fault")
    assert verdict.severity == Severity.WARNING
    assert verdict.culprit.links == ["0000:3b:00.0 nvlink 13"]


def test_sxid_non_fatal_is_a_switch_warning(tmp_path: Path) -> None:
    log = "[ 38.178720] nvidia-nvswitch3: SXid (PCI:0000:04:00.0): 22013, Non-fatal, Link 44 Minion Link DLREQ interrupt\n"
    [verdict] = of(analyze(tmp_path, log), "nvlink-fault")
    assert (verdict.severity, verdict.details["sxid"], verdict.culprit.links) == (
        Severity.WARNING,
        [22013],
        ["nvswitch 0000:04:00.0"],
    )


def test_counter_outlier_on_one_gpu_is_partial(tmp_path: Path) -> None:
    prom = dcgm_two_scrapes(
        "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
        {"00000000:3B:00.0": (0, 0), "00000000:5E:00.0": (10, 900)},
    )
    report = analyze(
        tmp_path,
        "[ 1.000000] usb 1-1: new high-speed USB device number 2 using xhci_hcd\n",
        extra={"node-1/dcgm/dcgm.prom": prom},
    )
    [verdict] = of(report, "nvlink-fault")
    assert (verdict.confidence, verdict.severity, verdict.culprit.ranks) == (
        Confidence.PARTIAL,
        Severity.WARNING,
        [1],
    )


def test_silent_on_informational_nvlink_lines(tmp_path: Path) -> None:
    log = "Jul 09 10:42:47 node-1 kernel: NVRM: knvlinkDiscoverPostRxDetLinks_GH100: Getting peer0's postRxDetLinkMask failed!\n"
    assert of(analyze(tmp_path, log), "nvlink-fault") == []


def test_cascade_xid45_is_listed_under_its_cause(tmp_path: Path) -> None:
    log = (
        "[ 1.000000] NVRM: Xid (PCI:0000:dc:00): 149, NETIR Fatal XC0 i0 Link -1 (0x000fe406 0x00000000 0x00000000 0x00000000 0x00000000 0x00000000)\n"
        "[ 1.500000] NVRM: Xid (PCI:0000:b1:00): 45, pid=41002, name=python3, Ch 0000000c caused by previous Xid 149\n"
        "[ 1.600000] NVRM: Xid (PCI:0000:5e:00): 45, pid=41001, name=python3, Ch 0000000c caused by previous Xid 145\n"
    )
    [verdict] = of(analyze(tmp_path, log), "nvlink-fault")
    assert [(c["pci_bus_id"], c["rank"], c["source_line"]) for c in verdict.details["cascade_xid45"]] == [
        ("0000:b1:00.0", 2, 2)
    ]
