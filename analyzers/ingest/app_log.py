"""Job (application) logs → the ``app_events`` table: NCCL, PyTorch c10d, torchrun/elastic, CUDA.

Reads the stdout/stderr of training processes and of their launcher: NCCL ``INFO``/``WARN`` lines
with their ``host:pid:tid [local_rank]`` prefix, ProcessGroupNCCL watchdog and heartbeat lines,
CUDA out-of-memory and CUDA error messages in every PyTorch wording, torchrun / elastic failure
summaries, rendezvous / TCPStore / NCCL bootstrap failures, Python exceptions and fatal signals.

How a file is read (docs/app-logs.md):

1. the text is split into an Arrow string column; the ``[rankN]:`` prefix PyTorch adds is cut
   with Polars string expressions;
2. one combined regex (Polars ``str.contains``) marks the lines that can be events; every other
   line is an accepted record that is *not* a row (its count is in the ledger);
3. classification and field extraction run on the marked lines only, once per line;
4. the multi-line torchrun failure summary is folded into one ``elastic_failure`` row per failed
   process, with ``attrs["first_observed"] = "true"`` for the entry under "Root Cause (first
   observed failure)": torchrun's first exit, *not* the root cause;
5. rank: the ``[rankN]:`` prefix, then the ``[Rank N]`` tag of the default group, then the NCCL
   init lines of the same pid (world communicator), then the file name (``rank3.log``,
   ``rank_3``, ``3.log``); the manifest pid map is applied later by the identity stage.

Times: PyTorch/glog stamps (``[E321 02:07:08.408271257 …]``, ``E0323 21:57:08.583000``) carry no
year: it comes from the manifest, its capture time or the file's mtime; python-logging and ISO
stamps are read as written. The zone is the manifest host zone, else UTC. What was assumed is in
``ts_assumption``.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import polars as pl
import pyarrow as pa

from ..report import Problem
from ..selftel import SourceWire
from .base import CLAIM, NO_CLAIM, WEAK_CLAIM, FileContext, ParseOutput, SourceParser
from .manifest import normalize_pci, tzinfo_for

REJECT_REASONS = ("undecodable-line",)
MAX_MESSAGE_CHARS = 4000

# --- prefixes ---------------------------------------------------------------------------------
_RANK_PREFIX = r"^(?:\[\d+\]\s+)?\[(?:rank|RANK)(\d+)\]:\s?"
_NCCL = re.compile(
    r"^\s*(?P<host>[^\s:\[\]]+):(?P<pid>\d+):(?P<tid>\d+) \[(?P<lr>\d+)\] "
    r"(?:[\d:.\-T ]+ )?(?:(?P<src>\S+:\d+) )?NCCL (?P<level>INFO|WARN|ERROR|TRACE|ABORT) ?(?P<msg>.*)$"
)
_NCCL_BARE = re.compile(r"^\s*NCCL (?P<level>INFO|WARN) (?P<msg>.*)$")

# --- one combined marker: a line can be an event only if it matches this ----------------------
_MARKERS = (
    r"NCCL (?:INFO|WARN|ERROR|ABORT)|NCCL version|NCCL [Ee]rror|nccl\w*Error|Watchdog caught|"
    r"detected by watchdog|Timeout at NCCL work|[Hh]eart ?beat|watchdog got stuck|dump signal|"
    r"Some NCCL operations|entire process down|terminate called|closing signal|"
    r"out of memory|OutOfMemoryError|CUDA error|CUDA failure|cudaError|"
    r"exitcode|ChildFailedError|first observed failure|^\s*\[\d+\]:\s*$|^\s*(?:time|host|rank|error_file|traceback)\s*:|"
    r"^\S+ FAILED\s*$|^Failures:|[Rr]endezvous|TCPStore|DistStoreError|DistNetworkError|\[c10d|"
    r"clients joined|Socket Timeout|Connection refused|EADDRINUSE|SIG[A-Z]+ received|^PC: @|"
    r"Fatal Python error|Caught signal|DataLoader worker|\(core dumped\)|terminated with (?:signal|exit code)|bus error encountered in worker|didn't join collective|mismatch between collectives|"
    r"^\s*(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Interrupt)(?::|\s*$)"
)

_NCCL_INFO_KEEP = r"Init COMPLETE|Bootstrap|NET/(?:IB|Socket)\s*: Using|NCCL version|\S:\d+ -> \d|Using network|[Ww]atchdog|[Ee]rror|[Ff]ail|[Tt]imeout|[Aa]bort"

# --- classification (first match wins) --------------------------------------------------------
_WATCHDOG_TIMEOUT = re.compile(
    r"Watchdog caught collective operation timeout: WorkNCCL\((?P<args>.*?)\) ran for (?P<ran>\d+) milliseconds"
)
_WORK_ARG = re.compile(r"(\w+)(?:\(ms\))?=([^,]+)")
_WATCHDOG_FAILURE = re.compile(
    r"(?:detected by watchdog at work(?: sequence id)?|Timeout at NCCL work):?\s*(?P<seq>-?\d+)"
    r"(?:.*?last enqueued (?:NCCL )?work:?\s*(?P<enq>-?\d+))?(?:.*?last completed (?:NCCL )?work:?\s*(?P<done>-?\d+))?"
)
_HEARTBEAT = re.compile(
    r"heart ?beat monitor|ProcessGroupNCCL.*heart ?beat|watchdog got stuck", re.IGNORECASE
)
_HEARTBEAT_BAD = re.compile(r"timed out|got stuck|timeout", re.IGNORECASE)
_STUCK_SECONDS = re.compile(r"stuck for (\d+) seconds")
_DUMP_SIGNAL = re.compile(
    r"Received a dump signal(?: due to a collective timeout)? from (?:rank (?P<r>\d+)|(?P<local>this local rank))"
)
_TEARDOWN = re.compile(
    r"Some NCCL operations have failed or timed out|taking the entire process down|terminate called after throwing|"
    r"Sending process (?P<pid>\d+) closing signal (?P<sig>SIG\w+)"
)
_OOM = re.compile(r"CUDA out of memory|OutOfMemoryError|CUDA error: out of memory|cudaErrorMemoryAllocation")
_CUDA_ERROR = re.compile(r"CUDA error:\s*(?P<err>[^.\n]+?)(?:\s*$|\.|\n| \()|CUDA driver error|cudaError\w+")
_NCCL_ERROR = re.compile(
    r"NCCL error in: (?P<where>[^,]+), (?P<err>[^.,(\n]+)|NCCL Error (?P<code>\d+): (?P<err2>[^.,(\n]+)|"
    r"(?P<name>ncclUnhandledCudaError|ncclSystemError|ncclInternalError|ncclInvalidArgument|ncclInvalidUsage|ncclRemoteError|ncclInProgress)"
)
_ELASTIC_FAILED = re.compile(
    r"failed \(exitcode: (?P<code>-?\d+)\) local_rank: (?P<lr>\d+) \(pid: (?P<pid>\d+)\)(?: of binary: (?P<bin>\S+))?"
)
_SPAWN_EXIT = re.compile(
    r"process (?P<n>\d+) terminated with (?:signal (?P<sig>SIG\w+)|exit code (?P<code>-?\d+))"
)
_EF_HEADER = re.compile(r"^\s*\[(\d+)\]:\s*$")
_EF_TIME = re.compile(r"^\s*time\s*: (?P<v>\S.*?)\s*$")
_EF_HOST = re.compile(r"^\s*host\s*: (?P<v>\S+)\s*$")
_EF_RANK = re.compile(r"^\s*rank\s*: (?P<r>-?\d+)(?: \(local_rank: (?P<lr>-?\d+)\))?")
_EF_EXIT = re.compile(r"^\s*exitcode\s*: (?P<code>-?\d+) \(pid: (?P<pid>\d+)\)(?:\s*\((?P<sig>SIG\w+)\))?")
_EF_ERRFILE = re.compile(r"^\s*error_file\s*: ?(?P<v>.*)$")
_EF_TRACEBACK = re.compile(r"^\s*traceback\s*: ?(?P<v>.*)$")
_SIGNAL_RECEIVED = re.compile(r"Signal (?P<num>\d+) \((?P<sig>SIG\w+)\) received by PID (?P<pid>\d+)")
_EF_SUMMARY = re.compile(r"ChildFailedError|Root Cause \(first observed failure\)|^Failures:|^\S+ FAILED\s*$")
_RENDEZVOUS = re.compile(
    r"Rendezvous\w*Error|rendezvous.*(?:timed out|timeout|failed|closed)|DistStoreError|DistNetworkError|"
    r"clients joined|Socket Timeout|client socket has (?:timed out|failed to connect)|"
    r"server socket has failed|EADDRINUSE|TCPStore.*(?:timed out|failed|refused)|(?:c10d|store|socket).*Connection refused|"
    r"NCCL WARN Bootstrap|bootstrap.*(?:failed|timed out)",
    re.IGNORECASE,
)
# Info-level lines of the rendezvous/store code describe normal progress (a node closing the
# rendezvous at the end of a run), not failures.
_INFO_LEVEL = re.compile(r"^\s*\[?I\d{3,4} |\[INFO\]|^\S+ \S+ INFO ")
_FATAL = re.compile(
    r"\*\*\* (?P<sig>SIG[A-Z]+) received at time=(?P<t>\d+)|^PC: @\s+(?P<pc>\S+)\s+\S+\s+(?P<fn>\S.*)$|"
    r"Fatal Python error: (?P<fpe>[^\n]+)|Caught signal (?P<num>\d+) \((?P<sig2>SIG\w+)\)|"
    r"(?:(?P<spid>\d+) +)?(?P<shell>Segmentation fault|Bus error|Aborted|Floating point exception|Illegal instruction)\s+\(core dumped\)"
)
# c10d lines at info/debug level (socket connected, store read callbacks at shutdown) are context.
_QUIET_C10D = re.compile(r"^\s*\[?I\d{4} |^\s*\[I |\[c10d - (?:debug|trace)\]")
_DL_WORKER = re.compile(
    r"DataLoader worker \(pids?\(?s?\)? ?(?P<pids>[\d, ]+)\)? (?:is killed by signal: (?P<how>[\w ]+)|exited unexpectedly)|"
    r"Unexpected bus error encountered in worker"
)
_DESYNC = re.compile(
    r"finished collective #(?P<done>\d+), but didn't join collective #(?P<seq>\d+)|mismatch between collectives"
)
_EXCEPTION = re.compile(
    r"^\s*(?P<type>(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Interrupt))(?::\s*(?P<msg>.*)|\s*$)"
)
_GLOO_TIMEOUT = re.compile(r"Timed out waiting (?P<ms>\d+)ms for (?P<op>\w+) operation")

# --- fields -----------------------------------------------------------------------------------
_TORCH_RANK_TAG = re.compile(r"\[(?:PG (?:ID )?(?P<pg>\d+) (?:PG GUID (?P<guid>\S+) )?)?Rank (?P<r>\d+)\]")
_NCCL_INIT = re.compile(
    r"comm (?P<comm>0x[0-9a-f]+) rank (?P<rank>\d+) nranks (?P<nranks>\d+) cudaDev (?P<dev>\d+)"
    r"(?: nvmlDev (?P<nvml>\d+))? busId (?P<bus>[0-9a-fA-F]+)(?: commId (?P<cid>0x[0-9a-f]+))?",
    re.IGNORECASE,
)
_NCCL_NET = re.compile(r"NET/(?P<net>IB|Socket)\s*: Using (?P<devs>.*?)(?:\s*;\s*OOB (?P<oob>\S+))?\s*$")
_NCCL_IP = re.compile(r"(?P<if>[\w.\-]+):(?P<ip>[0-9a-fA-F.:]+?)<\d+>")
_NCCL_BOOTSTRAP = re.compile(r"Bootstrap\s*:\s*Using (?P<addr>\S+)")
_NCCL_VERSION = re.compile(r"NCCL version (?P<v>\S+)")
_NCCL_ERRPROP = re.compile(r"(?P<where>\S+:\d+) -> (?P<res>\d+)")
_NCCL_PEER = re.compile(
    r"Got completion from peer (?P<peer>\S+?)<(?P<port>\d+)> with (?:status=(?P<st>\d+)|error (?P<err>\d+))"
    r"(?:.*?opcode[= ](?P<op>\d+))?(?:.*?vendor err (?P<ve>\d+))?(?:.*?\((?P<dir>Send|Recv)\))?"
    r"(?:.*?localGid (?P<lgid>\S+))?(?:.*?remoteGids?\s*(?P<rgid>\S+))?"
)
_NCCL_REMOTE = re.compile(
    r"(?:peer|remote)\s+(?:process\s+)?(?:\w+\s+)?(?P<peer>\d{1,3}(?:\.\d{1,3}){3})(?:<(?P<port>\d+)>)?"
)
_NCCL_CUDA = re.compile(r"Cuda failure (?P<code>\d+) '(?P<err>[^']*)'")
_SIZE = r"(?P<{}>[\d.]+) ?(?P<{}u>[KMGT]i?B|bytes|B)"
_UNITS = {
    "B": 1,
    "bytes": 1,
    "KiB": 1 << 10,
    "MiB": 1 << 20,
    "GiB": 1 << 30,
    "TiB": 1 << 40,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
}
_OOM_FIELDS = {
    "requested_bytes": re.compile(r"Tried to allocate " + _SIZE.format("n", "n")),
    "total_bytes": re.compile(
        _SIZE.format("n", "n") + r" total capacity|total capac\w+ of " + _SIZE.format("m", "m")
    ),
    "free_bytes": re.compile(
        _SIZE.format("n", "n") + r" free\b|of which " + _SIZE.format("m", "m") + r" is free"
    ),
    "process_bytes": re.compile(r"this process has " + _SIZE.format("n", "n") + r" memory in use"),
    "allocated_bytes": re.compile(
        _SIZE.format("n", "n") + r" already allocated|" + _SIZE.format("m", "m") + r" is allocated by PyTorch"
    ),
    "reserved_unallocated_bytes": re.compile(
        _SIZE.format("n", "n") + r" is reserved by PyTorch but unallocated"
    ),
    "reserved_total_bytes": re.compile(_SIZE.format("n", "n") + r" reserved in total by PyTorch"),
}
_OOM_OTHER_PROCESS = re.compile(r"Process (?P<pid>\d+) has " + _SIZE.format("n", "n") + r" memory in use")
_OOM_DEVICE = re.compile(r"\(GPU (\d+);|GPU (\d+) has a total")
_NAME_RANK = re.compile(r"(?<![a-z_])rank[_-]?(\d+)(?!\d)", re.IGNORECASE)
_NAME_NUMBER = re.compile(r"^(\d+)\.(?:log|out|err|txt)$")

# --- timestamps -------------------------------------------------------------------------------
_GLOG = re.compile(
    r"^\s*\[?[IWEF](?P<mo>\d{1,2})(?P<d>\d{2}) (?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})(?:\.(?P<f>\d{1,9}))?\b"
)
_ISO = re.compile(
    r"^\s*\[?(?P<date>\d{4}-\d{2}-\d{2})[ T_](?P<time>\d{2}:\d{2}:\d{2})(?:[,.](?P<f>\d{1,9}))?\s*(?P<z>Z|UTC|[+-]\d{2}:?\d{2})?"
)
_LEADING_STAMP = r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})) "
_TASK_LABEL = r"^\s{0,4}(\d{1,5}): "
_EF_TIME_VALUE = re.compile(r"^(\d{4}-\d{2}-\d{2})_(\d{2}:\d{2}:\d{2})$")

_NCCL_RESULTS = {
    "1": "unhandled cuda error",
    "2": "unhandled system error",
    "3": "internal error",
    "4": "invalid argument",
    "5": "invalid usage",
    "6": "remote error",
    "7": "in progress",
}
_SIGNALS = {
    1: "SIGHUP",
    2: "SIGINT",
    4: "SIGILL",
    6: "SIGABRT",
    7: "SIGBUS",
    8: "SIGFPE",
    9: "SIGKILL",
    11: "SIGSEGV",
    13: "SIGPIPE",
    15: "SIGTERM",
}
_FPE_SIGNAL = {
    "segmentation fault": "SIGSEGV",
    "aborted": "SIGABRT",
    "bus error": "SIGBUS",
    "floating point exception": "SIGFPE",
    "illegal instruction": "SIGILL",
}

# Kinds and their default severity.
SEVERITY = {
    "nccl_init": "info",
    "nccl_info": "info",
    "nccl_warn": "warning",
    "nccl_errprop": "warning",
    "nccl_error": "error",
    "watchdog_timeout": "error",
    "watchdog_failure": "error",
    "heartbeat": "info",
    "dump_signal": "warning",
    "teardown": "info",
    "desync": "error",
    "cuda_oom": "error",
    "cuda_error": "error",
    "elastic_failure": "error",
    "elastic_summary": "info",
    "rendezvous_failure": "error",
    "fatal_signal": "critical",
    "exception": "error",
    "c10d": "info",
}


def _bytes(match: re.Match[str]) -> int | None:
    for group in ("n", "m"):
        value = match.groupdict().get(group)
        if value is not None:
            unit = match.group(group + "u")
            return int(float(value) * _UNITS.get(unit, 1))
    return None


@dataclass
class _Row:
    line: int
    kind: str
    message: str
    rank: int | None = None
    rank_source: str | None = None
    host: str | None = None
    pid: int | None = None
    tid: int | None = None
    local_rank: int | None = None
    gpu_index: int | None = None
    pci_bus_id: str | None = None
    seq: int | None = None
    op_type: str | None = None
    timeout_ms: int | None = None
    peer: str | None = None
    exit_code: int | None = None
    signal: str | None = None
    severity: str | None = None
    ts_text: str | None = None
    attrs: dict[str, str] = field(default_factory=dict)


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace").lstrip("\ufeff")


# Kernel-log envelopes: raw dmesg, /dev/kmsg, dmesg -T, dmesg --time-format iso (comma before the
# fraction), dmesg -x facility/level columns, syslog/journal lines with a ``kernel:`` tag.
_KERNEL_ENVELOPE = re.compile(
    r"^(?:<\d+>)?\[\s*\d+\.\d+\]|^\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\]|"
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d,\d+[+-]\d\d:\d\d |^(?:kern|user|daemon|syslog|auth|local\d)\s*:\w+\s*: |"
    r"^\S+ +\d+ \d\d:\d\d:\d\d \S+ kernel:|^\S+ \S+ kernel:|^\d+,\d+,\d+,"
)


# Lines only job logs contain (NCCL, PyTorch distributed, launcher, CUDA runtime messages).
_SNIFF_MARKERS = re.compile(
    r"^\s*\S+:\d+:\d+ \[\d+\] .*NCCL (?:INFO|WARN)|NCCL version \d|NCCL [Ee]rror|ProcessGroupNCCL|torch[./]distributed|"
    r"^\[rank\d+\]:|Watchdog caught|CUDA out of memory|OutOfMemoryError|CUDA error:|ChildFailedError|torchrun|"
    r"OMP_NUM_THREADS environment variable for each process|Traceback \(most recent call last\)|"
    r"\[c10d|TCPStore|Fatal Python error|\*\*\* SIG[A-Z]+ received at time=|^PC: @ |didn't join collective|"
    r"Root Cause \(first observed failure\)|^\s*exitcode\s*: -?\d+ \(pid: \d+\)|Signal \d+ \(SIG\w+\) received by PID|"
    r"terminate called after throwing|c10_cuda_check|c10::"
)


def sniff_text(head: bytes, name: str) -> int:
    """How strongly ``head`` looks like a job log: NCCL/torch markers claim, kernel envelopes don't."""
    if head.count(b"\x00") * 10 > len(head):
        return NO_CLAIM  # mostly binary; a few NUL bytes (a crash's torn write) are common in logs
    text = _text(head.replace(b"\x00", b""))
    stripped = text.lstrip()
    if stripped.startswith(("{", "[{", "<", "%PDF")) or stripped.startswith("[\n"):
        return NO_CLAIM
    lines = [ln for ln in text.splitlines()[:60] if ln.strip()]
    if not lines:
        return NO_CLAIM
    kernelish = sum(1 for ln in lines if _KERNEL_ENVELOPE.match(ln) or " kernel: " in ln)
    if kernelish * 2 >= len(lines):
        return NO_CLAIM
    if any(_SNIFF_MARKERS.search(ln) for ln in lines):
        return CLAIM
    lower = name.lower()
    named = lower.endswith((".log", ".out", ".err")) or "stdout" in lower or "stderr" in lower
    # Generic event shapes (a Python exception line, "host : …") alone are weak evidence.
    if named or any(re.search(_MARKERS, ln) for ln in lines):
        return WEAK_CLAIM
    return NO_CLAIM


