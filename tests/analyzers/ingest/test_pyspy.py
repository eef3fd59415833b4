"""py-spy parser: real samples in every format, sniffing, damage, snapshots and identity hints."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from tests.helpers.incident import copy_into, ingest_serial, write_incident
from tests.helpers.paths import INCIDENTS, SAMPLES
from tracecore.analyzers.ingest.base import NO_CLAIM, FileContext
from tracecore.analyzers.ingest.manifest import Manifest
from tracecore.analyzers.ingest.pyspy import PySpyParser
from tracecore.analyzers.tables import conform

PYSPY = SAMPLES / "pyspy"
PARSER = PySpyParser()


def parse(
    path: Path, rel: str | None = None, manifest: Manifest | None = None
) -> tuple[pl.DataFrame, object]:
    """Parse one file directly; returns the conformed table as a frame and the ParseOutput."""
    data = path.read_bytes()
    ctx = FileContext(path, rel or path.name, data, None, manifest or Manifest())
    out = PARSER.parse(ctx)
    table = conform("stacks", out.tables["stacks"]) if "stacks" in out.tables else None
    frame = pl.from_arrow(table) if table is not None else pl.DataFrame()
    assert isinstance(frame, pl.DataFrame)
    return frame, out


def parse_text(tmp_path: Path, name: str, text: str) -> tuple[pl.DataFrame, object]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return parse(path)


def main_frames(frame: pl.DataFrame) -> list[tuple[int, str, int | None]]:
    rows = frame.filter(pl.col("is_main_thread")).sort("depth")
    return list(zip(rows["depth"], rows["function"], rows["line"], strict=True))


SAMPLE_FILES = sorted(
    p for folder in ("dump", "record") for p in (PYSPY / folder).iterdir() if p.stat().st_size > 0
)


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_every_sample_is_claimed_and_parses(path: Path) -> None:
    assert PARSER.sniff(path.read_bytes()[:4096], path.name) > NO_CLAIM
    frame, out = parse(path)
    if path.suffix == ".svg":
        assert out.records == 0
        assert "flamegraph SVG is a rendering" in out.problems[0].problem
        return
    assert out.records > 0 and not out.rejected and not out.problems
    assert frame.height == out.records
    # Every capture of rank 0 shows its main thread blocked in all_reduce; rank 2 in load_batch.
    main = frame.filter(pl.col("is_main_thread") & (pl.col("module").is_null()))
    if "torchrun-agent" in path.name:
        return
    leaf = main.sort("depth").row(0, named=True)
    expected = "load_batch" if path.name.startswith("rank2") else "all_reduce"
    assert leaf["function"] == expected
    assert leaf["rank"] == int(path.name[4])


@pytest.mark.parametrize(
    "name",
    ["README.md", "job/train_hang.py", "runlogs/torchrun_sigkill_rank2.log", "captured_at.txt"],
)
def test_sniff_leaves_other_files_alone(name: str) -> None:
    assert PARSER.sniff((PYSPY / name).read_bytes()[:4096], Path(name).name) == NO_CLAIM


def test_sniff_does_not_claim_kernel_or_application_logs() -> None:
    kernel = b"[ 1234.567890] INFO: task python:4242 blocked for more than 120 seconds.\n[ 1234.567999] Call Trace:\n"
    app = b'[rank0]:   File "/workspace/job/train_hang.py", line 68, in <module>\nrank=0 step=2 loss=0.0515\n'
    nccl = b"node-1:4242:4300 [0] NCCL INFO comm 0x55 rank 0 nranks 4 cudaDev 0 busId 3b000 - Init COMPLETE\n"
    for head in (kernel, app, nccl):
        assert PARSER.sniff(head, "x.log") == NO_CLAIM


def test_text_dump_frames_lines_and_threads() -> None:
    frame, _ = parse(PYSPY / "dump/rank2.dump.txt")
    assert main_frames(frame) == [
        (0, "load_batch", 32),
        (1, "train_step", 43),
        (2, "main", 61),
        (3, "<module>", 68),
    ]
    first = frame.row(0, named=True)
    assert first["source_line"] == 5 and first["frame_key"] == "load_batch (train_hang.py)"
    assert first["pid"] == 7679 and first["thread_id"] == 7679 and first["active"] is False
    assert first["owns_gil"] is None  # an idle thread may or may not hold the GIL
    assert (
        first["python_version"] == "3.11.7"
        and first["command_line"] == "/opt/jobenv/bin/python -u train_hang.py"
    )
    assert first["rank_source"] == "file-name" and first["capture_format"] == "dump-text"
    reporter = frame.filter(pl.col("thread_name") == "metrics-reporter").sort("depth")
    assert reporter["thread_id"].unique().to_list() == [7690]
    assert reporter["is_main_thread"].to_list() == [False] * 6
    assert reporter["source_line"].to_list() == [10, 11, 12, 13, 14, 15]


def test_full_filenames_normalise_to_the_same_frame_keys() -> None:
    short, _ = parse(PYSPY / "dump/rank0.dump.txt")
    full, _ = parse(PYSPY / "dump/rank0.dump.full-filenames.txt")
    assert full["file"][0] == "/opt/venv/lib/python3.11/site-packages/torch/distributed/distributed_c10d.py"
    assert short["frame_key"].to_list() == full["frame_key"].to_list()


def test_locals_become_a_map_and_give_the_rank() -> None:
    frame, _ = parse(PYSPY / "dump/rank2.dump.locals.txt", rel="dump/unnamed.txt")
    step = frame.filter(pl.col("function") == "train_step").row(0, named=True)
    assert dict(step["locals"]) == {
        "model": "<Net at 0x7f0efa21a050>",
        "opt": "<SGD at 0x7f0ef9e92d50>",
        "step": "3",
        "rank": "2",
        "world_size": "4",
    }
    assert step["rank"] == 2 and step["rank_source"] == "locals"
    json_frame, _ = parse(PYSPY / "dump/rank0.dump.locals.json", rel="dump/unnamed.json")
    reduce = json_frame.filter(pl.col("function") == "all_reduce").row(0, named=True)
    assert dict(reduce["locals"])["async_op"] == "False"
    assert reduce["rank"] == 0 and reduce["rank_source"] == "locals"


def test_json_lines_point_at_the_frame_in_the_file() -> None:
    path = PYSPY / "dump/rank0.dump.json"
    frame, _ = parse(path)
    lines = path.read_text().splitlines()
    for row in frame.iter_rows(named=True):
        assert json.dumps(row["function"]) in lines[row["source_line"] - 1]
    leaf = frame.filter(pl.col("is_main_thread") & (pl.col("depth") == 0)).row(0, named=True)
    assert (leaf["function"], leaf["line"], leaf["source_line"]) == ("all_reduce", 3252, 82)
    assert leaf["owns_gil"] is False and leaf["active"] is False and leaf["thread_id"] == 7677


def test_native_frames_carry_their_shared_object() -> None:
    for name in ("rank0.dump.native.txt", "rank0.dump.native.json"):
        frame, _ = parse(PYSPY / "dump" / name)
        main = frame.filter(pl.col("is_main_thread")).sort("depth")
        assert main["function"][:4].to_list() == [
            "0x7fceab6a3f16",
            "pthread_cond_wait",
            "std::condition_variable::wait",
            "c10d::Work::wait",
        ]
        assert main["frame_key"][0] == "? (libc.so.6)"
        assert main["module"][3].endswith("libtorch_cpu.so")
        python = main.filter(pl.col("module").is_null())
        assert python["function"][0] == "all_reduce" and python["line"][0] == 3252


def test_subprocesses_dump_keeps_each_process_with_its_parent() -> None:
    frame, _ = parse(PYSPY / "dump/torchrun-agent.dump.subprocesses.txt")
    procs = frame.group_by("snapshot_id", maintain_order=True).agg(
        pl.col("pid").first(), pl.col("ppid").first(), pl.col("process_role").first()
    )
    assert procs["pid"].to_list() == [7673, 7680, 7677, 7678, 7679]
    assert procs["ppid"].to_list() == [None, 7673, 7673, 7673, 7673]
    assert procs["process_role"].to_list() == ["launcher-agent"] + ["trainer"] * 4
    assert frame["rank"].null_count() == frame.height  # the file does not say which rank is which


def test_record_formats_keep_sample_counts() -> None:
    raw, _ = parse(PYSPY / "record/rank0.record.idle.threads.raw.txt")
    main = raw.filter(pl.col("is_main_thread"))
    assert main["thread_id"].unique().to_list() == [7677] and main["pid"].unique().to_list() == [7677]
    assert main["samples"].unique().to_list() == [99] and main.sort("depth")["function"][0] == "all_reduce"
    plain, _ = parse(PYSPY / "record/rank0.record.idle.raw.txt")
    assert plain.filter(pl.col("is_main_thread")).sort("depth")["function"].to_list()[-1] == "<module>"
    speedscope, _ = parse(PYSPY / "record/rank0.record.idle.speedscope.json")
    assert speedscope.filter(pl.col("thread_name") == "MainThread")["samples"].unique().to_list() == [99]
    chrome, _ = parse(PYSPY / "record/rank0.record.idle.chrometrace.json")
    leaf = chrome.filter(pl.col("is_main_thread") & (pl.col("depth") == 0)).row(0, named=True)
    assert (leaf["function"], leaf["pid"], leaf["thread_id"]) == ("all_reduce", 7677, None)


def test_repeated_dumps_in_one_file_are_separate_snapshots_with_times(tmp_path: Path) -> None:
    one = (PYSPY / "dump/rank2.dump.txt").read_text()
    text = f"2026-11-27T04:45:30Z\n{one}\n=== Fri Nov 27 04:46:25 UTC 2026 ===\n{one}"
    frame, out = parse_text(tmp_path, "rank2.repeat.txt", text)
    snaps = frame.group_by("snapshot_id", maintain_order=True).agg(
        pl.col("ts_ns").first(), pl.col("ts_origin").first()
    )
    assert snaps["snapshot_id"].to_list() == ["rank2.repeat.txt#1", "rank2.repeat.txt#2"]
    assert snaps["ts_ns"].to_list() == [1795754730_000_000_000, 1795754785_000_000_000]
    assert snaps["ts_origin"].to_list() == ["file", "file"]
    assert not out.rejected


def test_gil_holder_in_text_dump(tmp_path: Path) -> None:
    text = (
        "Process 900: python train.py --rank 5\nPython v3.10.12 (/usr/bin/python3)\n\n"
        'Thread 900 (idle): "MainThread"\n    forward (model.py:10)\n    <module> (train.py:3)\n'
        'Thread 0x7F00AA (active+gil): "hog"\n    spin (hog.py:4)\n'
    )
    frame, _ = parse_text(tmp_path, "dump.txt", text)
    by_thread = frame.group_by("thread_name").agg(pl.col("owns_gil").first(), pl.col("active").first())
    assert dict(zip(by_thread["thread_name"], by_thread["owns_gil"], strict=True)) == {
        "MainThread": False,
        "hog": True,
    }
    assert frame.filter(pl.col("thread_name") == "hog")["thread_id"][0] == 0x7F00AA
    assert frame["rank"].unique().to_list() == [5] and frame["rank_source"][0] == "command-line"


def test_damaged_inputs_keep_what_was_read(tmp_path: Path) -> None:
    text = (
        (PYSPY / "dump/rank2.dump.txt")
        .read_text()
        .replace("    main (train_hang.py:61)\n", "    garbage here\n")
    )
    frame, out = parse_text(tmp_path, "rank2.dump.txt", text)
    assert out.rejected == {"unrecognised-line": 1}
    assert out.problems[0].line == 7
    assert frame.filter(pl.col("is_main_thread"))["function"].to_list() == [
        "load_batch",
        "train_step",
        "<module>",
    ]
    cut = (PYSPY / "dump/rank0.dump.json").read_text()[:2000]
    frame, out = parse_text(tmp_path, "rank0.dump.json", cut)
    assert out.rejected == {"bad-json": 1} and "damaged JSON" in out.problems[0].problem
    # The first thread object was complete before the cut: it is kept.
    assert frame["thread_name"].unique().to_list() == ["metrics-reporter"] and frame.height == 6
    record = "a (x.py:1);b (x.py:2) 5\nnot a stack line\n"
    frame, out = parse_text(tmp_path, "rank0.raw.txt", record)
    assert out.records == 2 and out.rejected == {"bad-record-line": 1} and out.problems[0].line == 2


def test_ingest_shares_ranks_across_files_and_skips_what_cannot_be_read(tmp_path: Path) -> None:
    root = tmp_path / "incident"
    copy_into(root, PYSPY / "dump", "pyspy/dump")
    copy_into(root, PYSPY / "record", "pyspy/record")
    write_incident(root, {"incident.toml": '[job]\ncapture_time = "2026-11-27T04:45:30Z"\n'})
    result = ingest_serial(root)
    stacks = result.tables.df("stacks")
    agent_file = stacks.filter(pl.col("source_file") == "pyspy/dump/torchrun-agent.dump.subprocesses.txt")
    ranks = agent_file.group_by("pid").agg(pl.col("rank").first(), pl.col("rank_source").first()).sort("pid")
    assert ranks.rows() == [
        (7673, None, None),
        (7677, 0, "process-elsewhere"),
        (7678, 1, "process-elsewhere"),
        (7679, 2, "process-elsewhere"),
        (7680, 3, "process-elsewhere"),
    ]
    assert stacks["ts_ns"].unique().to_list() == [1795754730_000_000_000]
    skipped = {s.file: s.reason for s in result.summary.skipped_files}
    assert skipped["pyspy/record/rank0.record.noidle.raw.txt"] == "empty file"
    problems = [p for p in result.summary.problems if p.file.endswith(".svg")]
    assert len(problems) == 1 and "cannot be read back" in problems[0].problem


def test_record_raw_with_subprocesses_splits_processes(tmp_path: Path) -> None:
    text = (
        'process 10:"python -m torch.distributed.run train.py";thread (10): MainThread;<module> (run.py:9);'
        "SimpleElasticAgent._invoke_run (torch/distributed/elastic/agent/server/api.py:923) 40\n"
        'process 10:"python -m torch.distributed.run train.py";process 11:"python train.py";thread (11): MainThread;'
        "<module> (train.py:68);all_reduce (torch/distributed/distributed_c10d.py:3252) 40\n"
        'process 10:"python -m torch.distributed.run train.py";process 11:"python train.py";thread (15): reporter;'
        "Thread.run (threading.py:982) 40\n"
    )
    frame, out = parse_text(tmp_path, "agent.record.raw.txt", text)
    assert out.records == 5 and not out.rejected
    procs = frame.group_by("snapshot_id", maintain_order=True).agg(
        pl.col("pid").first(),
        pl.col("ppid").first(),
        pl.col("process_role").first(),
        pl.col("thread_id").unique().sort(),
    )
    assert procs.rows() == [
        ("agent.record.raw.txt#1", 10, None, "launcher-agent", [10]),
        ("agent.record.raw.txt#2", 11, 10, "trainer", [11, 15]),
    ]
    main = frame.filter(pl.col("is_main_thread") & (pl.col("pid") == 11)).sort("depth")
    assert main["function"].to_list() == ["all_reduce", "<module>"] and main["samples"].to_list() == [40, 40]


def test_thread_without_frames_keeps_one_row(tmp_path: Path) -> None:
    text = (
        "Process 900: python train.py\nPython v3.11.7 (/usr/bin/python3)\n\n"
        'Thread 900 (idle): "MainThread"\n    main (train.py:3)\nThread 901 (active): "native-only"\n'
    )
    frame, out = parse_text(tmp_path, "dump.txt", text)
    assert out.records == frame.height == 2
    row = frame.filter(pl.col("thread_name") == "native-only").row(0, named=True)
    assert (row["depth"], row["function"], row["source_line"], row["active"]) == (None, None, 6, True)


def test_pid_map_sidecar_names_the_ranks_of_pid_named_dumps(tmp_path: Path) -> None:
    capture = INCIDENTS / "stacks-dataloader-stall-ws6-r4"
    root = tmp_path / "incident"
    pids = json.loads((capture / "pids.json").read_text())
    for pid, rank in pids.items():
        copy_into(root, capture / f"rank{rank}.dump.txt", f"stacks/dump-{pid}.txt")
    copy_into(root, capture / "pids.json", "stacks/pids.json")
    assert PARSER.sniff((capture / "pids.json").read_bytes(), "pids.json") > NO_CLAIM
    assert PARSER.sniff(b'{"12531": 0}', "metrics.json") == NO_CLAIM  # the name must say pid
    result = ingest_serial(root)
    stacks = result.tables.df("stacks")
    mains = stacks.filter(pl.col("is_main_thread") & (pl.col("depth") == 0))
    ranks = dict(zip(mains["pid"].to_list(), mains["rank"].to_list(), strict=True))
    assert ranks == {int(pid): rank for pid, rank in pids.items()}
    assert set(mains["rank_source"].to_list()) == {"process-elsewhere"}
    sidecar = stacks.filter(pl.col("capture_format") == "pid-map")
    assert sidecar.height == 6 and sidecar["function"].null_count() == 6
    ledger = next(s for s in result.summary.sources if s.source == "pyspy")
    assert ledger.rejected == 0
