"""process-crash: earliest fatal signal, teardown and watchdog aborts excluded, kernel segfaults mapped."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.incident import analyze_dir
from tests.helpers.paths import INCIDENTS
from tests.helpers.tables import tables_from_rows
from tracecore.analyzers.detectors.process_crash import detect
from tracecore.analyzers.report import Confidence, Verdict

SEGV = "python[51102]: segfault at 8 ip 00007f1e2567f501 sp 00007ffd3a1c9e10 error 4 in libnccl.so.2[7f1e25400000+1a2c000]"


def crashes(root: Path) -> list[Verdict]:
    return [v for v in analyze_dir(root).verdicts if v.pattern == "process-crash"]


def test_real_sigkill_is_the_crash_and_sigterms_are_teardown() -> None:
    (verdict,) = crashes(INCIDENTS / "app-crash-sigkill")
    d = verdict.details
    assert verdict.culprit.ranks == [2] and verdict.culprit.pids == [7679]
    assert (d["signal"], d["exit_code"], d["origin"]) == ("SIGKILL", -9, "launcher")
    assert d["teardown_ranks"] == [0, 1, 3] and d["later_crashes"] == []
    assert d["torchrun_first_observed"]["rank"] == 2
    assert "not the root cause" in d["torchrun_first_observed"]["note"]


def test_segfault_in_nccl_from_the_job_log() -> None:
    (verdict,) = crashes(INCIDENTS / "app-crash-segfault-watchdog")
    d = verdict.details
    assert verdict.culprit.ranks == [2] and d["signal"] == "SIGSEGV" and d["origin"] == "fatal-signal"
    assert d["frame"] == "ncclLocalOpAppend()" and d["component"].startswith("NCCL")
    assert d["exit_code"] == -11


def test_no_crash_when_ranks_only_timed_out_or_aborted_on_the_watchdog() -> None:
    assert crashes(INCIDENTS / "app-watchdog-gloo-stall") == []  # exit 1 and SIGTERMs
    assert crashes(INCIDENTS / "app-watchdog-abort") == []  # SIGABRT after the watchdog fired
    assert crashes(INCIDENTS / "app-healthy-nccl") == []


def test_kernel_segfault_mapped_through_identity_and_confirmed_by_the_launcher() -> None:
    tables = tables_from_rows(
        kernel_events=[
            {
                "kind": "segfault",
                "host": "node-a",
                "pid": 51102,
                "comm": "python",
                "message": SEGV,
                "ts_ns": 5_000,
                "source_line": 7,
                "source_file": "node-a/dmesg.log",
            },
        ],
        identity=[{"rank": 2, "host": "node-a", "pid": 51102}, {"rank": 1, "host": "node-a", "pid": 51101}],
        app_events=[
            {
                "kind": "elastic_failure",
                "rank": 2,
                "host": "node-a",
                "pid": 51102,
                "exit_code": -11,
                "signal": "SIGSEGV",
                "ts_ns": 9_000,
                "source_line": 3,
            },
            {
                "kind": "elastic_failure",
                "rank": 1,
                "host": "node-a",
                "pid": 51101,
                "exit_code": -6,
                "signal": "SIGABRT",
                "ts_ns": 8_000,
                "source_line": 2,
            },
        ],
    )
    (verdict,) = detect(tables)
    d = verdict.details
    # The kernel saw rank 2's segfault (t=5000) before rank 1's abort (t=8000): rank 2 is the candidate.
    assert verdict.culprit.ranks == [2] and d["first_ts_ns"] == 5_000
    assert d["library"] == "libnccl.so.2" and d["origin"] == "kernel"
    assert verdict.confidence is Confidence.FULL  # kernel log and launcher agree
    assert [c["rank"] for c in d["later_crashes"]] == [1]
    assert verdict.evidence[0].file == "node-a/dmesg.log" and verdict.evidence[0].line == 7


def test_unmapped_kernel_pid_is_reported_missing() -> None:
    tables = tables_from_rows(
        kernel_events=[
            {
                "kind": "segfault",
                "host": "node-z",
                "pid": 999,
                "comm": "python",
                "message": SEGV,
                "source_line": 1,
            }
        ],
    )
    (verdict,) = detect(tables)
    assert verdict.culprit.ranks == [] and verdict.culprit.pids == [999]
    assert any("rank of pid 999 on node-z" in m for m in verdict.missing_evidence)


def test_kernel_segfault_incident_maps_pid_through_nccl_init_lines() -> None:
    (verdict,) = crashes(INCIDENTS / "app-crash-kernel-segfault")
    d = verdict.details
    assert verdict.culprit.ranks == [2] and verdict.culprit.pids == [51102]
    assert (d["origin"], d["library"], d["signal"], d["exit_code"]) == (
        "kernel",
        "libnccl.so.2",
        "SIGSEGV",
        -11,
    )
    assert verdict.confidence is Confidence.FULL
    assert verdict.evidence[0].source == "kernel_log" and verdict.evidence[0].file == "node-a/kern.log"
