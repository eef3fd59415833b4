"""Detector ``cuda-oom``: CUDA out of memory, classified fragmentation / capacity / foreign process (P16)."""

from __future__ import annotations

from typing import Any

import polars as pl

from ..report import Affected, Culprit, Severity, Verdict, ranks_text
from ..tables import Tables
from .base import Detector
from .common import evidence_from_row

GIB = 1 << 30
MIB = 1 << 20
# Thresholds of the rule (docs/app-logs.md); starting points from patterns.md P16.
FRAGMENTATION_SHARE = 0.10  # reserved-but-unallocated above this share of the GPU
CAPACITY_SHARE = 0.80  # the process (or PyTorch) holds at least this share of the GPU
FOREIGN_SHARE = 0.25  # memory held outside this process above this share of the GPU
PREJOB_FB_USED_MIB = 512.0  # DCGM FB used before the job above this: something else was there
FB_FIELDS = ("DCGM_FI_DEV_FB_USED",)


def _num(attrs: dict[str, str], key: str) -> int | None:
    value = attrs.get(key)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _gib(value: int | None) -> str:
    return "?" if value is None else f"{value / GIB:.2f} GiB"


def classify(
    attrs: dict[str, str], job_pids: set[int], own_pid: int | None
) -> tuple[str, str, dict[str, Any]]:
    """(class, reason naming the deciding numbers, numbers) for one OOM message's fields."""
    a = _num(attrs, "requested_bytes")
    t = _num(attrs, "total_bytes")
    f = _num(attrs, "free_bytes")
    p = _num(attrs, "process_bytes")
    x = _num(attrs, "allocated_bytes")
    r = _num(attrs, "reserved_unallocated_bytes")
    numbers: dict[str, Any] = {
        "requested_bytes": a,
        "total_bytes": t,
        "free_bytes": f,
        "process_bytes": p,
        "allocated_bytes": x,
        "reserved_unallocated_bytes": r,
    }
    listed = []
    for item in (attrs.get("processes") or "").split(","):
        pid, _, size = item.partition(":")
        if pid.isdigit():
            listed.append((int(pid), int(size) if size.isdigit() else None))
    foreign = [(pid, size) for pid, size in listed if pid not in job_pids and pid != own_pid]
    if own_pid is None and len(listed) == 1:
        foreign = []  # one listed process and our pid unknown: most likely ourselves
    if foreign:
        foreign_held = sum(size or 0 for _, size in foreign)
        numbers["foreign_processes"] = [pid for pid, _ in foreign]
        return (
            "foreign-process",
            f"process(es) {', '.join(str(pid) for pid, _ in foreign)} outside the job hold {_gib(foreign_held)} of the GPU",
            numbers,
        )
    if t and f is not None and p is not None:
        others = t - f - p
        numbers["held_elsewhere_bytes"] = others
        if others > FOREIGN_SHARE * t:
            return (
                "foreign-process",
                f"{_gib(others)} of {_gib(t)} is used outside this process (total − free − this process)",
                numbers,
            )
    if t and r is not None and a is not None and (r >= a or r > FRAGMENTATION_SHARE * t):
        why = f"reserved-but-unallocated {_gib(r)} " + (
            f"≥ requested {_gib(a)}" if r >= a else f"> {FRAGMENTATION_SHARE:.0%} of {_gib(t)}"
        )
        return "fragmentation", why, numbers
    held = p if p is not None else x
    if t and held is not None and held >= CAPACITY_SHARE * t:
        who = "this process uses" if p is not None else "PyTorch allocated"
        return (
            "capacity",
            f"{who} {_gib(held)} of {_gib(t)} ({held / t:.0%}); reserved-but-unallocated only {_gib(r)}",
            numbers,
        )
    if a is not None and f is not None and a > f:
        return "oversized-request", f"one request of {_gib(a)} exceeds the {_gib(f)} free", numbers
    return (
        "undetermined",
        "the message gives too few numbers to classify" if a is None else "no rule matched the numbers",
        numbers,
    )


def _prejob_fb_used(tables: Tables, host: str | None, before_ns: int | None) -> float | None:
    """Largest DCGM FB used (MiB) on ``host`` before the job's first logged time, when known."""
    if before_ns is None or not tables.has("gpu_metrics"):
        return None
    metrics = tables.df("gpu_metrics", ["field", "ts_ns", "host", "value"]).filter(
        pl.col("field").is_in(list(FB_FIELDS)) & pl.col("ts_ns").is_not_null() & (pl.col("ts_ns") < before_ns)
    )
    if host is not None:
        metrics = metrics.filter(pl.col("host").is_null() | (pl.col("host") == host))
    if metrics.height == 0:
        return None
    return float(metrics["value"].max())  # type: ignore[arg-type]


_ACTIONS = {
    "fragmentation": "Set PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True (or max_split_size_mb) and retry",
    "capacity": "Reduce memory per GPU: smaller micro-batch or sequence length, activation checkpointing, "
    "sharding (FSDP/ZeRO), mixed precision",
    "foreign-process": "Find and stop the other process on the GPU (nvidia-smi --query-compute-apps) or "
    "drain the node; a leftover process from an earlier job is the usual cause",
    "oversized-request": "Look at the allocation site: one tensor larger than the free memory (long sequence, "
    "large batch, unexpected shape)",
    "undetermined": "Capture torch.cuda.memory_summary() at the failure to classify the OOM",
}