class AppLogParser(SourceParser):
    """stdout/stderr of training processes and their launcher (NCCL, PyTorch, torchrun, CUDA)."""

    source = "app_log"
    tables = ("app_events",)
    telemetry = SourceWire(component_id="app_log", scope=__name__, reasons=REJECT_REASONS)

    def sniff(self, head: bytes, name: str) -> int:
        """Claim job logs by their NCCL/torch markers (CLAIM); a ``.log`` name alone is a weak claim."""
        try:
            return sniff_text(head, name)
        except Exception:  # sniffing must never raise
            return NO_CLAIM

    def parse(self, ctx: FileContext) -> ParseOutput:
        """Read one job log; every line is accounted for, never raises on content."""
        out = ParseOutput()
        try:
            rows, records = parse_rows(ctx, out)
        except Exception as exc:  # a bug must not lose the file's ledger
            out.problems.append(
                Problem(ctx.rel, None, f"application log not parsed: {type(exc).__name__}: {exc}")
            )
            return out
        out.records = records
        out.tables["app_events"] = _to_table(ctx, rows)
        return out


# ---------------------------------------------------------------------------------------------
def parse_rows(ctx: FileContext, out: ParseOutput) -> tuple[list[_Row], int]:
    """Classified rows of one file, plus the number of accepted (non-empty) lines."""
    text = _text(ctx.data)
    raw = text.split("\n")
    if raw and raw[-1] == "":
        raw.pop()
    frame = pl.DataFrame({"raw": raw}, schema={"raw": pl.String}).with_row_index("line", offset=1)
    frame = frame.with_columns(pl.col("raw").str.strip_chars_end("\r"))
    bad = frame.filter(
        pl.col("raw").str.contains("\ufffd", literal=True) | pl.col("raw").str.contains("\x00", literal=True)
    )
    if bad.height:
        out.reject("undecodable-line", bad.height)
        out.problems.append(
            Problem(
                ctx.rel, int(bad["line"][0]), f"{bad.height} line(s) are not UTF-8 text; counted as rejected"
            )
        )
        frame = frame.filter(~pl.col("line").is_in(bad["line"].implode()))
    records = frame.filter(pl.col("raw").str.strip_chars() != "").height
    # A collector's stamp (``kubectl logs --timestamps``, journald export) may precede everything.
    frame = frame.with_columns(
        pl.col("raw").str.extract(_LEADING_STAMP, 1).alias("stamp"),
        pl.col("raw").str.replace(_LEADING_STAMP, "").alias("raw"),
    )
    # ``srun --label`` prefixes the task id ("3: "); it is the rank only when srun starts one task
    # per GPU, so it is kept as attrs["task"], not taken as the rank.
    frame = frame.with_columns(
        pl.col("raw").str.extract(_TASK_LABEL, 1).alias("task"),
        pl.col("raw").str.replace(_TASK_LABEL, "").alias("raw"),
    )
    frame = frame.with_columns(
        pl.col("raw").str.extract(_RANK_PREFIX, 1).cast(pl.Int32, strict=False).alias("prefix_rank"),
        pl.col("raw").str.replace(_RANK_PREFIX, "").alias("body"),
    )
    # Python tracebacks: remember the innermost "File ..., line N, in f" per prefix for exceptions.
    frames = frame.filter(pl.col("body").str.contains(r'^\s+File "'))
    # NCCL_DEBUG=INFO prints thousands of topology lines (channels, rings, trees); only init,
    # network and error-propagation lines become rows, the rest are counted records.
    nccl_noise = pl.col("body").str.contains("NCCL INFO", literal=True) & ~pl.col("body").str.contains(
        _NCCL_INFO_KEEP
    )
    marked = frame.filter(pl.col("body").str.contains(_MARKERS) & ~nccl_noise)
    last_frame: dict[int | None, tuple[int, str]] = {}
    frame_lines = {
        int(n): (r, b.strip()) for n, r, b in frames.select("line", "prefix_rank", "body").iter_rows()
    }
    rows: list[_Row] = []
    pending_frames = sorted(frame_lines.items())
    fi = 0
    for line_no, prefix_rank, body, stamp, task in marked.select(
        "line", "prefix_rank", "body", "stamp", "task"
    ).iter_rows():
        while fi < len(pending_frames) and pending_frames[fi][0] < line_no:
            number, (frank, fbody) = pending_frames[fi]
            last_frame[frank] = (number, fbody)
            fi += 1
        row = classify(int(line_no), body)
        if row is None:
            continue
        if prefix_rank is not None:
            row.rank, row.rank_source = int(prefix_rank), "log-prefix"
        if stamp is not None:
            row.attrs["_stamp"] = stamp
        if task is not None:
            row.attrs["task"] = task
        if row.kind == "exception":
            found = last_frame.get(prefix_rank)
            if found is not None and line_no - found[0] <= 3:
                row.attrs["last_frame"] = found[1]
        rows.append(row)
    rows = _fold_elastic_summary(rows)
    _attribute(rows, ctx)
    _timestamps(rows, ctx)
    return rows, records


