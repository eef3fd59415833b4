"""Detector ``rendezvous-failure``: the job never formed (rendezvous, TCPStore, NCCL bootstrap) — P23."""

from __future__ import annotations

from collections import Counter
from typing import Any

import polars as pl

from ..report import Affected, Culprit, Severity, Verdict, ranks_text
from ..tables import Tables
from .base import Detector
from .common import evidence_from_row

_PRIORITY = (
    "address-in-use",
    "connection-refused",
    "unreachable",
    "nccl-bootstrap",
    "closed",
    "timeout",
    "failed",
)
_CONNECT = ("connection-refused", "unreachable", "timeout")
_EXPLAIN = {
    "unreachable": "no network route to the store/master address (routing, firewall, wrong interface or name)",
    "connection-refused": "nothing listened at the store/master address (master not started yet, wrong address or port, firewall)",
    "timeout": "not every rank joined before the timeout (a rank never started, or could not reach the store)",
    "address-in-use": "the store port was already taken on the master (a previous job still running, or two jobs on one port)",
    "closed": "the rendezvous was closed (another agent gave up or the job was torn down)",
    "nccl-bootstrap": "NCCL could not bootstrap its communicator (network interface or address problem)",
    "failed": "the rendezvous or store operation failed",
}


def detect(tables: Tables) -> list[Verdict]:
    """Find jobs that failed while forming: rendezvous, TCPStore or NCCL bootstrap failures.

    What it detects:
        Ranks that could not join the job: torchrun/elastic rendezvous timeouts or closed
        rendezvous, TCPStore / c10d socket connect failures (refused, timed out), "Timed out …
        waiting for clients. N/M clients joined", the store port already in use, and NCCL
        ``Bootstrap`` warnings.

    Signals:
        ``app_events`` kind ``rendezvous_failure`` (attrs reason, joined/expected, port; peer =
        the address it tried), ``nccl_init`` rows (init completed later, and the world size), the
        identity table for ranks and hosts.

    Rule:
        Failures in a file that is followed, in the same file, by an NCCL ``Init COMPLETE`` line
        were transient (a retry succeeded) and are dropped. What remains gives one verdict
        (severity error) classified by the most frequent reason: connection-refused, timeout,
        address-in-use, closed, nccl-bootstrap, unreachable. Culprit: the ranks of the world (NCCL
        world size) that never logged an init line when some did; else, when the store answered
        other ranks ("N/M clients joined" logged on its host), the hosts whose connects to it
        failed; else the store/master host a connect failure names; else the reporting ranks. joined/expected from the store message go to details.

    Known false positives:
        Connect retries while the master is still starting are normal; they are dropped only when
        the same file later shows a completed NCCL init, so logs cut before init (or jobs that
        never use NCCL) still report them.
    """
    if not tables.has("app_events"):
        return []
    app = tables.df("app_events")
    failures = app.filter(pl.col("kind") == "rendezvous_failure").sort("source_file", "source_line")
    if failures.height == 0:
        return []
    inits = app.filter(pl.col("kind") == "nccl_init")
    last_init = {
        f: int(n) for f, n in inits.group_by("source_file").agg(pl.col("source_line").max()).iter_rows()
    }
    rows = [
        r
        for r in failures.to_dicts()
        if not (r["source_file"] in last_init and last_init[r["source_file"]] > r["source_line"])
    ]
    recovered = failures.height - len(rows)
    if not rows:
        return []
    reasons = Counter(str(dict(r["attrs"] or {}).get("reason", "failed")) for r in rows)
    # Ties go to the more specific reason: a refused or unroutable connect explains a later timeout.
    reason = sorted(
        reasons.items(), key=lambda kv: (-kv[1], _PRIORITY.index(kv[0]) if kv[0] in _PRIORITY else 99)
    )[0][0]
    reporters = sorted({int(r["rank"]) for r in rows if r["rank"] is not None})
    hosts = sorted({str(r["host"]) for r in rows if r["host"]})
    world = None
    if inits.height:
        world = inits.select(pl.col("attrs").map.get("nranks").cast(pl.Int64, strict=False).max()).item()
    joined_ranks = sorted({int(r) for r in inits["rank"].drop_nulls().to_list()})
    never_joined = sorted(set(range(int(world))) - set(joined_ranks)) if world and joined_ranks else []
    peers = Counter(str(r["peer"]) for r in rows if r["peer"])
    joined = expected = None
    for r in rows:
        attrs = dict(r["attrs"] or {})
        if "joined" in attrs:
            joined, expected = int(attrs["joined"]), int(attrs["expected"])
            break
    connecting = [r for r in rows if r["peer"] and str(dict(r["attrs"] or {}).get("reason")) in _CONNECT]
    store_hosts = {str(r["host"]) for r in rows if "joined" in dict(r["attrs"] or {}) and r["host"]}
    connect_hosts = sorted({str(r["host"]) for r in connecting if r["host"]} - store_hosts)
    connect_ranks = sorted(
        {int(r["rank"]) for r in connecting if r["rank"] is not None and r["host"] in connect_hosts}
    )
    store_alive = bool(store_hosts)
    culprit = Culprit()
    missing: list[str] = []
    if never_joined:
        culprit.ranks = never_joined
        who = f"rank(s) {ranks_text(never_joined)} never completed NCCL init"
    elif store_alive and connect_hosts:
        # The store answered others (N/M clients joined) but these hosts could not reach it.
        culprit.hosts = connect_hosts
        culprit.ranks = connect_ranks
        who = f"host(s) {', '.join(connect_hosts)} could not reach the store"
    elif peers and reason in _CONNECT:
        peer = sorted(peers.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        culprit.hosts = [peer]
        who = f"store/master {peer} unreachable"
    else:
        culprit.ranks = reporters
        culprit.hosts = hosts
        who = f"rank(s) {ranks_text(reporters)}" if reporters else "the job"
        if joined is not None and expected is not None:
            missing.append(
                f"logs of the ranks that never joined ({expected - joined} of {expected} missing from the store)"
            )
        else:
            missing.append("logs of every rank (the ranks that never joined cannot be named from these)")
    timed = [r["ts_ns"] for r in rows if r["ts_ns"] is not None]
    title = f"Rendezvous failure ({reason}): {who}"
    if joined is not None:
        title += f"; {joined}/{expected} clients joined the store"
    details: dict[str, Any] = {
        "reason": reason,
        "explanation": _EXPLAIN.get(reason),
        "reasons": dict(sorted(reasons.items())),
        "reporter_ranks": reporters,
        "reporter_hosts": hosts,
        "peer": culprit.hosts[0] if culprit.hosts and not never_joined else None,
        "joined": joined,
        "expected": expected,
        "world_size": world,
        "never_joined_ranks": never_joined,
        "recovered_failures": recovered,
        "first_ts_ns": min(timed) if timed else None,
    }
    return [
        Verdict(
            pattern="rendezvous-failure",
            title=title,
            severity=Severity.ERROR,
            key=f"reason={reason}",
            culprit=culprit,
            affected=Affected(ranks=reporters, hosts=hosts),
            window_start_ns=min(timed) if timed else None,
            window_end_ns=max(timed) if timed else None,
            evidence=[evidence_from_row("app_log", r) for r in rows[:8]],
            missing_evidence=missing,
            actions=[
                "Check that every node started its agent and can reach MASTER_ADDR:MASTER_PORT (the store)",
                "Check for a leftover job holding the port and for NCCL_SOCKET_IFNAME pointing at a usable interface",
            ],
            details=details,
        )
    ]


DETECTOR = Detector(
    id="rendezvous-failure",
    summary="The job never formed: rendezvous, TCPStore or NCCL bootstrap failures, and which ranks never joined",
    sources=("app_log",),
    tables=("app_events", "identity"),
    detect=detect,
    scope=__name__,
)
