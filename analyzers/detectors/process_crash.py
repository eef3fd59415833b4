"""Detector ``process-crash``: a rank died of a fatal signal (segfault, abort, bus error, kill) — P17."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from ..report import Affected, Confidence, Culprit, Evidence, Severity, Verdict
from ..tables import Tables
from .base import Detector
from .common import evidence_from_row, identity_for_pid

FATAL = ("SIGSEGV", "SIGABRT", "SIGBUS", "SIGFPE", "SIGILL", "SIGKILL")
_LIBRARY = re.compile(r"\bin ([\w.+\-]+?\.so[\w.]*)")
_COMPONENTS = (
    ("libnccl", "NCCL (or memory corrupted by the job)"),
    ("nccl", "NCCL (or memory corrupted by the job)"),
    ("libcuda.", "CUDA driver"),
    ("libnvidia", "CUDA driver"),
    ("libcudart", "CUDA runtime"),
    ("libcublas", "CUDA libraries"),
    ("libcudnn", "CUDA libraries"),
    ("libtorch", "PyTorch"),
    ("libc10", "PyTorch"),
    ("libc.so", "C runtime"),
    ("libpthread", "C runtime"),
    ("python", "Python interpreter or an extension"),
)


@dataclass
class _Crash:
    key: str
    rank: int | None
    host: str | None
    pid: int | None
    signal: str | None
    exit_code: int | None
    ts_ns: int | None
    origin: str  # kernel, fatal-signal, launcher
    library: str | None = None
    frame: str | None = None
    sources: set[str] = field(default_factory=set)
    evidence: list[Evidence] = field(default_factory=list)
    first_observed: bool = False


def component_of(text: str | None) -> str | None:
    """The software layer a library or frame name points at."""
    if not text:
        return None
    lower = text.lower()
    for needle, component in _COMPONENTS:
        if needle in lower:
            return component
    return None


def order_of(origin: str) -> int:
    """How directly an origin witnesses a crash: kernel 0, fatal-signal line 1, launcher exit 2."""
    return {"kernel": 0, "fatal-signal": 1, "launcher": 2}.get(origin, 3)


def _key(rank: int | None, host: str | None, pid: int | None) -> str:
    if rank is not None:
        return f"rank={rank}"
    return f"host={host} pid={pid}"


def detect(tables: Tables) -> list[Verdict]:
    """Find the earliest fatal signal that killed a rank, and tell it apart from teardown.

    What it detects:
        A training process killed by a fatal signal: SIGSEGV (segfault), SIGABRT (C++ check
        failure / std::terminate), SIGBUS (often /dev/shm exhaustion in DataLoader workers),
        SIGFPE, SIGILL, or SIGKILL not sent by the launcher (OOM killer, scheduler, operator).

    Signals:
        ``kernel_events`` kind ``segfault`` (pid, comm, ``… in libnccl.so.2`` in the message);
        ``app_events`` kind ``fatal_signal`` (``*** SIGSEGV received``, faulthandler ``Fatal
        Python error: Segmentation fault``, the ``PC: @ … function`` frame that follows) and
        ``elastic_failure`` (torchrun exit codes −11/−6/−7/−9, "Signal N (SIG…) received by PID");
        ``teardown`` rows ("Sending process P closing signal SIGTERM"), ``watchdog_timeout`` rows;
        the identity table to map a kernel pid to its rank.

    Rule:
        Fatal events are grouped per rank (else per host and pid). Exits of processes the
        launcher itself signalled (teardown) and SIGTERM exits are teardown, not crashes. A SIGABRT
        of a rank whose collective watchdog fired is the watchdog taking the process down: a
        consequence, not a crash. The earliest remaining crash with a time is the candidate (else a
        kernel segfault or a logged fatal signal before a mere launcher exit code, else torchrun's
        first observed failure). One verdict, severity error, culprit that rank/host/pid; the
        library named by the segfault line (or the PC frame) names the component. torchrun's "Root
        Cause (first observed failure)" is only the first process to exit and is reported as such
        in details. Confidence is full when the kernel and the job log both saw the crash.

    Known false positives:
        A SIGKILL from an operator or scheduler (preemption) is reported as a crash unless a
        teardown line shows the launcher sent it; a host OOM kill is a SIGKILL too and is
        explained by host-oom-kill when the kernel log is present.
    """
    crashes: dict[str, _Crash] = {}
    teardown_pids: set[tuple[str | None, int]] = set()
    teardown_ranks: set[int] = set()
    watchdog_ranks: set[int] = set()
    watchdog_unknown = False
    first_observed: dict[str, Any] | None = None
    shm_hint = False
    app = tables.df("app_events") if tables.has("app_events") else None

    def add(crash: _Crash) -> None:
        existing = crashes.get(crash.key)
        if existing is None:
            crashes[crash.key] = crash
            return
        existing.sources |= crash.sources
        # The most direct witness first: kernel record, then the process's own fatal-signal line.
        if order_of(crash.origin) < order_of(existing.origin):
            existing.evidence[:0] = crash.evidence
        else:
            existing.evidence.extend(crash.evidence)
        existing.first_observed |= crash.first_observed
        for name in ("rank", "host", "pid", "library", "frame", "exit_code"):
            if getattr(existing, name) is None:
                setattr(existing, name, getattr(crash, name))
        if existing.signal is None or (crash.origin != "launcher" and crash.signal):
            existing.signal = crash.signal or existing.signal
        if crash.ts_ns is not None and (existing.ts_ns is None or crash.ts_ns < existing.ts_ns):
            existing.ts_ns = crash.ts_ns
        if order_of(crash.origin) < order_of(existing.origin):
            existing.origin = crash.origin

    if app is not None:
        for row in app.filter(pl.col("kind") == "teardown").to_dicts():
            if row["pid"] is not None and row["signal"]:
                teardown_pids.add((row["host"], int(row["pid"])))
                if row["rank"] is not None:
                    teardown_ranks.add(int(row["rank"]))
        fires = app.filter(pl.col("kind") == "watchdog_timeout")
        watchdog_ranks = {int(r) for r in fires["rank"].drop_nulls().to_list()}
        watchdog_unknown = fires.filter(pl.col("rank").is_null()).height > 0
        shm_hint = (
            app.filter(
                pl.col("message").str.contains(r"(?i)DataLoader worker")
                & pl.col("message").str.contains(r"(?i)bus error|SIGBUS|shared memory|/dev/shm")
            ).height
            > 0
        )
        frames = app.filter(
            (pl.col("kind") == "fatal_signal") & pl.col("attrs").map.get("frame").is_not_null()
        )
        frame_by_file = {
            f: str(fr) for f, fr in frames.select("source_file", pl.col("attrs").map.get("frame")).iter_rows()
        }
        signals = app.filter(
            (pl.col("kind") == "fatal_signal")
            & pl.col("signal").is_in(list(FATAL))
            & pl.col("attrs").map.get("worker").is_null()
        ).sort("source_file", "source_line")
        for row in signals.to_dicts():
            frame = frame_by_file.get(row["source_file"])
            add(
                _Crash(
                    _key(row["rank"], row["host"], row["pid"]),
                    row["rank"],
                    row["host"],
                    row["pid"],
                    row["signal"],
                    None,
                    row["ts_ns"],
                    "fatal-signal",
                    frame=frame,
                    sources={"app_log"},
                    evidence=[evidence_from_row("app_log", row)],
                )
            )
        exits = app.filter((pl.col("kind") == "elastic_failure") & pl.col("signal").is_not_null()).sort(
            "source_file", "source_line"
        )
        for row in exits.to_dicts():
            attrs = dict(row["attrs"] or {})
            if attrs.get("first_observed") == "true" and first_observed is None:
                first_observed = {
                    "rank": row["rank"],
                    "pid": row["pid"],
                    "exit_code": row["exit_code"],
                    "signal": row["signal"],
                    "note": "torchrun's 'first observed failure' is the first process to exit, not the root cause",
                }
            if row["signal"] not in FATAL:
                continue
            if row["pid"] is not None and (row["host"], int(row["pid"])) in teardown_pids:
                continue
            add(
                _Crash(
                    _key(row["rank"], row["host"], row["pid"]),
                    row["rank"],
                    row["host"],
                    row["pid"],
                    row["signal"],
                    row["exit_code"],
                    row["ts_ns"],
                    "launcher",
                    sources={"app_log"},
                    evidence=[evidence_from_row("app_log", row)],
                    first_observed=attrs.get("first_observed") == "true",
                )
            )
        if first_observed is None:
            firsts = app.filter(
                (pl.col("kind") == "elastic_failure") & (pl.col("attrs").map.get("first_observed") == "true")
            )
            if firsts.height:
                row = firsts.row(0, named=True)
                first_observed = {
                    "rank": row["rank"],
                    "pid": row["pid"],
                    "exit_code": row["exit_code"],
                    "signal": row["signal"],
                    "note": "torchrun's 'first observed failure' is the first process to exit, not the root cause",
                }
    if tables.has("kernel_events"):
        segv = (
            tables.df("kernel_events").filter(pl.col("kind") == "segfault").sort("source_file", "source_line")
        )
        for row in segv.to_dicts():
            rank = row.get("rank")
            if rank is None:
                ident = identity_for_pid(tables, row.get("host"), row.get("pid"))
                rank = ident.rank if ident is not None else None
            message = str(row.get("message") or "")
            lib = _LIBRARY.search(message)
            crash = _Crash(
                _key(rank, row.get("host"), row.get("pid")),
                rank,
                row.get("host"),
                row.get("pid"),
                "SIGSEGV",
                None,
                row.get("ts_ns"),
                "kernel",
                library=lib.group(1) if lib else None,
                sources={"kernel_log"},
                evidence=[evidence_from_row("kernel_log", row)],
            )
            add(crash)
    aborts = [
        c
        for c in crashes.values()
        if c.signal == "SIGABRT"
        and c.origin != "kernel"
        and (watchdog_unknown or (c.rank is not None and c.rank in watchdog_ranks))
    ]
    for crash in aborts:
        del crashes[crash.key]
    if not crashes:
        return []
    ordered = sorted(
        crashes.values(),
        key=lambda c: (
            c.ts_ns is None,
            c.ts_ns if c.ts_ns is not None else 0,
            not c.first_observed if c.ts_ns is None else False,
            order_of(c.origin),
            c.rank if c.rank is not None else 1 << 30,
            c.key,
        ),
    )
    root = ordered[0]
    ident = identity_for_pid(tables, root.host, root.pid) if root.rank is None else None
    if ident is not None and ident.rank is not None:
        root.rank = ident.rank
    component = component_of(root.library) or component_of(root.frame)
    missing: list[str] = []
    if root.rank is None:
        missing.append(
            f"rank of pid {root.pid} on {root.host or 'an unknown host'}: not in the identity table "
            "(add [[ranks]] pid to incident.toml or NCCL INFO init lines)"
        )
    if "kernel_log" not in root.sources:
        where_host = f"host {root.host}" if root.host else "the crashing rank's host"
        missing.append(f"kernel log of {where_host} (segfault line with the faulting library, OOM killer)")
    if root.signal == "SIGKILL":
        missing.append("who sent SIGKILL: kernel OOM killer record, scheduler or operator log")
    what = root.signal or "fatal signal"
    who = f"rank {root.rank}" if root.rank is not None else f"pid {root.pid}"
    where = f" on {root.host}" if root.host else ""
    title = f"{who}{where} died of {what}"
    if root.library:
        title += f" in {root.library}"
    elif root.frame and root.origin != "kernel":
        title += f" in {root.frame}"
    if component:
        title += f" ({component})"
    if shm_hint and root.signal == "SIGBUS":
        title += "; DataLoader workers hit a bus error: likely /dev/shm exhaustion"
    others = [
        {
            "rank": c.rank,
            "host": c.host,
            "pid": c.pid,
            "signal": c.signal,
            "ts_ns": c.ts_ns,
            "origin": c.origin,
        }
        for c in ordered[1:]
    ]
    details: dict[str, Any] = {
        "rank": root.rank,
        "host": root.host,
        "pid": root.pid,
        "signal": root.signal,
        "exit_code": root.exit_code,
        "library": root.library,
        "frame": root.frame,
        "component": component,
        "origin": root.origin,
        "first_ts_ns": root.ts_ns,
        "later_crashes": others,
        "teardown_ranks": sorted(teardown_ranks),
        "watchdog_aborts": sorted({c.rank for c in aborts if c.rank is not None}),
        "torchrun_first_observed": first_observed,
        "shm_exhaustion_hint": shm_hint,
    }
    affected = sorted({c.rank for c in ordered if c.rank is not None} | teardown_ranks)
    return [
        Verdict(
            pattern="process-crash",
            title=title,
            severity=Severity.ERROR,
            key=root.key,
            confidence=Confidence.FULL if {"kernel_log", "app_log"} <= root.sources else Confidence.PARTIAL,
            culprit=Culprit(
                ranks=[root.rank] if root.rank is not None else [],
                hosts=[root.host] if root.host else [],
                pids=[root.pid] if root.pid is not None else [],
            ),
            affected=Affected(ranks=affected, hosts=sorted({c.host for c in ordered if c.host})),
            window_start_ns=root.ts_ns,
            window_end_ns=max((c.ts_ns for c in ordered if c.ts_ns is not None), default=None),
            evidence=[e for c in ordered[:4] for e in c.evidence[:3]],
            missing_evidence=missing,
            actions=[
                "Read the crashing rank's native stack (core file, faulthandler output, `py-spy dump --native`)",
                "SIGSEGV in libnccl/libcuda: check driver/NCCL versions and memory corruption (compute-sanitizer); "
                "SIGBUS in DataLoader: enlarge /dev/shm; SIGKILL: check the OOM killer and the scheduler",
            ],
            details=details,
        )
    ]


DETECTOR = Detector(
    id="process-crash",
    summary="A rank died of a fatal signal (segfault, abort, bus error, external kill); teardown and watchdog aborts excluded",
    sources=("kernel_log", "app_log"),
    tables=("kernel_events", "app_events", "identity"),
    detect=detect,
    scope=__name__,
)