def classify(line_no: int, body: str) -> _Row | None:
    """One marked line → a row (or ``None`` when the marker was a false alarm)."""
    msg = body.strip()[:MAX_MESSAGE_CHARS]
    nccl = _NCCL.match(body)
    if nccl is None:
        bare = _NCCL_BARE.match(body)
        if bare is None and (version := _NCCL_VERSION.search(body)) and "NCCL version" in body[:40]:
            row = _Row(line_no, "nccl_info", msg)
            row.attrs["nccl_version"] = version.group("v")
            return row
        if bare is not None:
            row = _Row(line_no, "nccl_info", msg)
            return _nccl_line(row, bare.group("level"), bare.group("msg"), None)
    else:
        row = _Row(
            line_no,
            "nccl_info",
            msg,
            host=nccl.group("host"),
            pid=int(nccl.group("pid")),
            tid=int(nccl.group("tid")),
            local_rank=int(nccl.group("lr")),
        )
        if not (_WATCHDOG_TIMEOUT.search(body) or _OOM.search(body)):
            return _nccl_line(row, nccl.group("level"), nccl.group("msg"), nccl.group("src"))
    row = _Row(line_no, "", msg)
    if nccl is not None:
        row.host, row.pid, row.tid = nccl.group("host"), int(nccl.group("pid")), int(nccl.group("tid"))
        row.local_rank = int(nccl.group("lr"))
    _torch_rank(row, body)
    if m := _WATCHDOG_TIMEOUT.search(body):
        row.kind = "watchdog_timeout"
        args = {k.lower(): v.strip() for k, v in _WORK_ARG.findall(m.group("args"))}
        row.seq = _int(args.get("seqnum"))
        row.op_type = args.get("optype")
        row.timeout_ms = _int(args.get("timeout"))
        row.attrs["ran_for_ms"] = m.group("ran")
        for key in ("numelin", "numelout"):
            if key in args:
                row.attrs["numel_in" if key == "numelin" else "numel_out"] = args[key]
        if "terminated with exception" in body:
            row.attrs["watchdog_terminated"] = "true"
    elif m := _WATCHDOG_FAILURE.search(body):
        row.kind = "watchdog_failure"
        row.seq = int(m.group("seq"))
        if m.group("enq") is not None:
            row.attrs["last_enqueued"] = m.group("enq")
        if m.group("done") is not None:
            row.attrs["last_completed"] = m.group("done")
    elif m := _DUMP_SIGNAL.search(body):
        row.kind = "dump_signal"
        if m.group("r") is not None:
            row.attrs["detector_rank"] = m.group("r")
        else:
            row.attrs["detector"] = "this local rank"
            if row.rank is not None:
                row.attrs["detector_rank"] = str(row.rank)
    elif _HEARTBEAT.search(body):
        row.kind = "heartbeat"
        if _HEARTBEAT_BAD.search(body):
            row.severity = "error"
            if s := _STUCK_SECONDS.search(body):
                row.attrs["stuck_s"] = s.group(1)
    elif m := _TEARDOWN.search(body):
        row.kind = "teardown"
        if m.group("pid"):
            row.pid, row.signal = int(m.group("pid")), m.group("sig")
            row.attrs["actor"] = "launcher"
    elif _OOM.search(body):
        row.kind = "cuda_oom"
        _oom_fields(row, body)
    elif m := _NCCL_ERROR.search(body):
        row.kind = "nccl_error"
        err = m.group("err") or m.group("err2") or m.group("name")
        row.attrs["error"] = err.strip()
        if m.group("code"):
            row.attrs["nccl_result"] = m.group("code")
        if m.group("where"):
            row.attrs["where"] = m.group("where")
    elif m := _CUDA_ERROR.search(body):
        row.kind = "cuda_error"
        if m.group("err"):
            row.attrs["error"] = m.group("err").strip()
        if "uncorrectable ECC" in body:
            row.severity = "critical"
    elif m := _ELASTIC_FAILED.search(body):
        row.kind = "elastic_failure"
        row.exit_code, row.local_rank, row.pid = int(m.group("code")), int(m.group("lr")), int(m.group("pid"))
        row.signal = _signal_of_exit(row.exit_code)
        if m.group("bin"):
            row.attrs["binary"] = m.group("bin")
        if a := re.match(r"^\s*[IWEF]\d{4} \S+ (\d+) ", body):
            row.attrs["agent_pid"] = a.group(1)
        row.rank = None  # the agent's line: the child's global rank is not on it
        row.rank_source = None
    elif m := _SPAWN_EXIT.search(body):
        # torch.multiprocessing.spawn: "process N terminated with signal SIGSEGV / exit code C".
        row.kind = "elastic_failure"
        row.local_rank = int(m.group("n"))
        row.attrs["launcher"] = "mp.spawn"
        if m.group("sig"):
            row.signal = m.group("sig")
        else:
            row.exit_code = int(m.group("code"))
    elif _EF_HEADER.match(body):
        row.kind = "_ef_header"
    elif m := _EF_EXIT.match(body):
        row.kind = "elastic_failure"
        row.exit_code, row.pid = int(m.group("code")), int(m.group("pid"))
        row.signal = m.group("sig") or _signal_of_exit(row.exit_code)
        row.attrs["field"] = "exitcode"
    elif m := _EF_TRACEBACK.match(body):
        row.kind = "elastic_failure"
        row.attrs["field"] = "traceback"
        row.attrs["traceback"] = m.group("v")
        if s := _SIGNAL_RECEIVED.search(body):
            row.signal, row.pid = s.group("sig"), int(s.group("pid"))
            row.exit_code = -int(s.group("num"))
    elif m := _EF_RANK.match(body):
        row.kind = "_ef_rank"
        row.rank, row.rank_source = int(m.group("r")), "launcher-summary"
        if m.group("lr") is not None:
            row.local_rank = int(m.group("lr"))
    elif m := _EF_TIME.match(body):
        row.kind = "_ef_time"
        row.ts_text = m.group("v")
    elif m := _EF_HOST.match(body):
        row.kind = "_ef_host"
        row.attrs["host"] = m.group("v")
    elif _EF_ERRFILE.match(body):
        row.kind = "_ef_errfile"
        row.attrs["error_file"] = _EF_ERRFILE.match(body).group("v")  # type: ignore[union-attr]
    elif _EF_SUMMARY.search(body):
        row.kind = "elastic_summary"
        if "first observed failure" in body:
            row.attrs["section"] = "first_observed"
    elif m := _DL_WORKER.search(body):
        # A DataLoader worker (a child of the rank) died: the rank's own crash comes later, if at all.
        row.kind = "fatal_signal"
        row.attrs["worker"] = "dataloader"
        if m.group("pids"):
            row.attrs["worker_pids"] = ",".join(re.findall(r"\d+", m.group("pids")))
        how = (m.group("how") or "bus error").strip().lower()
        row.signal = _FPE_SIGNAL.get(how, "SIGKILL" if how.startswith("kill") else None)
        if "bus error" in body.lower():
            row.signal = "SIGBUS"
    elif m := _FATAL.search(body):
        row.kind = "fatal_signal"
        if m.group("sig") or m.group("sig2"):
            row.signal = m.group("sig") or m.group("sig2")
        elif m.group("shell"):
            # The shell's report of a child's death ("./run.sh: line 12: 4242 Segmentation fault").
            row.signal = _FPE_SIGNAL.get(m.group("shell").lower())
            if m.group("spid"):
                row.pid = int(m.group("spid"))
        elif m.group("fpe"):
            row.attrs["error"] = m.group("fpe").strip()
            row.signal = _FPE_SIGNAL.get(m.group("fpe").strip().lower())
        elif m.group("fn"):
            row.attrs["frame"] = m.group("fn").strip()
            row.attrs["pc"] = m.group("pc")
            row.severity = "info"
    elif m := _DESYNC.search(body):
        row.kind = "desync"
        if m.group("seq"):
            row.seq = int(m.group("seq"))
            row.attrs["last_finished"] = m.group("done")
            if r := re.match(r"^\s*\[(\d+)\]", body):
                row.rank, row.rank_source = int(r.group(1)), "log-prefix"
    elif "[c10d" in body and _QUIET_C10D.search(body):
        row.kind = "c10d"
    elif _RENDEZVOUS.search(body) and not _INFO_LEVEL.search(body):
        row.kind = "rendezvous_failure"
        _rendezvous_fields(row, body)
    elif "[c10d" in body:
        row.kind = "c10d"
    elif m := _EXCEPTION.match(body):
        row.kind = "exception"
        row.attrs["exc_type"] = m.group("type")
        if g := _GLOO_TIMEOUT.search(body):
            row.timeout_ms, row.op_type = int(g.group("ms")), g.group("op").upper()
            row.attrs["backend"] = "gloo"
    else:
        return None
    return row


