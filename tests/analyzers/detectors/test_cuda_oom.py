"""cuda-oom: every PyTorch wording classified, with the numbers that decided."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.helpers.incident import analyze_dir, write_incident
from tests.helpers.paths import INCIDENTS, SAMPLES
from tests.helpers.tables import tables_from_rows
from tracecore.analyzers.detectors.cuda_oom import detect
from tracecore.analyzers.report import Verdict

OOM_LINES = {
    r["xid_or_code"]: r["line"]
    for r in csv.DictReader((SAMPLES / "app_log" / "lines.tsv").open(encoding="utf-8"), delimiter="\t")
    if r["category"] == "cuda_oom"
}


def oom_verdicts(root: Path) -> list[Verdict]:
    return [v for v in analyze_dir(root).verdicts if v.pattern == "cuda-oom"]


@pytest.mark.parametrize(
    ("wording", "expected"),
    [("old_format", "undetermined"), ("2.1_format", "capacity"), ("2.5+_format", "fragmentation")],
)
def test_real_messages_are_classified(tmp_path: Path, wording: str, expected: str) -> None:
    root = write_incident(tmp_path / "inc", {"logs/rank4.log": OOM_LINES[wording] + "\n"})
    (verdict,) = oom_verdicts(root)
    assert verdict.details["classification"] == expected
    assert verdict.culprit.ranks == [4] and verdict.details["spread"] == "one-rank"
    numbers = verdict.details["numbers"]
    assert numbers["requested_bytes"] > 0 and numbers["total_bytes"] > 0
    assert expected.replace("-", " ") in verdict.title


def test_capacity_and_fragmentation_name_their_numbers(tmp_path: Path) -> None:
    root = write_incident(tmp_path / "inc", {"logs/rank4.log": OOM_LINES["2.1_format"] + "\n"})
    (verdict,) = oom_verdicts(root)
    assert (
        verdict.details["decided_by"]
        == "this process uses 3.44 GiB of 4.00 GiB (86%); reserved-but-unallocated only 0.00 GiB"
    )
    (frag,) = oom_verdicts(INCIDENTS / "app-cuda-oom-fragmentation")
    assert frag.details["decided_by"] == "reserved-but-unallocated 9.35 GiB > 10% of 31.47 GiB"
    assert frag.culprit.ranks == [3] and frag.evidence[0].file == "node-a/logs/rank3.log"
    assert any("expandable_segments" in a for a in frag.actions)


def test_foreign_process_from_the_process_list() -> None:
    (verdict,) = oom_verdicts(INCIDENTS / "app-cuda-oom-foreign")
    assert verdict.details["classification"] == "foreign-process"
    assert verdict.culprit.pids == [48213] and verdict.culprit.ranks == [1]
    assert "48213" in verdict.title and "46.02 GiB" in verdict.title


def test_foreign_process_from_dcgm_before_the_job() -> None:
    attrs = {"requested_bytes": str(2 << 30), "total_bytes": str(80 << 30), "free_bytes": str(1 << 30)}
    tables = tables_from_rows(
        app_events=[
            {"kind": "nccl_init", "rank": 0, "host": "n1", "ts_ns": 2_000, "source_line": 1},
            {"kind": "cuda_oom", "rank": 0, "host": "n1", "ts_ns": 9_000, "attrs": attrs, "source_line": 2},
        ],
        gpu_metrics=[
            {
                "host": "n1",
                "ts_ns": 1_000,
                "field": "DCGM_FI_DEV_FB_USED",
                "value": 30000.0,
                "source_line": 1,
            },
            {
                "host": "n1",
                "ts_ns": 5_000,
                "field": "DCGM_FI_DEV_FB_USED",
                "value": 79000.0,
                "source_line": 2,
            },
        ],
    )
    (verdict,) = detect(tables)
    assert verdict.details["classification"] == "foreign-process"
    assert verdict.details["decided_by"] == "DCGM FB used was 30000 MiB before the job started"


def test_silent_without_an_oom() -> None:
    assert oom_verdicts(INCIDENTS / "app-healthy-nccl") == []
