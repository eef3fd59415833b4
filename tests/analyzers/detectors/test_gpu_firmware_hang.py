"""gpu-firmware-hang: GSP timeouts wedge a GPU; its rank is the culprit."""

from __future__ import annotations

from pathlib import Path

from tests.analyzers.detectors.kernel_support import analyze, of
from tracecore.analyzers.report import Severity

GSP = (
    "3,5001,9000000100,-;NVRM: Xid (PCI:0000:3b:00): 119, pid=41000, name=python3, Timeout after 6s of waiting for RPC response from GPU0 GSP! Expected function 76 (GSP_RM_CONTROL) (0x20800a4c 0x4).\n"
    "4,5003,9006000200,-;NVRM: Rate limiting GSP RPC error prints for GPU at PCI:0000:3b:00 (printing 1 of every 30).  The GPU likely needs to be reset.\n"
    "3,5004,9006000300,-;NVRM: Xid (PCI:0000:3b:00): 154, GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset Required)\n"
)


def test_gsp_timeout_blames_the_gpu_rank(tmp_path: Path) -> None:
    [verdict] = of(analyze(tmp_path, GSP), "gpu-firmware-hang")
    assert verdict.severity == Severity.CRITICAL
    assert verdict.culprit.ranks == [0]
    assert verdict.details["xids"] == [119]
    assert verdict.details["gsp_lines"] == 1
    assert verdict.details["recovery_action"] == "0x1 (GPU Reset Required)"
    assert [e.line for e in verdict.evidence] == [1, 2]


def test_silent_on_app_faults(tmp_path: Path) -> None:
    log = "[ 1.000000] NVRM: Xid (PCI:0000:3b:00): 13, pid=41000, name=python3, Graphics SM Warp Exception on (GPC 9, TPC 1, SM 1): Out Of Range Address\n"
    assert of(analyze(tmp_path, log), "gpu-firmware-hang") == []
