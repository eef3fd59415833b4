"""stack-outlier: real incidents (sample job, captures) and the rule's edges on small dumps."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.analyzers.detectors.stack_dumps import WAIT, dump, job
from tests.helpers.incident import analyze_dir, ingest_serial, write_incident
from tests.helpers.paths import INCIDENTS
from tracecore.analyzers.detectors.stack_outlier import detect
from tracecore.analyzers.identity import apply_manifest_and_identity
from tracecore.analyzers.report import Severity

LOAD = [
    ("load_batch", "train.py", 32),
    ("train_step", "train.py", 110),
    ("main", "train.py", 134),
    ("<module>", "train.py", 143),
]


def test_sample_job_names_rank_2_in_load_batch() -> None:
    report = analyze_dir(INCIDENTS / "stacks-sample-input-stall-r2")
    [verdict] = [v for v in report.verdicts if v.pattern == "stack-outlier"]
    assert verdict.title == "3 ranks wait in all_reduce; rank 2 is in load_batch (unchanged in 5 dumps)"
    assert verdict.severity is Severity.ERROR
    assert verdict.culprit.ranks == [2] and verdict.culprit.pids == [7679]
    assert verdict.affected.ranks == [0, 1, 3]
    details = verdict.details
    assert details["dominant_ranks"] == [0, 1, 3] and details["outlier_ranks"] == [2]
    assert details["divergence"] == {
        "outlier_function": "load_batch",
        "depth_from_root": 3,
        "outlier_frame": "load_batch (train_hang.py:32)",
        "dominant_frame": "allreduce_grads (train_hang.py:38)",
        "common_frame": "train_step (train_hang.py:43)",
    }
    assert details["dominant_top_frame"] == "all_reduce (torch/distributed/distributed_c10d.py:3252)"
    assert details["steps"] == {"rank 0": 3, "rank 2": 3}  # from the --locals dumps: same iteration
    culprit, victim = verdict.evidence
    # rank2.dump.txt and rank2.dump.later.txt are byte-identical; ingest reads one of them.
    assert culprit.file in ("pyspy/rank2.dump.txt", "pyspy/rank2.dump.later.txt") and culprit.line == 5
    assert culprit.excerpt.startswith("rank 2 MainThread (idle): load_batch (train_hang.py:32) ← train_step")
    assert (victim.file, victim.line) == ("pyspy/rank0.dump.txt", 5)
    assert "all_reduce (torch/distributed/distributed_c10d.py:3252)" in victim.excerpt


@pytest.mark.parametrize(
    ("incident", "ranks", "title"),
    [
        (
            "stacks-dataloader-stall-ws6-r4",
            [4],
            "5 ranks wait in all_reduce; rank 4 is in _BaseDataLoaderIter.__next__ → fetch_batch",
        ),
        (
            "stacks-checkpoint-storage-stall-ws4-r1",
            [1],
            "3 ranks wait in barrier; rank 1 is in save_checkpoint → _open_zipfile_writer_file.__init__",
        ),
        ("stacks-gil-hog-ws4-r3", [3], "3 ranks wait in all_reduce; rank 3 is in wait_for_stats"),
    ],
)
def test_real_captures_name_the_right_rank(incident: str, ranks: list[int], title: str) -> None:
    report = analyze_dir(INCIDENTS / incident)
    [verdict] = [v for v in report.verdicts if v.pattern == "stack-outlier"]
    assert verdict.culprit.ranks == ranks and verdict.severity is Severity.ERROR
    assert verdict.title.startswith(title)


def test_healthy_capture_has_no_outlier() -> None:
    report = analyze_dir(INCIDENTS / "stacks-healthy-ws4")
    assert [v for v in report.verdicts if v.pattern == "stack-outlier"] == []


def test_partial_dump_still_finds_the_outlier_and_names_missing_ranks() -> None:
    report = analyze_dir(INCIDENTS / "stacks-partial-dump-ws6-r4")
    [verdict] = [v for v in report.verdicts if v.pattern == "stack-outlier"]
    assert verdict.culprit.ranks == [4] and verdict.details["ranks_without_stack"] == [0, 2]
    assert verdict.missing_evidence[0].startswith("py-spy dump of ranks 0, 2")


def test_fewer_than_four_ranks_never_have_an_outlier(tmp_path: Path) -> None:
    tables = job(tmp_path, {0: dump(100, WAIT), 1: dump(101, WAIT), 2: dump(102, LOAD)})
    assert detect(tables) == []


def test_equal_groups_have_no_dominant_state(tmp_path: Path) -> None:
    stacks = {r: dump(100 + r, WAIT if r % 2 else LOAD) for r in range(4)}
    assert detect(job(tmp_path, stacks)) == []


def test_running_outlier_or_running_majority_is_only_info(tmp_path: Path) -> None:
    stacks = {r: dump(100 + r, WAIT) for r in range(4)}
    stacks[2] = dump(102, LOAD, status="active")
    [verdict] = detect(job(tmp_path / "a", stacks))
    assert verdict.severity is Severity.INFO and verdict.culprit.ranks == [2]
    busy = [
        ("forward", "model.py", 10),
        ("train_step", "train.py", 100),
        ("main", "train.py", 134),
        ("<module>", "train.py", 143),
    ]
    stacks = {r: dump(100 + r, busy, status="active") for r in range(4)}
    stacks[3] = dump(103, LOAD)
    [verdict] = detect(job(tmp_path / "b", stacks))
    assert verdict.severity is Severity.INFO and verdict.details["dominant_waiting"] is False


def test_outlier_that_moved_between_timed_dumps_is_not_a_stall(tmp_path: Path) -> None:
    stacks = {r: dump(100 + r, WAIT) for r in range(8)}
    moved = [("forward", "model.py", 12), ("train_step", "train.py", 111), *LOAD[2:]]
    stacks[5] = f"2026-11-27T06:00:00Z\n{dump(105, LOAD)}\n2026-11-27T06:00:30Z\n{dump(105, moved)}"
    [verdict] = detect(job(tmp_path, stacks))
    assert verdict.culprit.ranks == [5] and verdict.severity is Severity.INFO
    assert verdict.details["moving"] is True


def test_identical_timed_dumps_and_snapshot_skew(tmp_path: Path) -> None:
    stacks = {r: f"2026-11-27T06:00:0{r}Z\n{dump(100 + r, WAIT)}" for r in range(7)}
    stacks[7] = f"2026-11-27T06:00:40Z\n{dump(107, LOAD)}\n2026-11-27T06:01:10Z\n{dump(107, LOAD)}"
    [verdict] = detect(job(tmp_path, stacks))
    assert verdict.severity is Severity.ERROR and verdict.title.endswith("(unchanged in 2 dumps)")
    assert verdict.details["snapshot_skew_s"] == 40.0  # rank 0 at 06:00:00, rank 7's first dump at 06:00:40
    assert any("capture times differ by 40 s" in m for m in verdict.missing_evidence)


def test_processes_known_only_by_pid_are_grouped(tmp_path: Path) -> None:
    files = {f"node-1/p{pid}.txt": dump(pid, WAIT) for pid in (200, 201, 202)}
    files["node-1/p203.txt"] = dump(203, LOAD)
    write_incident(tmp_path, files)
    [verdict] = detect(apply_manifest_and_identity(ingest_serial(tmp_path)).tables)
    assert verdict.culprit.ranks == [] and verdict.culprit.pids == [203]
    assert verdict.title == "3 processes wait in all_reduce; pid 203 on node-1 is in load_batch"
    assert any("rank of the outlier process" in m for m in verdict.missing_evidence)


def test_outlier_looping_in_the_same_functions_is_still_stuck(tmp_path: Path) -> None:
    stacks = {r: dump(100 + r, WAIT) for r in range(8)}
    looping = [("wait_for_file", "train.py", 21), ("load_batch", "train.py", 30), *LOAD[1:]]
    again = [("wait_for_file", "train.py", 23), ("load_batch", "train.py", 30), *LOAD[1:]]
    stacks[6] = f"2026-11-27T06:00:00Z\n{dump(106, looping)}\n2026-11-27T06:00:30Z\n{dump(106, again)}"
    [verdict] = detect(job(tmp_path, stacks))
    assert verdict.culprit.ranks == [6] and verdict.severity is Severity.ERROR
    assert verdict.details["moving"] is False and verdict.title.endswith(
        "rank 6 is in load_batch → wait_for_file"
    )
