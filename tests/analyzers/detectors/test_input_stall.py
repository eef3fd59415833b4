"""input-stall: the outlier rank inside data loading; never for a queue wait caused by a GIL hog."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from tests.analyzers.detectors.stack_dumps import WAIT, dump, job
from tests.helpers.incident import analyze_dir
from tests.helpers.paths import INCIDENTS
from tracecore.analyzers.detectors.input_stall import detect
from tracecore.analyzers.report import Severity
from tracecore.analyzers.tables import Tables, conform


def test_sample_job_rank_2_in_load_batch() -> None:
    report = analyze_dir(INCIDENTS / "stacks-sample-input-stall-r2")
    [verdict] = [v for v in report.verdicts if v.pattern == "input-stall"]
    assert verdict.severity is Severity.ERROR and verdict.culprit.ranks == [2]
    assert (
        verdict.title
        == "rank 2 stuck loading input: main thread in load_batch (train_hang.py:32) while 3 ranks wait"
    )
    assert verdict.details["data_frame"] == "load_batch (train_hang.py:32)"
    assert verdict.details["dominant_ranks"] == [0, 1, 3]
    assert report.root_cause == verdict.id
    assert verdict.evidence[0].excerpt.startswith("rank 2 MainThread (idle): load_batch (train_hang.py:32)")


def test_real_dataloader_capture_rank_4_in_fetch_batch() -> None:
    report = analyze_dir(INCIDENTS / "stacks-dataloader-stall-ws6-r4")
    [verdict] = [v for v in report.verdicts if v.pattern == "input-stall"]
    assert verdict.culprit.ranks == [4] and verdict.severity is Severity.ERROR
    assert verdict.details["site"] == "fetch_batch (train.py:43)"
    assert (
        verdict.details["data_context"] == "_BaseDataLoaderIter.__next__ (torch/utils/data/dataloader.py:725)"
    )
    assert verdict.details["dominant_ranks"] == [0, 1, 2, 3, 5]


def test_queue_wait_behind_a_gil_hog_is_not_an_input_stall() -> None:
    report = analyze_dir(INCIDENTS / "stacks-gil-hog-ws4-r3")
    assert [v.pattern for v in report.verdicts if v.pattern == "input-stall"] == []


def test_checkpoint_and_healthy_captures_stay_silent() -> None:
    for name in ("stacks-checkpoint-storage-stall-ws4-r1", "stacks-healthy-ws4"):
        report = analyze_dir(INCIDENTS / name)
        assert [v for v in report.verdicts if v.pattern == "input-stall"] == []


def test_dead_worker_message_is_evidence_or_its_own_warning(tmp_path: Path) -> None:
    loader = [
        ("_MultiProcessingDataLoaderIter._try_get_data", "torch/utils/data/dataloader.py", 1133),
        ("_MultiProcessingDataLoaderIter._get_data", "torch/utils/data/dataloader.py", 1294),
        ("_MultiProcessingDataLoaderIter._next_data", "torch/utils/data/dataloader.py", 1332),
        ("_BaseDataLoaderIter.__next__", "torch/utils/data/dataloader.py", 701),
        ("main", "train.py", 130),
        ("<module>", "train.py", 143),
    ]
    stacks = {r: dump(100 + r, WAIT) for r in range(4)}
    stacks[1] = dump(101, loader)
    tables = job(tmp_path, stacks)
    message = "RuntimeError: DataLoader worker (pid 4242) is killed by signal: Killed."
    events = conform(
        "app_events",
        {
            "source_file": ["rank1.log", "rank3.log"],
            "source_line": [17, 9],
            "rank": [1, 3],
            "kind": ["other", "other"],
            "message": [message, "DataLoader worker (pid(s) 77, 78) exited unexpectedly"],
        },
    )
    tables = Tables({**dict(tables.items()), "app_events": events})
    verdicts = detect(tables)
    stall, dead = verdicts
    assert stall.culprit.ranks == [1] and stall.severity is Severity.ERROR
    assert (
        stall.details["site"]
        == "_MultiProcessingDataLoaderIter._try_get_data (torch/utils/data/dataloader.py:1133)"
    )
    assert stall.details["dead_worker_pids"] == [4242]
    assert ("rank1.log", 17) in [(e.file, e.line) for e in stall.evidence]
    assert dead.culprit.ranks == [3] and dead.severity is Severity.WARNING
    assert dead.details["dead_worker_pids"] == [77, 78]
    assert isinstance(events, pa.Table)


def test_data_loader_workers_of_the_culprit_are_reported(tmp_path: Path) -> None:
    main = [
        ("_MultiProcessingDataLoaderIter._try_get_data", "torch/utils/data/dataloader.py", 1133),
        ("_MultiProcessingDataLoaderIter._next_data", "torch/utils/data/dataloader.py", 1332),
        ("_BaseDataLoaderIter.__next__", "torch/utils/data/dataloader.py", 701),
        ("main", "train.py", 130),
        ("<module>", "train.py", 143),
    ]
    worker = [
        ("read_shard", "dataset.py", 88),
        ("ShardDataset.__getitem__", "dataset.py", 40),
        ("_MapDatasetFetcher.fetch", "torch/utils/data/_utils/fetch.py", 52),
        ("_worker_loop", "torch/utils/data/_utils/worker.py", 309),
        ("BaseProcess._bootstrap", "multiprocessing/process.py", 314),
    ]
    child = dump(900, worker).replace(
        "Python v3.11.7 (/usr/bin/python3.11)\n",
        "Python v3.11.7 (/usr/bin/python3.11)\nParent Process 102: /usr/bin/python -u train.py\n",
    )
    stacks = {r: dump(100 + r, WAIT) for r in range(4)}
    stacks[2] = dump(102, main) + "\n" + "-" * 80 + "\n\n" + child
    verdicts = detect(job(tmp_path, stacks))
    [verdict] = verdicts
    assert verdict.culprit.ranks == [2] and verdict.culprit.pids == [102]
    assert verdict.details["workers"] == {"900": "read_shard (dataset.py:88)"}
    assert verdict.missing_evidence == []
    assert any(
        e.excerpt.startswith("data-loader worker pid 900 MainThread (idle): read_shard")
        for e in verdict.evidence
    )


def test_storage_trouble_under_the_data_loader_is_added(tmp_path: Path) -> None:
    fetch = [("read_shard", "dataset.py", 88), ("ShardDataset.__getitem__", "dataset.py", 40), *WAIT[3:]]
    stacks = {r: dump(100 + r, WAIT) for r in range(4)}
    stacks[0] = dump(100, fetch)
    tables = job(tmp_path, stacks)
    kernel = conform(
        "kernel_events",
        {
            "source_file": ["kern.log"],
            "source_line": [12],
            "pid": [100],
            "kind": ["hung_task"],
            "message": ["INFO: task python:100 blocked for more than 120 seconds."],
            "trace": [["schedule", "rpc_wait_bit_killable [sunrpc]", "nfs_read_folio [nfs]"]],
        },
    )
    [verdict] = detect(Tables({**dict(tables.items()), "kernel_events": kernel}))
    assert verdict.culprit.ranks == [0] and verdict.details["storage_underneath"] is True
    assert verdict.confidence.value == "full"
    assert ("kern.log", 12) in [(e.file, e.line) for e in verdict.evidence]
