"""Detector ``storage-stall``: a rank stuck writing a checkpoint or file, or storage hung in the kernel (P19)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import polars as pl

from ..report import Affected, Confidence, Culprit, Evidence, Severity, Verdict, excerpt
from ..stack_analysis import (
    OutlierGroup,
    ProcessView,
    classify,
    outlier_groups,
    site,
    stack_evidence,
    who,
    window,
)
from ..tables import Tables
from .base import Detector
from .common import identity_for_pid

# Kernel call-trace symbols of tasks stuck in filesystem or block I/O.
_FS_SYMBOLS = re.compile(
    r"^(?:nfs|nfs4|rpc_|__rpc_|xprt_|fuse_|ll_|lustre|ptlrpc|osc_|mdc_|lov_|cl_|ceph_|gpfs|mmfs|beegfs|"
    r"io_schedule|bit_wait_io|folio_wait|wait_on_page_writeback|__filemap_fdatawait|filemap_write_and_wait|"
    r"jbd2|ext4_|xfs_|btrfs_|vfs_fsync|do_fsync|__x64_sys_fsync|__x64_sys_fdatasync|blk_mq_|submit_bio|"
    r"wb_wait|writeback_|balance_dirty_pages|__block_write|generic_perform_write|fifo_open|pipe_write|"
    r"wait_for_partner|pipe_wait)",
)
_FS_MESSAGE = re.compile(r"(?i)nfs|fuse|lustre|xfs|ext4|jbd2|btrfs|ceph|gpfs|beegfs|writeback|fsync")
_NFS_DOWN = re.compile(
    r"(?i)not responding|timed out|still trying|connection (?:refused|reset)|LNetError|evict"
)
_NFS_SERVER = re.compile(r"server (\S+?)(?:\s|$)")


def detect(tables: Tables) -> list[Verdict]:
    """Find ranks stuck in checkpoint / file I/O and storage hangs in the kernel log.

    What it detects:
        A stall whose cause is storage: a rank blocked in ``torch.save`` / ``torch.distributed.checkpoint``
        / safetensors / file write, flush or fsync / an object-store upload while the other ranks wait,
        and kernel reports of tasks hung in filesystem code, unresponsive NFS servers and filesystem
        errors. The culprit is the filesystem or server, not a GPU.

    Signals:
        ``stacks``: the stack-outlier grouping and the outlier's frames (torch/serialization.py,
        torch/distributed/checkpoint, safetensors, orbax, checkpoint engines, object-store clients
        such as botocore or gcsfs, functions named save/checkpoint/flush/fsync/write, and native
        write/fsync frames from ``--native``). ``kernel_events``: kind ``hung_task`` whose call
        trace holds filesystem or block-I/O symbols (nfs_*, rpc_*, fuse_*, ll_*/lustre, io_schedule,
        jbd2, ext4/xfs writeback, fsync, FIFO/pipe waits), kind ``nfs`` lines saying a server is not
        responding, and kind ``fs_error``.

    Rule:
        Stack side: each outlier group whose members' main threads are in storage code (the
        outermost matching frame decides between data loading and storage) gives one verdict, error
        when the outlier is stalled (see stack-outlier), info otherwise. Kernel side: storage events
        on the same host as a stack-side verdict (or naming the same pid) are added to it and make
        its confidence full. Storage events on other hosts give a kernel-only verdict per host:
        error for hung tasks in filesystem code and filesystem errors, warning for NFS "not
        responding" alone; its ranks come from the hung task's pid through the identity table.

    Known false positives:
        Rank 0 writing a checkpoint while the others wait at a barrier is normal until it takes
        much longer than previous checkpoints; one snapshot cannot tell, two dumps some seconds
        apart can. NFS "not responding" followed by "OK" is a transient hiccup.
    """
    verdicts: list[Verdict] = []
    kernel = kernel_storage_events(tables)
    used: set[int] = set()
    _views, _grouping, groups = outlier_groups(tables)
    for group in groups:
        members = [v for v in group.members if classify(v.rep).kind == "storage"]
        if members:
            verdicts.append(_stack_verdict(group, members, kernel, used))
    remaining = kernel.filter(~pl.col("_row").is_in(sorted(used))) if kernel.height else kernel
    verdicts.extend(_kernel_verdicts(tables, remaining))
    return verdicts


def _stack_verdict(
    group: OutlierGroup, members: list[ProcessView], kernel: pl.DataFrame, used: set[int]
) -> Verdict:
    first = members[0]
    activity = classify(first.rep)
    top = site(first.rep)
    hosts = sorted({v.host for v in members if v.host})
    pids = sorted(v.pid for v in members if v.pid is not None)
    matched = (
        kernel.filter(pl.col("host").is_in(hosts) | pl.col("pid").is_in(pids)) if kernel.height else kernel
    )
    used.update(matched["_row"].to_list() if matched.height else [])
    evidence = [stack_evidence(v.rep, v.label) for v in members[:3]]
    evidence.append(stack_evidence(group.dominant[0].rep, f"{group.dominant[0].label} (waiting)"))
    evidence.extend(kernel_evidence(matched, limit=3))
    ranks = sorted(v.rank for v in members if v.rank is not None)
    start, end = window(members)
    kernel_start = matched["ts_ns"].drop_nulls().min() if matched.height else None
    if isinstance(kernel_start, int) and (start is None or kernel_start < start):
        start = kernel_start
    missing = []
    if not matched.height:
        missing.append(
            "kernel log of host "
            + (", ".join(hosts) if hosts else "of the culprit")
            + " (hung-task or NFS messages would confirm the storage side)"
        )
    return Verdict(
        pattern="storage-stall",
        title=(
            f"{who(members)} stuck in checkpoint/file I/O: main thread in "
            + (
                f"{activity.context.function} → "
                if activity.context is not None and top is not None and activity.context.key != top.key
                else ""
            )
            + f"{top.label() if top else activity.frame.label() if activity.frame else 'storage code'}"
            + (f" while {len(group.dominant)} ranks wait" if group.dominant_waiting else "")
            + (" (kernel reports storage trouble on the same host)" if matched.height else "")
        ),
        severity=Severity.ERROR if group.stalled else Severity.INFO,
        key=group.key,
        confidence=Confidence.FULL if matched.height else Confidence.PARTIAL,
        culprit=Culprit(ranks=ranks, hosts=hosts, pids=pids, links=_servers(matched)),
        affected=Affected(
            ranks=sorted(v.rank for v in group.dominant if v.rank is not None),
            hosts=sorted({v.host for v in group.dominant if v.host}),
        ),
        window_start_ns=start,
        window_end_ns=end,
        evidence=evidence,
        missing_evidence=missing,
        actions=[
            "Check the checkpoint destination (free space, NFS/Lustre/object-store health, a path that is a FIFO "
            "or a hung mount) on the culprit's host; compare with how long previous checkpoints took.",
        ],
        details={
            "ranks": ranks,
            "storage_frame": activity.frame.label() if activity.frame else None,
            "storage_context": activity.context.label() if activity.context else None,
            "site": top.label() if top else None,
            "stalled": group.stalled,
            "dominant_ranks": sorted(v.rank for v in group.dominant if v.rank is not None),
            "kernel_events": _kernel_facts(matched),
            "sides": ["stack", "kernel"] if matched.height else ["stack"],
        },
    )


def kernel_storage_events(tables: Tables) -> pl.DataFrame:
    """Kernel rows that say storage is stuck (hung tasks in filesystem code, NFS down, fs errors), numbered."""
    if not tables.has("kernel_events"):
        return pl.DataFrame()
    events = tables.df("kernel_events").with_row_index("_row")
    events = events.filter(pl.col("kind").is_in(["hung_task", "nfs", "fs_error"]))
    if events.is_empty():
        return events
    trace_fs = (
        pl.col("trace").list.eval(pl.element().str.contains(_FS_SYMBOLS.pattern)).list.any().fill_null(False)
    )
    hung_fs = (pl.col("kind") == "hung_task") & (
        trace_fs | pl.col("message").str.contains(_FS_MESSAGE.pattern).fill_null(False)
    )
    nfs_down = (pl.col("kind") == "nfs") & pl.col("message").str.contains(_NFS_DOWN.pattern).fill_null(False)
    fs_error = pl.col("kind") == "fs_error"
    return events.filter(hung_fs | nfs_down | fs_error).sort("source_file", "source_line")


def kernel_evidence(rows: pl.DataFrame, limit: int) -> list[Evidence]:
    """Evidence for up to ``limit`` kernel storage rows, with their filesystem call-trace symbols."""
    out: list[Evidence] = []
    if not rows.height:
        return out
    for row in rows.head(limit).iter_rows(named=True):
        trace = [s for s in (row.get("trace") or []) if _FS_SYMBOLS.match(s)]
        text = (row.get("message") or "") + (f" [trace: {' ← '.join(trace[:5])}]" if trace else "")
        out.append(Evidence("kernel_log", row["source_file"], row["source_line"], excerpt(text)))
    return out


def _kernel_facts(rows: pl.DataFrame) -> list[dict[str, Any]]:
    if not rows.height:
        return []
    return [
        {
            "kind": row["kind"],
            "host": row["host"],
            "pid": row["pid"],
            "comm": row["comm"],
            "ts_ns": row["ts_ns"],
            "fs_symbols": [s for s in (row.get("trace") or []) if _FS_SYMBOLS.match(s)][:8],
        }
        for row in rows.head(10).iter_rows(named=True)
    ]


def _servers(rows: pl.DataFrame) -> list[str]:
    if not rows.height:
        return []
    servers = set()
    for message in rows.filter(pl.col("kind") == "nfs")["message"].drop_nulls().to_list():
        match = _NFS_SERVER.search(message)
        if match:
            servers.add(f"nfs-server {match.group(1).rstrip(':,')}")
    return sorted(servers)


def _kernel_verdicts(tables: Tables, rows: pl.DataFrame) -> list[Verdict]:
    if not rows.height:
        return []
    verdicts: list[Verdict] = []
    for (host,), part in rows.group_by(["host"], maintain_order=True):
        host_name = host if isinstance(host, str) else None
        kinds = set(part["kind"].to_list())
        serious = bool(kinds & {"hung_task", "fs_error"})
        ranks: list[int] = []
        pids: list[int] = []
        unmapped: list[int] = []
        for pid in sorted({int(p) for p in part["pid"].drop_nulls().to_list()}):
            identity = identity_for_pid(tables, host_name, pid)
            if identity is not None and identity.rank is not None:
                ranks.append(identity.rank)
                pids.append(pid)
            else:
                unmapped.append(pid)
        ranks.extend(int(r) for r in part["rank"].drop_nulls().to_list())
        times = part["ts_ns"].drop_nulls()
        what = _describe(kinds)
        missing = []
        if unmapped:
            missing.append(f"rank of pid {', '.join(map(str, unmapped))} (not in the manifest or any dump)")
        missing.append("py-spy dump of the ranks on this host (were they inside checkpoint or file I/O?)")
        verdicts.append(
            Verdict(
                pattern="storage-stall",
                title=f"{host_name or 'unknown host'}: {what}",
                severity=Severity.ERROR if serious else Severity.WARNING,
                key=f"kernel host={host_name or ''}",
                culprit=Culprit(
                    ranks=sorted(set(ranks)),
                    hosts=[host_name] if host_name else [],
                    pids=pids,
                    links=_servers(part),
                ),
                window_start_ns=int(times.min()) if times.len() else None,  # type: ignore[arg-type]
                window_end_ns=int(times.max()) if times.len() else None,  # type: ignore[arg-type]
                evidence=kernel_evidence(part, limit=4),
                missing_evidence=missing,
                actions=[
                    "Check the filesystem / NFS server the host writes to; tasks in D state cannot be killed."
                ],
                details={
                    "host": host_name,
                    "kernel_events": _kernel_facts(part),
                    "kinds": sorted(kinds),
                    "sides": ["kernel"],
                    "unmapped_pids": unmapped,
                },
            )
        )
    return verdicts


def _describe(kinds: Sequence[str] | set[str]) -> str:
    parts = []
    if "hung_task" in kinds:
        parts.append("tasks hung in filesystem I/O")
    if "nfs" in kinds:
        parts.append("network filesystem server not responding")
    if "fs_error" in kinds:
        parts.append("filesystem errors")
    return ", ".join(parts)


DETECTOR = Detector(
    id="storage-stall",
    summary="A rank stuck in checkpoint/file I/O, or the kernel reporting storage hangs",
    sources=("pyspy", "kernel_log"),
    tables=("stacks", "kernel_events", "identity"),
    detect=detect,
    scope=__name__,
)
