"""gpu-fell-off-bus: Xid 79 and the no-Xid block, AER precursors, identity mapping, DCGM corroboration."""

from __future__ import annotations

from pathlib import Path

from tests.analyzers.detectors.kernel_support import analyze, dcgm_two_scrapes, of
from tracecore.analyzers.report import Confidence, Severity

AER_THEN_XID79 = """\
Nov 27 05:10:00 node-1 kernel: [ 5000.100000] pcieport 0000:3a:00.0: AER: Uncorrected (Fatal) error received: 0000:3a:00.0
Nov 27 05:10:00 node-1 kernel: [ 5000.100020] pcieport 0000:3a:00.0:    [ 5] Surprise Down Error    (First)
Nov 27 05:10:01 node-1 kernel: [ 5001.200100] NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.
Nov 27 05:10:01 node-1 kernel: [ 5001.200200] NVRM: Xid (PCI:0000:3b:00): 154, GPU recovery action changed from 0x0 (None) to 0x2 (Node Reboot Required)
"""


def test_xid79_maps_to_rank_with_aer_cause_chain(tmp_path: Path) -> None:
    [verdict] = of(analyze(tmp_path, AER_THEN_XID79), "gpu-fell-off-bus")
    assert verdict.severity == Severity.CRITICAL
    assert verdict.confidence == Confidence.PARTIAL
    assert verdict.culprit.ranks == [0]
    assert verdict.culprit.hosts == ["node-1"]
    assert [(g.index, g.pci_bus_id) for g in verdict.culprit.gpus] == [(0, "0000:3b:00.0")]
    assert verdict.key == "host=node-1 pci=0000:3b:00.0"
    details = verdict.details
    assert (details["xid"], details["rank"], details["gpu_index"], details["count"]) == (79, 0, 0, 1)
    assert details["cause_chain"] == [
        "AER fatal received at 0000:3a:00.0",
        "AER fatal Surprise Down Error at 0000:3a:00.0",
        "Xid 79: GPU 0000:3b:00.0 fell off the bus",
        "Xid 154: recovery action → 0x2 (Node Reboot Required)",
    ]
    assert details["first_ts_ns"] == 1795756201000000000  # 2026-11-27T05:10:01Z
    assert [e.line for e in verdict.evidence] == [3, 1, 2]
    assert verdict.missing_evidence == ["no DCGM export showing this GPU's metrics stop"]


def test_no_xid_block_without_mapping_says_what_is_missing(tmp_path: Path) -> None:
    log = (
        "[ 1843.308145] NVRM: The NVIDIA GPU 0000:b3:00.0\n"
        "               NVRM: (PCI ID: 10de:26b5) installed in this system has\n"
        "               NVRM: fallen off the bus and is not responding to commands.\n"
    )
    [verdict] = of(analyze(tmp_path, log, manifest=False), "gpu-fell-off-bus")
    assert verdict.culprit.ranks == []
    assert verdict.culprit.hosts == ["node-1"]
    assert verdict.details["no_xid_block"] is True
    assert verdict.details["pci_bus_id"] == "0000:b3:00.0"
    assert any("0000:b3:00.0 on host node-1 is not mapped" in m for m in verdict.missing_evidence)


def test_dcgm_series_vanishing_makes_it_full(tmp_path: Path) -> None:
    prom = dcgm_two_scrapes(
        "DCGM_FI_DEV_GPU_TEMP", {"00000000:3B:00.0": (60, 61), "00000000:5E:00.0": (60, 61)}
    )
    # The GPU at 3b stops reporting in the second scrape.
    prom = (
        "\n".join(line for i, line in enumerate(prom.splitlines()) if not (i > 4 and "3B:00.0" in line))
        + "\n"
    )
    report = analyze(tmp_path, AER_THEN_XID79, extra={"node-1/dcgm/dcgm.prom": prom})
    [verdict] = of(report, "gpu-fell-off-bus")
    assert verdict.confidence == Confidence.FULL
    assert verdict.evidence[-1].source == "dcgm"


def test_silent_on_identity_lines_and_corrected_errors(tmp_path: Path) -> None:
    log = (
        "[ 10.000000] NVRM: GPU at PCI:0000:3b:00: GPU-660d987e-1111-2222-3333-444455556666\n"
        "[ 20.000000] pcieport 0000:3a:00.0: AER: Corrected error received: 0000:3b:00.0\n"
    )
    report = analyze(tmp_path, log)
    assert of(report, "gpu-fell-off-bus") == []
    assert of(report, "pcie-aer") == []
