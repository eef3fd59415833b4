"""app_log parser: every real line of the sample TSV, the real torchrun logs, identity and time."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.incident import ingest_serial, write_incident
from tests.helpers.paths import SAMPLES
from tracecore.analyzers.ingest.app_log import AppLogParser
from tracecore.analyzers.ingest.base import CLAIM, NO_CLAIM, WEAK_CLAIM, FileContext
from tracecore.analyzers.ingest.manifest import Manifest, parse_manifest

APP = SAMPLES / "app_log"
TSV_ROWS = list(csv.DictReader((APP / "lines.tsv").open(encoding="utf-8"), delimiter="\t"))

# category → kind every line of that category must land in; None = accepted but not an event row.
KIND = {
    "watchdog_timeout": "watchdog_timeout",
    "watchdog_exception": "watchdog_failure",
    "nccl_segv": "fatal_signal",
    "desync_report": "desync",
    "nccl_info": "nccl_info",
    "c10d_debug": "c10d",
    "nccl_warn_ib": "nccl_warn",
    "nccl_info_errprop": "nccl_errprop",
    "c10d_info": "heartbeat",
    "c10d_store": "c10d",
    "elastic_failed": "elastic_failure",
    "nccl_error": "nccl_error",
    "cuda_oom": "cuda_oom",
    "elastic_childfailed": "elastic_failure",
    "elastic_sigterm": "teardown",
    "watchdog_teardown": "teardown",
    "watchdog_terminated": "teardown",
    "nccl_warn_cuda": "nccl_warn",
    "watchdog_cuda_error": "cuda_error",
    "cuda_error": "cuda_error",
}
# Lines whose kind differs from their category's, recognised by a substring of the line.
KIND_BY_TEXT = {
    "Init COMPLETE": "nccl_init",
    "ChildFailedError": "elastic_summary",
    "Root Cause (first observed failure)": "elastic_summary",
    "Watchdog caught collective operation timeout": "watchdog_timeout",
    "Exception raised from": None,
    "via P2P/IPC": None,  # NCCL topology chatter: a counted record, not a row
}


def expected_kind(row: dict[str, str]) -> str | None:
    """The kind a TSV line must get (category table, then the per-text overrides)."""
    for text, kind in KIND_BY_TEXT.items():
        if text in row["line"]:
            return kind
    return KIND[row["category"]]


def parse_text(
    text: str | bytes, rel: str = "job/train.log", manifest: Manifest | None = None
) -> tuple[pl.DataFrame, Any]:
    data = text.encode() if isinstance(text, str) else text
    ctx = FileContext(Path(rel), rel, data, "node-a", manifest or Manifest(year=2026), None)
    out = AppLogParser().parse(ctx)
    frame = pl.from_arrow(out.tables["app_events"])
    assert isinstance(frame, pl.DataFrame)
    return frame, out


def attrs(row: dict[str, Any]) -> dict[str, str]:
    return dict(row["attrs"] or [])


def test_every_category_has_an_expectation() -> None:
    assert {r["category"] for r in TSV_ROWS} <= set(KIND)


@pytest.mark.parametrize("row", TSV_ROWS, ids=[f"{i}-{r['category']}" for i, r in enumerate(TSV_ROWS)])
def test_tsv_line_lands_in_its_kind(row: dict[str, str]) -> None:
    frame, out = parse_text(row["line"] + "\n")
    assert out.records == 1
    want = expected_kind(row)
    if want is None:
        assert frame.height == 0
        return
    assert frame.height == 1, row["line"]
    got = frame.row(0, named=True)
    assert got["kind"] == want, row["line"]
    assert got["source_line"] == 1
    assert got["message"] == row["line"].strip() or row["line"].startswith(("[rank", "[8"))
    code = row["xid_or_code"]
    extra = attrs(got)
    if want == "watchdog_timeout":
        assert got["op_type"] == code
        assert got["seq"] is not None and got["timeout_ms"] is not None
    if row["category"] == "nccl_warn_ib":
        status = code.replace("status=", "").replace("error ", "")
        assert extra["status"] == status
        assert got["peer"] in ("172.36.143.59", "fe80::966d:ae03:8b:df78%ib0")
    if row["category"] == "nccl_error":
        assert extra["error"] == code
    if row["category"] == "nccl_warn_cuda":
        assert extra["cuda_error"] == code
    if want == "cuda_oom":
        assert int(extra["requested_bytes"]) > 0 and int(extra["total_bytes"]) > 0
        assert "reserved_unallocated_bytes" in extra and "allocated_bytes" in extra
    if code == "sigkill":
        assert got["signal"] == "SIGKILL" and got["exit_code"] == -9 and got["pid"] == 14750


def test_tsv_exact_fields() -> None:
    by_line = {r["line"]: r for r in TSV_ROWS}
    first = next(line for line in by_line if "SeqNum=1580" in line)
    row = parse_text(first)[0].row(0, named=True)
    assert (row["rank"], row["seq"], row["op_type"], row["timeout_ms"]) == (0, 1580, "ALLREDUCE", 600000)
    assert attrs(row)["ran_for_ms"] == "600060" and attrs(row)["numel_in"] == "466119168"
    # glog stamp without a year: the manifest year (2026), zone UTC assumed.
    assert row["ts_text"] == "E321 02:07:08.408271257"
    assert row["ts_ns"] == 1774058828408271257
    assert "year 2026 from manifest" in row["ts_assumption"]
    failure = next(line for line in by_line if "last enqueued NCCL work: 1582" in line)
    row = parse_text(failure)[0].row(0, named=True)
    assert (
        row["seq"] == 1580
        and attrs(row)["last_completed"] == "1579"
        and attrs(row)["last_enqueued"] == "1582"
    )
    # "[PG 1 Rank 0]" is a rank in group 1, not the global rank: the [rank0]: prefix gives that.
    assert attrs(row)["pg"] == "1" and row["rank"] == 0
    init = next(line for line in by_line if "Init COMPLETE" in line)
    row = parse_text(init)[0].row(0, named=True)
    assert (row["host"], row["pid"], row["tid"], row["local_rank"]) == ("shortk8snode10", 164, 726, 1)
    assert (row["rank"], row["gpu_index"], row["pci_bus_id"]) == (9, 1, "0000:63:00.0")
    assert attrs(row)["nranks"] == "16" and attrs(row)["cuda_dev"] == "1"
    oom = next(line for line in by_line if "22.78 GiB" in line)
    extra = attrs(parse_text(oom)[0].row(0, named=True))
    assert extra["requested_bytes"] == str(int(22.78 * 2**30))
    assert extra["reserved_unallocated_bytes"] == str(int(9.35 * 2**30))
    assert extra["allocated_bytes"] == str(int(9.08 * 2**30))
    assert extra["total_bytes"] == str(int(31.47 * 2**30))
    old = next(line for line in by_line if "6.00 GiB total capacity" in line)
    extra = attrs(parse_text(old)[0].row(0, named=True))
    assert extra["reserved_unallocated_derived"] == "true"
    assert int(extra["reserved_unallocated_bytes"]) == int(1.24 * 2**30) - int(781.59 * 2**20)
    elastic = next(line for line in by_line if "local_rank: 3 (pid: 33054)" in line)
    row = parse_text(elastic)[0].row(0, named=True)
    assert (row["exit_code"], row["local_rank"], row["pid"], row["rank"]) == (1, 3, 33054, None)
    assert attrs(row)["agent_pid"] == "32974"


def test_torchrun_summary_folds_into_one_row_per_process() -> None:
    text = (APP / "runlogs" / "torchrun_gloo_timeout20s_rank2_stalled.log").read_text()
    frame, out = parse_text(text, "runlogs/torchrun.log")
    assert out.records == len([ln for ln in text.splitlines() if ln.strip()])
    failures = frame.filter((pl.col("kind") == "elastic_failure") & pl.col("attrs").is_not_null())
    summary = failures.filter(pl.col("rank").is_not_null()).sort("source_line")
    rows = summary.to_dicts()
    entries = [
        (r["rank"], r["local_rank"], r["pid"], r["exit_code"], r["signal"])
        for r in rows
        if "entry" in attrs(r)
    ]
    assert entries == [
        (0, 0, 8295, -15, "SIGTERM"),
        (2, 2, 8297, -15, "SIGTERM"),
        (3, 3, 8298, -15, "SIGTERM"),
        (1, 1, 8296, 1, None),
    ]
    first = [r for r in rows if attrs(r).get("first_observed") == "true"]
    assert [(r["rank"], r["pid"]) for r in first] == [(1, 8296)]
    # The agent's "failed (exitcode: 1) local_rank: 1 (pid: 8296)" gets rank 1 through the summary's pid.
    agent = frame.filter(pl.col("attrs").map.get("agent_pid").is_not_null())
    assert agent.select("rank", "pid", "exit_code").row(0) == (1, 8296, 1)
    teardown = frame.filter(pl.col("kind") == "teardown").sort("source_line")
    assert teardown["pid"].to_list() == [8295, 8297, 8298] and teardown["rank"].to_list() == [0, 2, 3]
    assert set(teardown["signal"]) == {"SIGTERM"}
    # Per-rank gloo timeouts from the [rankN]: traceback lines.
    timeouts = frame.filter(pl.col("kind") == "exception").sort("source_line")
    assert timeouts.select("rank", "timeout_ms", "op_type").rows() == [
        (0, 20000, "RECV"),
        (1, 20000, "RECV"),
        (3, 20000, "SEND"),
    ]
    assert attrs(timeouts.row(0, named=True))["last_frame"].startswith(
        'File "/opt/venv/lib/python3.11/site-packages/torch/distributed/distributed_c10d.py"'
    )


def test_sigkill_log_first_observed_is_rank2() -> None:
    frame, _ = parse_text((APP / "runlogs" / "torchrun_sigkill_rank2.log").read_text(), "runlogs/kill.log")
    first = frame.filter(pl.col("attrs").map.get("first_observed") == "true")
    assert first.select("rank", "pid", "exit_code", "signal").rows() == [(2, 7679, -9, "SIGKILL")]
    assert first["ts_ns"].to_list() == [1795754787000000000]  # "time : 2026-11-27_04:46:27", zone UTC assumed


def test_nccl_init_rank_from_world_comm_and_nic_and_identity(tmp_path: Path) -> None:
    log = "\n".join(
        [
            "node-b:4242:4242 [3] NCCL INFO Bootstrap : Using eth0:10.1.0.12<0>",
            "node-b:4242:4242 [3] NCCL INFO NET/IB : Using [0]mlx5_2:1/IB [1]mlx5_3:1/IB ; OOB eth0:10.1.0.12<0>",
            "node-b:4242:4300 [3] NCCL INFO comm 0x55aa rank 1 nranks 2 cudaDev 3 nvmlDev 3 busId 5e000 commId 0x1 - Init COMPLETE",
            "node-b:4242:4300 [3] NCCL INFO comm 0x55bb rank 11 nranks 16 cudaDev 3 nvmlDev 3 busId 5e000 commId 0x2 - Init COMPLETE",
            "node-b:4242:4301 [3] transport/net_ib.cc:1295 NCCL WARN NET/IB : Got completion from peer 10.1.0.40<51234> with status=12 opcode=0 len=0 vendor err 129 (Send) localGid ::ffff:10.1.0.12 remoteGids::ffff:10.1.0.40",
            "",
        ]
    )
    root = write_incident(tmp_path / "inc", {"node-b/logs/worker.log": log})
    result = ingest_serial(root)
    frame = result.tables.df("app_events")
    assert result.summary.ledger("app_log").records == 5
    inits = frame.filter(pl.col("kind") == "nccl_init").sort("source_line")
    # Every line of pid 4242 carries the global rank of its world (16-rank) communicator.
    assert inits["rank"].to_list() == [11, 11]
    assert set(frame["rank"].to_list()) == {11}
    row = inits.row(0, named=True)
    assert (row["host"], row["gpu_index"], row["pci_bus_id"]) == ("node-b", 3, "0000:5e:00.0")
    assert attrs(row)["nic"] == "mlx5_2,mlx5_3" and attrs(row)["ip"] == "10.1.0.12"
    warn = frame.filter(pl.col("kind") == "nccl_warn").row(0, named=True)
    assert warn["peer"] == "10.1.0.40" and attrs(warn)["status"] == "12" and warn["severity"] == "error"


def test_rank_from_file_name_and_pid_spread() -> None:
    text = (
        "gpu7:900:901 [1] NCCL INFO NCCL version 2.21.5+cuda12.4\n"
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.00 GiB of which 1.00 GiB is free. "
        "Process 777 has 30.00 GiB memory in use. Including non-PyTorch memory, this process has 48.00 GiB memory in use. "
        "Of the allocated memory 40.00 GiB is allocated by PyTorch, and 6.00 GiB is reserved by PyTorch but unallocated.\n"
    )
    frame, _ = parse_text(text, "logs/rank_5.log")
    oom = frame.filter(pl.col("kind") == "cuda_oom").row(0, named=True)
    assert (oom["rank"], oom["pid"], oom["host"]) == (5, 900, "gpu7")
    assert attrs(oom)["processes"] == f"777:{30 * 2**30}"
    assert attrs(oom)["rank_source"] == "file-name"
    assert frame.filter(pl.col("kind") == "nccl_info").row(0, named=True)["attrs"] is not None


def test_timestamps_python_logging_iso_and_manifest_zone() -> None:
    manifest = parse_manifest({"job": {"year": 2025}, "hosts": [{"name": "node-a", "timezone": "+02:00"}]})
    text = (
        "[2025-03-01 10:00:00,250] torch.distributed.elastic.rendezvous.api: RendezvousTimeoutError: timed out\n"
        "2025-03-01T08:00:01.5Z [rank3]: RuntimeError: boom\n"
        "E0301 10:00:02.000000 77 torch/distributed/elastic/multiprocessing/api.py:869] failed (exitcode: -11) local_rank: 2 (pid: 91) of binary: py\n"
    )
    frame, _ = parse_text(text, "launcher.log", manifest)
    rows = frame.sort("source_line").to_dicts()
    assert [r["kind"] for r in rows] == ["rendezvous_failure", "exception", "elastic_failure"]
    assert rows[0]["ts_ns"] == 1740816000250000000  # 10:00:00.25 at +02:00 = 08:00:00.25Z
    assert rows[0]["ts_assumption"] is None
    assert rows[2]["ts_ns"] == 1740816002000000000
    assert rows[2]["ts_assumption"] == "year 2025 from manifest"
    assert rows[2]["signal"] == "SIGSEGV" and rows[2]["exit_code"] == -11
    assert attrs(rows[0])["reason"] == "timeout"


def test_fatal_python_error_and_rendezvous_forms() -> None:
    text = (
        "Fatal Python error: Segmentation fault\n"
        "[c10d] The client socket has failed to connect to [master-0]:29500 (errno: 111 - Connection refused).\n"
        "torch.distributed.DistStoreError: Timed out after 901 seconds waiting for clients. 1/2 clients joined.\n"
        "node-a:1:2 [0] NCCL WARN Bootstrap : no socket interface found\n"
        "[rank2]:[E1127 06:00:00.000000000 ProcessGroupNCCL.cpp:1500] [PG ID 0 PG GUID 0(default_pg) Rank 2] Received a dump signal due to a collective timeout from rank 5 and we will try our best to dump the debug info.\n"
        "[rank2]:[E1127 06:00:00.000000000 ProcessGroupNCCL.cpp:1400] [PG ID 0 PG GUID 0(default_pg) Rank 2] Heartbeat monitor timed out! Process will be terminated after dumping debug info.\n"
    )
    rows = parse_text(text)[0].sort("source_line").to_dicts()
    assert [r["kind"] for r in rows] == [
        "fatal_signal",
        "rendezvous_failure",
        "rendezvous_failure",
        "rendezvous_failure",
        "dump_signal",
        "heartbeat",
    ]
    assert rows[0]["signal"] == "SIGSEGV"
    assert attrs(rows[1])["reason"] == "connection-refused" and rows[1]["peer"] == "master-0"
    assert attrs(rows[2])["joined"] == "1" and attrs(rows[2])["expected"] == "2"
    assert attrs(rows[3])["reason"] == "nccl-bootstrap"
    assert rows[4]["rank"] == 2 and attrs(rows[4])["detector_rank"] == "5"
    assert rows[5]["severity"] == "error"


def test_undecodable_lines_are_counted_not_lost() -> None:
    frame, out = parse_text(
        b"ok line\n\xff\xfe garbage\n[E ProcessGroupNCCL.cpp:495] To avoid data inconsistency, we are taking the entire process down.\n"
    )
    assert out.records == 2 and out.rejected["undecodable-line"] == 1
    assert out.problems and out.problems[0].line == 2
    assert frame["kind"].to_list() == ["teardown"] and frame["source_line"].to_list() == [3]


def test_sniff_claims_job_logs_not_kernel_logs() -> None:
    parser = AppLogParser()
    head = (APP / "runlogs" / "torchrun_sigkill_rank2.log").read_bytes()[:4096]
    assert parser.sniff(head, "torchrun.log") == CLAIM
    nccl = b"node-1:12:12 [0] NCCL INFO Bootstrap : Using eth0:10.0.0.1<0>\n"
    assert parser.sniff(nccl, "anything") == CLAIM
    kernel = b"[ 1234.567890] NVRM: Xid (PCI:0000:3b:00): 79, pid=1, GPU has fallen off the bus.\n[ 1235.000000] python[9]: segfault at 0 ip 00007f in libnccl.so.2[7f+1000]\n"
    assert parser.sniff(kernel, "dmesg.log") == NO_CLAIM
    journal = b"Nov 27 06:00:00 node-1 kernel: NVRM: Xid (PCI:0000:3b:00): 79\nNov 27 06:00:01 node-1 kernel: nccl something\n"
    assert parser.sniff(journal, "kern.log") == NO_CLAIM
    assert parser.sniff(b"step 1 loss 0.5\n", "train.out") == WEAK_CLAIM
    assert parser.sniff(b"step 1 loss 0.5\n", "notes.md") == NO_CLAIM
    assert parser.sniff(b'{"a": 1}', "x.log") == NO_CLAIM


def test_collector_stamp_and_srun_label_are_cut_before_the_rank_prefix() -> None:
    text = (
        "2026-11-27T06:10:00.5Z 3: [rank5]:[E1127 06:10:00.000000000 ProcessGroupNCCL.cpp:616] [Rank 5] Watchdog caught "
        "collective operation timeout: WorkNCCL(SeqNum=7, OpType=BROADCAST, NumelIn=1, NumelOut=1, Timeout(ms)=60000) "
        "ran for 60001 milliseconds before timing out.\n"
    )
    row = parse_text(text, "logs/job.out")[0].row(0, named=True)
    assert (row["kind"], row["rank"], row["seq"], row["op_type"]) == ("watchdog_timeout", 5, 7, "BROADCAST")
    assert attrs(row)["task"] == "3"  # srun's task id is not taken as the rank
    assert row["ts_ns"] == 1795759800500000000 and row["ts_assumption"] is None


def test_ordinary_words_do_not_make_events() -> None:
    text = (
        "[2026-11-27 06:00:00,000] torch.distributed.elastic.rendezvous.dynamic_rendezvous: [INFO] The node 'n1' has closed the rendezvous 'job'.\n"
        "requests.exceptions.ConnectionError: HTTPSConnectionPool(host='hub', port=443): Connection refused\n"
        "wandb: heartbeat ok\n"
        "rank=0 step=10 loss=0.5 timeout=30\n"
    )
    frame, out = parse_text(text)
    assert out.records == 4
    # Only the Python exception line is an event; none of the others is a failure.
    assert frame["kind"].to_list() == ["exception"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.sampled_from([r["line"] for r in TSV_ROWS] + ["", "  exitcode  : -", "[0]:", "x" * 300, "\t"]),
        max_size=30,
    ),
    st.binary(max_size=64),
)
def test_any_mix_of_lines_is_read_without_error(lines: list[str], junk: bytes) -> None:
    data = ("\n".join(lines)).encode() + b"\n" + junk
    frame, out = parse_text(data)
    assert not any(p.problem.startswith("application log not parsed") for p in out.problems)
    assert out.records + sum(out.rejected.values()) >= frame.height
    assert frame["source_line"].is_not_null().all()


# Other PyTorch / NCCL / launcher wordings (written in the form these versions print).
VARIANTS = [
    (
        "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 15.78 GiB total capacity; "
        "14.56 GiB already allocated; 4.75 MiB free; 14.61 GiB reserved in total by PyTorch) If reserved memory is >> "
        "allocated memory try setting max_split_size_mb to avoid fragmentation.",
        {"kind": "cuda_oom"},
    ),
    (
        "[E ProcessGroupNCCL.cpp:828] [Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1, "
        "OpType=BROADCAST, Timeout(ms)=1800000) ran for 1800579 milliseconds before timing out.",
        {"kind": "watchdog_timeout", "rank": 1, "seq": 1, "op_type": "BROADCAST", "timeout_ms": 1800000},
    ),
    (
        "[rank3]:[E ProcessGroupNCCL.cpp:563] [Rank 3] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1, "
        "OpType=_ALLGATHER_BASE, NumelIn=4, NumelOut=32, Timeout(ms)=600000) ran for 600394 milliseconds before timing out.",
        {"kind": "watchdog_timeout", "rank": 3, "op_type": "_ALLGATHER_BASE"},
    ),
    (
        "torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:1275, "
        "internal error, NCCL version 2.14.3",
        {"kind": "nccl_error", "error": "internal error"},
    ),
    (
        "torch.multiprocessing.spawn.ProcessExitedException: process 1 terminated with signal SIGSEGV",
        {"kind": "elastic_failure", "local_rank": 1, "signal": "SIGSEGV"},
    ),
    (
        "RuntimeError: NCCL communicator was aborted on rank 3. Original reason for failure was: [Rank 3] Watchdog caught "
        "collective operation timeout: WorkNCCL(SeqNum=5, OpType=ALLREDUCE, Timeout(ms)=1800000) ran for 1800211 "
        "milliseconds before timing out.",
        {"kind": "watchdog_timeout", "rank": 3, "seq": 5},
    ),
    (
        "[E ProcessGroupNCCL.cpp:1146] [PG 0 Rank 5] ProcessGroupNCCL's watchdog got stuck for 480 seconds without making "
        "progress in monitoring enqueued collectives.",
        {"kind": "heartbeat", "rank": 5, "severity": "error", "stuck_s": "480"},
    ),
    (
        "./run.sh: line 12:  4242 Segmentation fault      (core dumped) python train.py",
        {"kind": "fatal_signal", "pid": 4242, "signal": "SIGSEGV"},
    ),
    (
        "RuntimeError: DataLoader worker (pid 4321) is killed by signal: Bus error. It is possible that dataloader's "
        "workers are out of shared memory. Please try to raise your shared memory limit.",
        {"kind": "fatal_signal", "signal": "SIGBUS", "worker": "dataloader", "worker_pids": "4321"},
    ),
    (
        "ERROR:torch.distributed.elastic.multiprocessing.api:failed (exitcode: -7) local_rank: 0 (pid: 1234) of binary: "
        "/usr/bin/python3",
        {"kind": "elastic_failure", "exit_code": -7, "signal": "SIGBUS", "pid": 1234},
    ),
]


@pytest.mark.parametrize(
    ("line", "want"), VARIANTS, ids=[w["kind"] + str(i) for i, (_, w) in enumerate(VARIANTS)]
)
def test_other_wordings(line: str, want: dict[str, Any]) -> None:
    frame, _ = parse_text(line + "\n", "job.log")
    assert frame.height == 1
    row = frame.row(0, named=True)
    extra = attrs(row)
    for key, value in want.items():
        assert (row[key] if key in row else extra.get(key)) == value, key


def test_multi_rank_log_does_not_take_the_rank_in_its_name() -> None:
    text = (
        APP / "runlogs" / "torchrun_gloo_timeout20s_rank2_stalled.log"
    ).read_text() + "RuntimeError: late\n"
    frame, _ = parse_text(text, "runlogs/torchrun_gloo_timeout20s_rank2_stalled.log")
    sources = set(frame["attrs"].map.get("rank_source").drop_nulls().to_list())
    assert "file-name" not in sources
    assert frame.filter(pl.col("kind") == "exception")["rank"].to_list() == [0, 1, 3, None]


def test_no_kernel_envelope_fixture_is_claimed() -> None:
    parser = AppLogParser()
    envelopes = sorted(p for p in (SAMPLES / "kernel_log" / "envelopes").iterdir() if p.is_file())
    assert len(envelopes) >= 10
    for path in envelopes:
        assert parser.sniff(path.read_bytes()[:4096], path.name) == NO_CLAIM, path.name


def test_every_tsv_line_alone_is_claimed_whatever_the_file_name() -> None:
    parser = AppLogParser()
    for row in TSV_ROWS:
        assert parser.sniff((row["line"] + "\n").encode(), "line.txt") == CLAIM, row["line"]


def test_tsv_lines_through_discovery_land_in_their_kinds(tmp_path: Path) -> None:
    files = {f"node-x/line{i:02d}.txt": row["line"] + "\n" for i, row in enumerate(TSV_ROWS)}
    result = ingest_serial(write_incident(tmp_path / "inc", files))
    frame = result.tables.df("app_events")
    assert result.summary.ledger("app_log").files_parsed == len(TSV_ROWS)
    got = {r["source_file"]: r["kind"] for r in frame.select("source_file", "kind").to_dicts()}
    for i, row in enumerate(TSV_ROWS):
        assert got.get(f"node-x/line{i:02d}.txt") == expected_kind(row), row["line"]
    assert set(frame["host"].drop_nulls()) <= {
        "node-x",
        "192-222-53-60",
        "taurusi8030",
        "hostname-test",
        "H100-2",
        "n122-164-108",
        "shortk8snode10",
    }


def test_impossible_stamps_give_null_times_not_a_lost_file() -> None:
    text = "2026-13-45T99:00:00Z [rank0]: RuntimeError: boom\n[2026-02-30 10:00:00,000] torch.distributed.DistStoreError: Timed out\n"
    frame, out = parse_text(text)
    assert out.records == 2 and not out.problems
    assert frame["kind"].to_list() == ["exception", "rendezvous_failure"]
    assert frame["ts_ns"].to_list() == [None, None]