def _nccl_line(row: _Row, level: str, msg: str, src: str | None) -> _Row:
    if src:
        row.attrs["src"] = src
    if level in ("WARN", "ERROR", "ABORT"):
        row.kind = "nccl_warn"
        if m := _NCCL_PEER.search(msg):
            row.peer = m.group("peer")
            row.attrs["peer_port"] = m.group("port")
            status = m.group("st") or m.group("err")
            row.attrs["status"] = status
            row.attrs["status_form"] = "status" if m.group("st") else "error"
            for key, group in (
                ("opcode", "op"),
                ("vendor_err", "ve"),
                ("direction", "dir"),
                ("local_gid", "lgid"),
                ("remote_gid", "rgid"),
            ):
                if m.group(group):
                    row.attrs[key] = m.group(group)
            row.severity = "error"
        elif m := _NCCL_CUDA.search(msg):
            row.attrs["cuda_error"], row.attrs["error"] = m.group("code"), m.group("err")
            row.severity = "error"
        elif "Bootstrap" in msg or "bootstrap" in msg:
            row.kind = "rendezvous_failure"
            row.attrs["reason"] = "nccl-bootstrap"
        else:
            if m := _NCCL_REMOTE.search(msg):
                row.peer = m.group("peer")
            lowered = msg.lower()
            for needle in (
                "unhandled system error",
                "remote process exiting",
                "unhandled cuda error",
                "connection closed",
                "timeout",
            ):
                if needle in lowered:
                    row.attrs["error"] = needle
                    break
        return row
    if "Init COMPLETE" in msg and (m := _NCCL_INIT.search(msg)):
        row.kind = "nccl_init"
        row.attrs.update(
            comm=m.group("comm"), comm_rank=m.group("rank"), nranks=m.group("nranks"), cuda_dev=m.group("dev")
        )
        if m.group("cid"):
            row.attrs["comm_id"] = m.group("cid")
        if m.group("nvml") is not None:
            row.gpu_index = int(m.group("nvml"))
            row.attrs["nvml_dev"] = m.group("nvml")
        row.pci_bus_id = normalize_pci(m.group("bus"))
        row.attrs["bus_id"] = m.group("bus")
        return row
    # "file.cc:123 -> 6": an ncclResult_t error travelling up the call chain.
    if (m := _NCCL_ERRPROP.search(msg)) and (
        msg.rstrip().endswith(f"-> {m.group('res')}") or "[" in msg.split("->", 1)[-1]
    ):
        row.kind = "nccl_errprop"
        row.attrs["nccl_result"] = m.group("res")
        row.attrs["where"] = m.group("where")
        if m.group("res") in _NCCL_RESULTS:
            row.attrs["error"] = _NCCL_RESULTS[m.group("res")]
        return row
    if m := _NCCL_NET.search(msg):
        devices = re.findall(r"\[\d+\]([\w.\-]+(?::\d+)?)", m.group("devs"))
        row.attrs["net"] = m.group("net")
        if devices:
            row.attrs["nic"] = ",".join(d.split(":")[0] if m.group("net") == "IB" else d for d in devices)
        elif m.group("net") == "Socket":
            ips = _NCCL_IP.findall(m.group("devs"))
            if ips:
                row.attrs["nic"] = ips[0][0]
        if m.group("oob") and (ip := _NCCL_IP.search(m.group("oob"))):
            row.attrs["ip"], row.attrs["oob_if"] = ip.group("ip"), ip.group("if")
        elif m.group("net") == "Socket" and (ip := _NCCL_IP.search(m.group("devs"))):
            row.attrs["ip"] = ip.group("ip")
    elif m := _NCCL_BOOTSTRAP.search(msg):
        if ip := _NCCL_IP.search(m.group("addr")):
            row.attrs["ip"], row.attrs["bootstrap_if"] = ip.group("ip"), ip.group("if")
    elif m := _NCCL_VERSION.search(msg if "NCCL version" in msg else "NCCL " + msg):
        row.attrs["nccl_version"] = m.group("v")
    return row


