"""gpu-app-fault: one process → application; the same GPU across processes → hardware suspect."""

from __future__ import annotations

from pathlib import Path

from tests.analyzers.detectors.kernel_support import analyze, of
from tracecore.analyzers.report import Severity


def test_single_process_fault_is_the_application(tmp_path: Path) -> None:
    log = (
        "[ 1.000000] NVRM: Xid (PCI:0000:5e:00): 13, pid='<unknown>', name=<unknown>, Graphics SM Warp Exception on (GPC 9, TPC 1, SM 1): Out Of Range Address\n"
        "[ 1.000100] NVRM: Xid (PCI:0000:5e:00): 43, pid=41001, name=pt_main_thread, Ch 00000008\n"
    )
    [verdict] = of(analyze(tmp_path, log), "gpu-app-fault")
    assert (verdict.severity, verdict.details["classification"]) == (Severity.ERROR, "application")
    assert verdict.culprit.ranks == [1]
    assert verdict.details["stalled_rank"] == 1


def test_same_gpu_across_processes_is_hardware_suspect(tmp_path: Path) -> None:
    log = (
        "[ 1.000000] NVRM: Xid (PCI:0000:3b:00): 31, pid=41000, name=python3, Ch 00000003, intr 10000000\n"
        "[ 9.000000] NVRM: Xid (PCI:0000:3b:00): 31, pid=52000, name=python3, Ch 00000004, intr 10000000\n"
    )
    [verdict] = of(analyze(tmp_path, log), "gpu-app-fault")
    assert verdict.details["classification"] == "hardware suspect"
    assert verdict.details["distinct_processes"] == 2
    assert verdict.culprit.pids == [41000, 52000]
    assert verdict.culprit.ranks == [0]


def test_lone_xid43_is_a_warning(tmp_path: Path) -> None:
    log = "[ 1.000000] NVRM: Xid (PCI:0000:b1:00): 43, pid=41002, name=pt_main_thread, Ch 00000008\n"
    [verdict] = of(analyze(tmp_path, log), "gpu-app-fault")
    assert (verdict.severity, verdict.details["stalled_rank"]) == (Severity.WARNING, 2)


def test_silent_on_cascade_xid45(tmp_path: Path) -> None:
    log = "[ 1.000000] NVRM: Xid (PCI:0000:b1:00): 45, pid=41002, name=python3, Ch 00000002 caused by previous Xid 145\n"
    assert of(analyze(tmp_path, log), "gpu-app-fault") == []
