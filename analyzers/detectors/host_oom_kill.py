"""Detector ``host-oom-kill``: the kernel OOM killer killed a process (a rank, or something beside it)."""

from __future__ import annotations

from typing import Any

from ..report import Confidence, Culprit, Severity, Verdict
from ..tables import Tables
from .base import Detector
from .common import rank_pids_by_host
from .kernel_common import evidence, kernel_rows, order_key, pid_rank, total_count, window


def detect(tables: Tables) -> list[Verdict]:
    """What it detects:
    Host memory exhaustion that made the kernel kill a process: a training rank dies with
    SIGKILL (exit -9) and the other ranks then time out waiting for it.

    Signals:
    kernel_events kind ``oom_kill``: ``Out of memory: Killed process <pid> (<comm>)``,
    ``Memory cgroup out of memory: Killed process``, ``oom-kill:constraint=…,task=…,pid=…``
    (attrs oom_scope cgroup/global, constraint, task_memcg, anon_rss_kb); launcher summaries in
    app_events (elastic_failure with signal SIGKILL) for corroboration.

    Rule:
    One verdict per (host, victim pid). The pid is mapped to a rank through the row's rank (from
    the manifest pid map) or the identity table. A rank victim → error; another process → warning
    (memory pressure beside the job). cgroup vs global is in details.oom_scope. A launcher
    record of the same rank/pid killed by SIGKILL → full confidence. A bare "Killed" without a
    kernel record is not used.

    Known false positives:
    DataLoader workers (children of a rank) are separate pids and show up as non-rank victims;
    container runtimes that restart a pod after a cgroup OOM may hide the rank mapping.
    """
    verdicts: list[Verdict] = []
    rows_all = [r for r in kernel_rows(tables, ["oom_kill"]) if r.get("pid") is not None]
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows_all:
        groups.setdefault((str(row.get("host") or ""), int(row["pid"])), []).append(row)
    killed_by_launcher = _sigkilled(tables)
    for (host, pid), rows in sorted(groups.items()):
        rows.sort(key=order_key)
        if not any(r["attrs"].get("oom_event") in ("killed", "victim") for r in rows):
            continue
        host_v = host or None
        rank = pid_rank(
            tables, host_v, pid, next((r["rank"] for r in rows if r.get("rank") is not None), None)
        )
        attrs: dict[str, str] = {}
        for r in rows:
            for key, value in r["attrs"].items():
                attrs.setdefault(key, value)
        scope = attrs.get("oom_scope") or (
            "cgroup" if "MEMCG" in (attrs.get("constraint") or "") else "global"
        )
        comm = next((r["comm"] for r in rows if r.get("comm")), None)
        corroborated = (rank is not None and rank in killed_by_launcher[0]) or pid in killed_by_launcher[1]
        missing = []
        if rank is None:
            known = rank_pids_by_host(tables).get(host_v or "", set())
            missing.append(
                f"pid {pid} ({comm}) on {host_v} is not mapped to a rank: it is none of the {len(known)} rank pids known on that host"
                if known
                else f"pid {pid} ({comm}) on {host_v} is not mapped to a rank (no manifest pid, py-spy dump or NCCL init line)"
            )
        if not corroborated:
            missing.append("no launcher record of this process ending with SIGKILL")
        start, end = window(rows)
        anon = attrs.get("anon_rss_kb")
        verdicts.append(
            Verdict(
                pattern="host-oom-kill",
                title=f"Kernel OOM killer killed {comm or 'process'} (pid {pid}) on {host_v or '?'}"
                + (f": rank {rank}" if rank is not None else "")
                + f" ({scope} OOM)",
                severity=Severity.ERROR if rank is not None else Severity.WARNING,
                key=f"host={host or '?'} pid={pid}",
                confidence=Confidence.FULL if corroborated else Confidence.PARTIAL,
                culprit=Culprit(
                    ranks=[rank] if rank is not None else [], hosts=[host_v] if host_v else [], pids=[pid]
                ),
                window_start_ns=start,
                window_end_ns=end,
                evidence=[evidence(r) for r in rows[:3]],
                missing_evidence=missing,
                actions=[
                    "raise the container memory limit or reduce host memory use (DataLoader workers, pinned memory, prefetch)"
                    if scope == "cgroup"
                    else "the host ran out of memory: reduce per-node memory use or add swap/limits for side processes",
                ],
                details={
                    "xid": None,
                    "host": host_v,
                    "pid": pid,
                    "comm": comm,
                    "rank": rank,
                    "oom_scope": scope,
                    "constraint": attrs.get("constraint"),
                    "task_memcg": attrs.get("task_memcg"),
                    "anon_rss_kb": int(anon) if anon and anon.isdigit() else None,
                    "first_ts_ns": start,
                    "count": total_count(rows),
                    "action_class": "HOST_MEMORY",
                },
            )
        )
    return verdicts


def _sigkilled(tables: Tables) -> tuple[set[int], set[int]]:
    """Ranks and pids the launcher reports as killed by SIGKILL / exit -9."""
    if not tables.has("app_events"):
        return set(), set()
    frame = tables.df("app_events").filter(tables.df("app_events")["kind"] == "elastic_failure")
    ranks: set[int] = set()
    pids: set[int] = set()
    for row in frame.iter_rows(named=True):
        if str(row.get("signal") or "").upper() in ("SIGKILL", "9") or row.get("exit_code") == -9:
            if row.get("rank") is not None:
                ranks.add(int(row["rank"]))
            if row.get("pid") is not None:
                pids.add(int(row["pid"]))
    return ranks, pids


DETECTOR = Detector(
    id="host-oom-kill",
    summary="Kernel OOM killer killed a process; the victim pid is mapped to its rank (cgroup vs global OOM)",
    sources=("kernel_log", "app_log"),
    tables=("kernel_events", "app_events", "identity"),
    detect=detect,
    scope=__name__,
)