def _torch_rank(row: _Row, body: str) -> None:
    """``[Rank N]`` of the default group (``[PG 0 …]``, ``default_pg`` or no PG) is the global rank."""
    m = _TORCH_RANK_TAG.search(body)
    if m is None:
        return
    pg, guid = m.group("pg"), m.group("guid")
    if pg is None or pg == "0" or (guid and "default_pg" in guid):
        row.rank, row.rank_source = int(m.group("r")), "log-tag"
    else:
        row.attrs["pg"], row.attrs["pg_rank"] = pg, m.group("r")


def _oom_fields(row: _Row, body: str) -> None:
    for key, pattern in _OOM_FIELDS.items():
        if m := pattern.search(body):
            value = _bytes(m)
            if value is not None:
                row.attrs[key] = str(value)
    if "reserved_unallocated_bytes" not in row.attrs and {"reserved_total_bytes", "allocated_bytes"} <= set(
        row.attrs
    ):
        # Before PyTorch 2.1 the message gave reserved and allocated; their difference is the slack.
        diff = int(row.attrs["reserved_total_bytes"]) - int(row.attrs["allocated_bytes"])
        row.attrs["reserved_unallocated_bytes"] = str(max(diff, 0))
        row.attrs["reserved_unallocated_derived"] = "true"
    others = [(int(m.group("pid")), _bytes(m)) for m in _OOM_OTHER_PROCESS.finditer(body)]
    if others:
        row.attrs["processes"] = ",".join(f"{pid}:{size}" for pid, size in others)
    if m := _OOM_DEVICE.search(body):
        row.attrs["cuda_device"] = m.group(1) or m.group(2)
    if "Tried to allocate" not in body:
        row.attrs["form"] = "bare"


