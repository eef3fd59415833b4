"""watchdog-timeout: who fired, on what, who never did; never blames the first detector."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.incident import analyze_dir, write_incident
from tests.helpers.paths import INCIDENTS
from tests.helpers.tables import tables_from_rows
from tracecore.analyzers.detectors.watchdog_timeout import detect
from tracecore.analyzers.report import Report, Verdict


def only(report: Report, pattern: str) -> Verdict:
    found = [v for v in report.verdicts if v.pattern == pattern]
    assert len(found) == 1, [v.pattern for v in report.verdicts]
    return found[0]


def test_real_gloo_stall_names_the_rank_that_never_timed_out() -> None:
    verdict = only(analyze_dir(INCIDENTS / "app-watchdog-gloo-stall"), "watchdog-timeout")
    d = verdict.details
    assert d["fired_ranks"] == [0, 1, 3] and d["never_fired_ranks"] == [2]
    assert d["timeout_ms"] == 20000 and d["backend"] == "gloo" and d["op_type"] == "RECV"
    assert verdict.culprit.ranks == [2] and verdict.affected.ranks == [0, 1, 3]
    assert d["first_ts_ns"] is None  # the gloo lines carry no time
    assert verdict.evidence[0].file == "runlogs/torchrun.log" and verdict.evidence[0].line == 32


def test_nccl_watchdog_fields_and_first_fire_time() -> None:
    verdict = only(analyze_dir(INCIDENTS / "app-watchdog-abort"), "watchdog-timeout")
    d = verdict.details
    assert (d["seq"], d["op_type"], d["timeout_ms"]) == (1580, "ALLREDUCE", 600000)
    assert d["first_ts_ns"] == 1795759800008271257  # [E1127 06:10:00.008271257] in 2026 (manifest), UTC
    assert d["first_fire"]["rank"] == 0 and d["never_fired_ranks"] == [2]
    assert d["expected_ranks_source"] == "NCCL world communicator size"
    assert d["lowest_last_completed"] is None  # every rank completed 1579
    assert verdict.title == (
        "Watchdog timeout on ranks 0, 1, 3: seq 1580 ALLREDUCE after 600000 ms; rank(s) 2 never timed out"
    )


def _fire(rank: int, seq: int, op: str, line: int) -> dict[str, object]:
    return {
        "kind": "watchdog_timeout",
        "rank": rank,
        "seq": seq,
        "op_type": op,
        "timeout_ms": 1800000,
        "source_line": line,
        "source_file": f"rank{rank}.log",
        "severity": "error",
    }


def test_dump_signal_rank_is_first_detector_not_culprit_and_op_mismatch() -> None:
    tables = tables_from_rows(
        app_events=[
            _fire(3, 80078, "ALLREDUCE", 10),
            _fire(7, 80078, "BROADCAST", 11),
            {
                "kind": "watchdog_failure",
                "rank": 3,
                "seq": 80078,
                "attrs": {"last_completed": "80077"},
                "source_line": 12,
            },
            {
                "kind": "watchdog_failure",
                "rank": 7,
                "seq": 80078,
                "attrs": {"last_completed": "80070"},
                "source_line": 13,
            },
            {"kind": "dump_signal", "rank": 3, "attrs": {"detector_rank": "5"}, "source_line": 14},
        ]
    )
    (verdict,) = detect(tables)
    d = verdict.details
    assert d["first_detector_rank"] == 5
    assert 5 not in verdict.culprit.ranks and verdict.culprit.ranks == []  # world unknown: nobody blamed
    assert d["op_mismatch"] == {"80078": {"ALLREDUCE": [3], "BROADCAST": [7]}}
    assert d["lowest_last_completed"] == {"ranks": [7], "seq": 80070}
    assert any(m.startswith("world size not stated") for m in verdict.missing_evidence)


def test_silent_without_a_timeout(tmp_path: Path) -> None:
    assert not [
        v for v in analyze_dir(INCIDENTS / "app-healthy-nccl").verdicts if v.pattern == "watchdog-timeout"
    ]
    root = write_incident(
        tmp_path / "inc",
        {
            "rank0.log": "[rank0]:[I1127 06:30:00.461980659 ProcessGroupNCCL.cpp:1538] [PG ID 0 PG GUID 0(default_pg) Rank 0] "
            "ProcessGroupNCCL heart beat monitor thread joined.\n"
            "[E ProcessGroupNCCL.cpp:489] Some NCCL operations have failed or timed out. Due to the asynchronous nature "
            "of CUDA kernels, subsequent GPU operations might run on corrupted/incomplete data.\n"
        },
    )
    assert not [v for v in analyze_dir(root).verdicts if v.pattern == "watchdog-timeout"]