def detect(tables: Tables) -> list[Verdict]:
    """Classify CUDA out-of-memory failures from PyTorch's message.

    What it detects:
        A rank died (or failed a step) with ``CUDA out of memory`` / ``torch.OutOfMemoryError``,
        and why: fragmentation of PyTorch's caching allocator, plain capacity, another process
        holding the GPU's memory, or one oversized request.

    Signals:
        ``app_events`` kind ``cuda_oom`` with attrs from every PyTorch wording: requested_bytes,
        total_bytes, free_bytes, process_bytes ("this process has … in use"),
        allocated_bytes ("allocated by PyTorch" / "already allocated"),
        reserved_unallocated_bytes ("reserved by PyTorch but unallocated", or reserved − allocated
        for pre-2.1 messages), processes ("Process P has M memory in use" lists). Pids of the job
        from ``app_events``/``identity``; ``gpu_metrics`` DCGM_FI_DEV_FB_USED before the job's
        first logged time.

    Rule:
        Per OOM message, first matching class: foreign-process when the message lists a process
        outside the job, or total − free − this process > 25% of total, or DCGM FB used was above
        512 MiB before the job started; fragmentation when reserved-but-unallocated ≥ the request
        or > 10% of total; capacity when this process (else PyTorch's allocation) holds ≥ 80% of
        total; oversized-request when the request exceeds the free memory; else undetermined.
        One verdict per class (severity error) naming the ranks, the deciding numbers in the title
        and every number in details; spread says one rank (data-dependent spike) or all ranks
        that logged (configuration).

    Known false positives:
        An OOM caught and handled by the program (retry with a smaller batch) is still reported.
        Memory "used outside this process" includes the CUDA context of other ranks sharing a GPU
        by design (MPS, several processes per GPU).
    """
    if not tables.has("app_events"):
        return []
    app = tables.df("app_events")
    ooms = app.filter(pl.col("kind") == "cuda_oom").sort("source_file", "source_line")
    if ooms.height == 0:
        return []
    job_pids = {int(p) for p in app.filter(pl.col("kind") != "cuda_oom")["pid"].drop_nulls().to_list()}
    if tables.has("identity"):
        job_pids |= {int(p) for p in tables.df("identity")["pid"].drop_nulls().to_list()}
    first_job_ts = app["ts_ns"].drop_nulls().min()
    logged_ranks = {int(r) for r in app["rank"].drop_nulls().to_list()}
    groups: dict[str, list[tuple[dict[str, Any], str, dict[str, Any]]]] = {}
    for row in ooms.to_dicts():
        attrs = dict(row["attrs"] or {})
        kind, why, numbers = classify(attrs, job_pids, row["pid"])
        if kind not in ("foreign-process",):
            fb = _prejob_fb_used(tables, row["host"], first_job_ts if isinstance(first_job_ts, int) else None)
            if fb is not None and fb > PREJOB_FB_USED_MIB:
                kind, why = "foreign-process", f"DCGM FB used was {fb:.0f} MiB before the job started"
                numbers["prejob_fb_used_mib"] = fb
        groups.setdefault(kind, []).append((row, why, numbers))
    verdicts: list[Verdict] = []
    for kind, items in sorted(groups.items()):
        rows = [i[0] for i in items]
        ranks = sorted({int(r["rank"]) for r in rows if r["rank"] is not None})
        hosts = sorted({str(r["host"]) for r in rows if r["host"]})
        pids = sorted({int(r["pid"]) for r in rows if r["pid"] is not None})
        timed = [r["ts_ns"] for r in rows if r["ts_ns"] is not None]
        head_row, why, numbers = items[0]
        spread = None
        if ranks:
            spread = (
                "all-ranks"
                if len(logged_ranks) > 1 and set(ranks) >= logged_ranks
                else ("one-rank" if len(ranks) == 1 else "some-ranks")
            )
        who = f"rank(s) {ranks_text(ranks)}" if ranks else "a process"
        title = f"CUDA out of memory on {who}: {kind.replace('-', ' ')} ({why})"
        missing: list[str] = []
        if not ranks:
            missing.append("rank of the OOM message (no [rankN]: prefix or rank in the file name)")
        if head_row["attrs"] is None or "requested_bytes" not in dict(head_row["attrs"]):
            missing.append("the allocator numbers (the message had none)")
        if not tables.has("gpu_metrics"):
            missing.append("DCGM FB used before and during the job (would show a foreign occupant)")
        foreign_pids = [int(p) for p in numbers.get("foreign_processes", [])]
        details: dict[str, Any] = {
            "classification": kind,
            "decided_by": why,
            "numbers": numbers,
            "ranks": ranks,
            "hosts": hosts,
            "pids": pids,
            "first_ts_ns": min(timed) if timed else None,
            "spread": spread,
            "messages": len(rows),
            "cuda_device": dict(head_row["attrs"] or {}).get("cuda_device"),
        }
        actions = [_ACTIONS[kind]]
        if spread == "one-rank":
            actions.append(
                "Only one rank ran out: look for a data-dependent spike (long sequence, skewed batch)"
            )
        elif spread == "all-ranks":
            actions.append("Every rank ran out: the configuration does not fit the GPU")
        verdicts.append(
            Verdict(
                pattern="cuda-oom",
                title=title,
                severity=Severity.ERROR,
                key=f"class={kind}",
                culprit=Culprit(ranks=ranks, hosts=hosts, pids=foreign_pids or pids),
                affected=Affected(ranks=ranks, hosts=hosts),
                window_start_ns=min(timed) if timed else None,
                window_end_ns=max(timed) if timed else None,
                evidence=[evidence_from_row("app_log", r) for r in rows[:8]],
                missing_evidence=missing,
                actions=actions,
                details=details,
            )
        )
    return verdicts


DETECTOR = Detector(
    id="cuda-oom",
    summary="CUDA out of memory, classified as fragmentation, capacity, foreign process or oversized request",
    sources=("app_log", "dcgm"),
    tables=("app_events", "gpu_metrics", "identity"),
    detect=detect,
    scope=__name__,
)
