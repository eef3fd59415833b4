"""gil-contention: the GIL holder on the stalled rank, single snapshots, unknown GIL status."""

from __future__ import annotations

from pathlib import Path

from tests.analyzers.detectors.stack_dumps import WAIT, dump, job
from tests.helpers.incident import analyze_dir
from tests.helpers.paths import INCIDENTS
from tracecore.analyzers.detectors.gil_contention import detect
from tracecore.analyzers.report import Severity

HOG = [
    ("spin", "stats.py", 12),
    ("Thread.run", "threading.py", 982),
    ("Thread._bootstrap", "threading.py", 1002),
]
PLAIN = [
    ("forward", "model.py", 10),
    ("train_step", "train.py", 100),
    ("main", "train.py", 134),
    ("<module>", "train.py", 143),
]


def test_real_gil_hog_names_the_thread_and_its_frame() -> None:
    report = analyze_dir(INCIDENTS / "stacks-gil-hog-ws4-r3")
    [verdict] = [v for v in report.verdicts if v.pattern == "gil-contention"]
    assert verdict.severity is Severity.ERROR and verdict.culprit.ranks == [3]
    assert verdict.title.startswith(
        "rank 3: thread 'grad-stats' holds the GIL in grad_norm_stats (train.py:85)"
    )
    assert verdict.details["holder_thread"] == "grad-stats"
    assert verdict.details["holder_top_frame"] == "grad_norm_stats (train.py:85)"
    assert verdict.details["snapshots_with_holder"] >= 2
    holder, main = verdict.evidence
    assert holder.excerpt.startswith("rank 3 grad-stats (active+gil): grad_norm_stats (train.py:85)")
    assert main.excerpt.startswith("rank 3 MainThread (idle): Condition.wait (threading.py:327) ← Queue.get")
    assert report.root_cause == verdict.id


def test_other_captures_have_no_gil_verdict() -> None:
    for name in (
        "stacks-sample-input-stall-r2",
        "stacks-dataloader-stall-ws6-r4",
        "stacks-checkpoint-storage-stall-ws4-r1",
        "stacks-healthy-ws4",
    ):
        report = analyze_dir(INCIDENTS / name)
        assert [v for v in report.verdicts if v.pattern == "gil-contention"] == []


def test_one_snapshot_outside_a_stall_is_info(tmp_path: Path) -> None:
    stacks = {r: dump(100 + r, PLAIN, status="active+gil") for r in range(4)}
    stacks[2] = dump(102, PLAIN, others=[(555, "active+gil", "tokenizer", HOG)])
    [verdict] = detect(job(tmp_path, stacks))
    assert verdict.severity is Severity.INFO and verdict.culprit.ranks == [2]
    assert verdict.details["holder_thread"] == "tokenizer" and verdict.details["snapshots_with_holder"] == 1


def test_gil_status_unknown_is_said(tmp_path: Path) -> None:
    stuck = [
        ("wait_for_stats", "train.py", 96),
        ("train_step", "train.py", 113),
        ("main", "train.py", 134),
        ("<module>", "train.py", 143),
    ]
    stacks = {r: dump(100 + r, WAIT) for r in range(4)}
    stacks[3] = dump(103, stuck, others=[(556, "idle", "grad-stats", HOG)])
    [verdict] = detect(job(tmp_path, stacks))
    assert verdict.severity is Severity.INFO and verdict.details["gil_status"] == "unknown"
    assert verdict.title == "rank 3: GIL holder unknown (the capture has no GIL status)"