def _rendezvous_fields(row: _Row, body: str) -> None:
    lowered = body.lower()
    if "refused" in lowered:
        reason = "connection-refused"
    elif (
        "no route to host" in lowered
        or "network is unreachable" in lowered
        or "name or service not known" in lowered
    ):
        reason = "unreachable"
    elif "eaddrinuse" in lowered or "address already in use" in lowered:
        reason = "address-in-use"
    elif "closed" in lowered:
        reason = "closed"
    elif "timed out" in lowered or "timeout" in lowered or "clients joined" in lowered:
        reason = "timeout"
    else:
        reason = "failed"
    row.attrs["reason"] = reason
    if m := re.search(r"(\d+)/(\d+) clients joined", body):
        row.attrs["joined"], row.attrs["expected"] = m.group(1), m.group(2)
    if m := re.search(r"connect to \(?\[?([\w.\-:]+?)\]?[,:] ?(\d+)\)?", body):
        row.peer, row.attrs["port"] = m.group(1), m.group(2)


def _signal_of_exit(code: int | None) -> str | None:
    if code is None or code >= 0:
        return None
    return _SIGNALS.get(-code, f"SIG{-code}")


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
def _fold_elastic_summary(rows: list[_Row]) -> list[_Row]:
    """Fold ``[N]:`` blocks of a torchrun failure summary into one row per failed process."""
    result: list[_Row] = []
    section: str | None = None
    entry: _Row | None = None
    last_line = -10

    def close() -> None:
        nonlocal entry
        if entry is not None:
            result.append(entry)
        entry = None

    for row in rows:
        if entry is not None and row.line - last_line > 2:
            close()
        if row.kind == "elastic_summary":
            close()
            if row.attrs.get("section") == "first_observed":
                section = "first_observed"
            elif "Failures:" in row.message:
                section = "other"
            result.append(row)
            continue
        if row.kind == "_ef_header":
            close()
            entry = _Row(row.line, "elastic_failure", row.message.strip())
            entry.attrs["entry"] = re.sub(r"\D", "", row.message)
            entry.rank_source = "launcher-summary"
            if section == "first_observed":
                entry.attrs["first_observed"] = "true"
            last_line = row.line
            continue
        if entry is not None and (
            row.kind.startswith("_ef_") or (row.kind == "elastic_failure" and "field" in row.attrs)
        ):
            last_line = row.line
            if row.kind == "_ef_rank":
                entry.rank, entry.local_rank = row.rank, row.local_rank
            elif row.kind == "_ef_time":
                entry.ts_text = row.ts_text
            elif row.kind == "_ef_host":
                entry.attrs["summary_host"] = row.attrs["host"]
            elif row.kind == "_ef_errfile":
                entry.attrs["error_file"] = row.attrs["error_file"]
            elif row.attrs.get("field") == "exitcode":
                entry.exit_code, entry.pid = row.exit_code, row.pid
                entry.signal = entry.signal or row.signal
                entry.message = row.message.strip()
                entry.line = row.line
            elif row.attrs.get("field") == "traceback":
                entry.attrs["traceback"] = row.attrs["traceback"]
                if row.signal:
                    entry.signal = row.signal
                    entry.pid = entry.pid or row.pid
            continue
        if row.kind.startswith("_ef_"):
            continue  # a summary field outside a block: nothing to attach it to
        close()
        result.append(row)
    close()
    for row in result:
        if row.kind == "elastic_failure":
            row.severity = "warning" if row.signal in ("SIGTERM", "SIGINT", "SIGHUP") else "error"
            row.attrs.pop("field", None)
    return result


