"""storage-stall: stack side (checkpoint I/O), kernel side (hung tasks in NFS), and both together."""

from __future__ import annotations

from pathlib import Path

from tests.analyzers.detectors.stack_dumps import WAIT, dump, job
from tests.helpers.incident import analyze_dir
from tests.helpers.paths import INCIDENTS
from tracecore.analyzers.detectors.storage_stall import detect
from tracecore.analyzers.report import Confidence, Severity
from tracecore.analyzers.tables import Tables, conform


def test_real_checkpoint_capture_rank_1_in_torch_save() -> None:
    report = analyze_dir(INCIDENTS / "stacks-checkpoint-storage-stall-ws4-r1")
    [verdict] = [v for v in report.verdicts if v.pattern == "storage-stall"]
    assert verdict.culprit.ranks == [1] and verdict.severity is Severity.ERROR
    assert verdict.confidence is Confidence.PARTIAL
    assert verdict.title == (
        "rank 1 stuck in checkpoint/file I/O: main thread in save_checkpoint → "
        "_open_zipfile_writer_file.__init__ (torch/serialization.py:828) while 3 ranks wait"
    )
    assert verdict.details["storage_context"] == "save_checkpoint (train.py:77)"
    assert verdict.details["sides"] == ["stack"]
    assert report.root_cause == verdict.id


def test_kernel_hung_task_on_the_same_host_gives_full_confidence() -> None:
    report = analyze_dir(INCIDENTS / "stacks-storage-nfs-kernel-r1")
    [verdict] = [v for v in report.verdicts if v.pattern == "storage-stall"]
    assert verdict.confidence is Confidence.FULL and verdict.details["sides"] == ["stack", "kernel"]
    assert verdict.culprit.ranks == [1] and verdict.culprit.hosts == ["node-1"]
    assert verdict.culprit.links == ["nfs-server filer-03"]
    kernel = [(e.file, e.line) for e in verdict.evidence if e.source == "kernel_log"]
    assert kernel == [("node-1/kern.log", 2), ("node-1/kern.log", 3)]
    [hung] = [k for k in verdict.details["kernel_events"] if k["kind"] == "hung_task"]
    assert hung["pid"] == 12532 and "nfs_atomic_open" in " ".join(hung["fs_symbols"])


def test_data_loader_gil_and_healthy_captures_stay_silent() -> None:
    for name in ("stacks-dataloader-stall-ws6-r4", "stacks-gil-hog-ws4-r3", "stacks-healthy-ws4"):
        report = analyze_dir(INCIDENTS / name)
        assert [v for v in report.verdicts if v.pattern == "storage-stall"] == []


def _kernel(rows: list[dict[str, object]]) -> Tables:
    columns = {
        key: [row.get(key) for row in rows]
        for key in ("source_file", "source_line", "host", "ts_ns", "kind", "pid", "comm", "message", "trace")
    }
    return Tables({"kernel_events": conform("kernel_events", columns)})


def test_kernel_only_storage_events() -> None:
    tables = _kernel(
        [
            {
                "source_file": "a/kern.log",
                "source_line": 1,
                "host": "a",
                "ts_ns": 5,
                "kind": "nfs",
                "message": "nfs: server fs1 not responding, still trying",
            },
            {
                "source_file": "a/kern.log",
                "source_line": 2,
                "host": "a",
                "ts_ns": 6,
                "kind": "nfs",
                "message": "nfs: server fs1 OK",
            },
            {
                "source_file": "b/kern.log",
                "source_line": 7,
                "host": "b",
                "ts_ns": 9,
                "kind": "hung_task",
                "pid": 77,
                "comm": "python",
                "message": "INFO: task python:77 blocked for more than 120 seconds.",
                "trace": ["schedule", "io_schedule", "folio_wait_bit_common", "ext4_writepages"],
            },
            {
                "source_file": "c/kern.log",
                "source_line": 3,
                "host": "c",
                "ts_ns": 9,
                "kind": "hung_task",
                "pid": 78,
                "message": "INFO: task kworker:78 blocked for more than 120 seconds.",
                "trace": ["schedule", "mutex_lock", "drm_ioctl"],
            },
        ]
    )
    verdicts = {v.key: v for v in detect(tables)}
    assert sorted(verdicts) == ["kernel host=a", "kernel host=b"]  # host c: not a filesystem hang
    assert verdicts["kernel host=a"].severity is Severity.WARNING
    assert verdicts["kernel host=a"].culprit.links == ["nfs-server fs1"]
    b = verdicts["kernel host=b"]
    assert b.severity is Severity.ERROR and b.culprit.hosts == ["b"] and b.culprit.ranks == []
    assert b.details["unmapped_pids"] == [77] and (b.evidence[0].file, b.evidence[0].line) == (
        "b/kern.log",
        7,
    )


def test_rank_zero_writing_alone_in_one_running_snapshot_is_info(tmp_path: Path) -> None:
    save = [
        ("save", "torch/serialization.py", 965),
        ("save_checkpoint", "train.py", 77),
        ("main", "train.py", 134),
        ("<module>", "train.py", 143),
    ]
    stacks = {r: dump(100 + r, WAIT) for r in range(4)}
    stacks[0] = dump(100, save, status="active")
    [verdict] = detect(job(tmp_path, stacks))
    assert verdict.culprit.ranks == [0] and verdict.severity is Severity.INFO