def _attribute(rows: list[_Row], ctx: FileContext) -> None:
    """Fill rank and host from the file's other lines and its name."""
    name = PurePosixPath(ctx.rel).name
    file_rank: int | None = None
    if (m := _NAME_RANK.search(PurePosixPath(ctx.rel).as_posix())) or (m := _NAME_NUMBER.match(name)):
        file_rank = int(m.group(1))
    # NCCL init lines of the world communicator tie a pid to its global rank.
    inits = [r for r in rows if r.kind == "nccl_init"]
    world = max((int(r.attrs["nranks"]) for r in inits), default=0)
    pid_rank: dict[tuple[str | None, int | None], int] = {}
    for r in inits:
        if r.rank is None and int(r.attrs["nranks"]) == world and r.pid is not None:
            pid_rank.setdefault((r.host, r.pid), int(r.attrs["comm_rank"]))
    for r in rows:
        if (
            r.rank is None
            and r.pid is not None
            and (r.host, r.pid) in pid_rank
            and r.kind not in ("teardown", "elastic_failure")
        ):
            r.rank, r.rank_source = pid_rank[(r.host, r.pid)], "nccl-init"
    nccl_hosts = {r.host for r in rows if r.host and r.tid is not None}
    nccl_pids = {r.pid for r in rows if r.pid is not None and r.tid is not None}
    file_host = next(iter(nccl_hosts)) if len(nccl_hosts) == 1 else None
    host = file_host or ctx.host_hint
    single_pid = next(iter(nccl_pids)) if len(nccl_pids) == 1 else None
    launcher_kinds = ("teardown", "elastic_failure", "elastic_summary")
    # A file whose own lines speak for several ranks (a torchrun log of all workers) is not one
    # rank's log, whatever its name says ("run_rank2_stalled.log").
    content_ranks = {
        r.rank for r in rows if r.rank is not None and r.rank_source in ("log-prefix", "log-tag", "nccl-init")
    }
    if len(content_ranks) > 1 or len(nccl_pids) > 1:
        file_rank = None
    for r in rows:
        if r.host is None:
            summary_host = r.attrs.get("summary_host")
            r.host = summary_host if summary_host and summary_host != "localhost" else host
        if r.kind in launcher_kinds:
            continue
        if r.rank is None and file_rank is not None:
            r.rank, r.rank_source = file_rank, "file-name"
        if r.pid is None and single_pid is not None and file_rank is not None:
            r.pid = single_pid
    # The launcher summary states pid → rank; its agent lines (failed …, closing signal) name pids only.
    summary_rank: dict[tuple[str | None, int | None], int | None] = {
        (r.host, r.pid): r.rank
        for r in rows
        if r.kind == "elastic_failure" and r.rank is not None and r.pid is not None
    }
    for r in rows:
        if r.kind in ("teardown", "elastic_failure") and r.rank is None and (r.host, r.pid) in summary_rank:
            r.rank, r.rank_source = summary_rank[(r.host, r.pid)], "launcher-summary"
    # NCCL init rows of the world communicator carry the global rank when nothing else gave it.
    for r in inits:
        if r.rank is None and int(r.attrs["nranks"]) == world:
            r.rank, r.rank_source = int(r.attrs["comm_rank"]), "nccl-init"
    # The NIC and IP a pid's NCCL chose are useful on its init rows (identity, transport errors).
    nic: dict[tuple[str | None, int | None], str] = {}
    ip: dict[tuple[str | None, int | None], str] = {}
    for r in rows:
        if r.kind == "nccl_info":
            if "nic" in r.attrs:
                nic.setdefault((r.host, r.pid), r.attrs["nic"])
            if "ip" in r.attrs:
                ip.setdefault((r.host, r.pid), r.attrs["ip"])
    for r in inits:
        if (r.host, r.pid) in nic:
            r.attrs.setdefault("nic", nic[(r.host, r.pid)])
        if (r.host, r.pid) in ip:
            r.attrs.setdefault("ip", ip[(r.host, r.pid)])
    for r in rows:
        if r.rank_source:
            r.attrs.setdefault("rank_source", r.rank_source)


def _timestamps(rows: list[_Row], ctx: FileContext) -> None:
    """ts_text / ts_ns / ts_assumption from the line's own stamp."""
    hinted = ctx.manifest.host(ctx.host_hint)
    for r in rows:
        host_spec = ctx.manifest.host(r.host) or hinted
        zone_name = host_spec.timezone if host_spec else None
        tz = tzinfo_for(zone_name) or _dt.UTC
        assumptions: list[str] = []
        if zone_name is None:
            assumptions.append("zone UTC assumed")
        when: _dt.datetime | None = None
        extra_ns = 0  # glog stamps print nanoseconds; datetime keeps microseconds
        stamp = r.attrs.pop("_stamp", None)
        if stamp is not None and (m := _ISO.match(stamp)):
            when = _iso(m.group("date"), m.group("time"), m.group("f"))
            zone = m.group("z")
            r.ts_text, assumptions = stamp, []
            tz = _dt.UTC if zone in (None, "Z", "UTC") else (tzinfo_for(zone) or _dt.UTC)
        elif r.ts_text and (m := _EF_TIME_VALUE.match(r.ts_text)):
            when = _iso(m.group(1), m.group(2), None)
        elif m := _ISO.match(r.message):
            when = _iso(m.group("date"), m.group("time"), m.group("f"))
            r.ts_text = m.group(0).strip().lstrip("[")
            zone = m.group("z")
            if zone and when is not None:
                tz = _dt.UTC if zone in ("Z", "UTC") else (tzinfo_for(zone) or tz)
                assumptions = [a for a in assumptions if not a.startswith("zone")]
        elif m := _GLOG.match(r.message):
            r.ts_text = m.group(0).strip().lstrip("[")
            year, how = _year(ctx)
            if year is not None:
                frac = (m.group("f") or "0")[:6].ljust(6, "0")
                try:
                    when = _dt.datetime(
                        year,
                        int(m.group("mo")),
                        int(m.group("d")),
                        int(m.group("h")),
                        int(m.group("mi")),
                        int(m.group("s")),
                        int(frac),
                    )
                except ValueError:
                    when = None
                assumptions.append(f"year {year} from {how}")
                if m.group("f") and len(m.group("f")) > 6:
                    extra_ns = int(m.group("f")[6:9].ljust(3, "0"))
        if when is None:
            r.attrs.pop("_ts", None)
            continue
        ts_ns = int(when.replace(tzinfo=tz).timestamp()) * 1_000_000_000 + when.microsecond * 1000
        r.attrs["_ts"] = str(ts_ns + extra_ns)
        if assumptions:
            r.attrs["ts_assumption"] = "; ".join(assumptions)


def _iso(date: str, time: str, fraction: str | None) -> _dt.datetime | None:
    """A naive datetime from stamp parts; ``None`` for an impossible date (never raises)."""
    frac = (fraction or "0")[:6].ljust(6, "0")
    try:
        return _dt.datetime.fromisoformat(f"{date}T{time}.{frac}")
    except ValueError:
        return None


def _year(ctx: FileContext) -> tuple[int | None, str]:
    manifest = ctx.manifest
    if manifest.year is not None:
        return manifest.year, "manifest"
    if manifest.capture_time_ns is not None:
        return _dt.datetime.fromtimestamp(manifest.capture_time_ns / 1e9, _dt.UTC).year, "capture time"
    if ctx.mtime_ns is not None:
        return _dt.datetime.fromtimestamp(ctx.mtime_ns / 1e9, _dt.UTC).year, "file mtime"
    return None, ""


def _to_table(ctx: FileContext, rows: list[_Row]) -> pa.Table:
    from ..tables import conform

    def column(name: str) -> list[Any]:
        return [getattr(r, name) for r in rows]

    ts = [int(r.attrs.pop("_ts")) if "_ts" in r.attrs else None for r in rows]
    assumption = [r.attrs.pop("ts_assumption", None) for r in rows]
    return conform(
        "app_events",
        {
            "source_file": [ctx.rel] * len(rows),
            "source_line": column("line"),
            "host": column("host"),
            "ts_ns": ts,
            "ts_text": column("ts_text"),
            "ts_assumption": assumption,
            "pid": column("pid"),
            "tid": column("tid"),
            "rank": column("rank"),
            "local_rank": column("local_rank"),
            "gpu_index": column("gpu_index"),
            "pci_bus_id": column("pci_bus_id"),
            "kind": column("kind"),
            "severity": [r.severity or SEVERITY.get(r.kind, "info") for r in rows],
            "seq": column("seq"),
            "op_type": column("op_type"),
            "timeout_ms": column("timeout_ms"),
            "peer": column("peer"),
            "exit_code": column("exit_code"),
            "signal": column("signal"),
            "message": column("message"),
            "attrs": [sorted(r.attrs.items()) for r in rows],
        },
    )
