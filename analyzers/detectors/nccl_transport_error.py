"""Detector ``nccl-transport-error``: NCCL network errors, and the peer most of them name."""

from __future__ import annotations

from collections import Counter
from typing import Any

import polars as pl

from ..report import Affected, Culprit, Severity, Verdict, ranks_text
from ..tables import Tables
from .base import Detector
from .common import evidence_from_row

# ibv_wc_status codes NCCL prints as "status=N" / "error N" (verbs.h), and what they say about blame.
STATUS = {
    "1": ("IBV_WC_LOC_LEN_ERR", "local"),
    "2": ("IBV_WC_LOC_QP_OP_ERR", "local"),
    "4": ("IBV_WC_LOC_PROT_ERR: local protection error (memory registration, GPUDirect RDMA)", "local"),
    "5": ("IBV_WC_WR_FLUSH_ERR: request flushed because the queue pair was already in error", "consequence"),
    "9": ("IBV_WC_REM_INV_REQ_ERR", "peer"),
    "10": ("IBV_WC_REM_ACCESS_ERR", "peer"),
    "11": ("IBV_WC_REM_OP_ERR", "peer"),
    "12": (
        "IBV_WC_RETRY_EXC_ERR: transport retries exhausted, the peer or the path to it is unreachable",
        "peer",
    ),
    "13": ("IBV_WC_RNR_RETRY_EXC_ERR: receiver not ready, the peer stopped posting receives", "peer"),
}
_OTHER_ERRORS = ("remote process exiting", "unhandled system error", "connection closed")


def _attr(row: dict[str, Any], key: str) -> str | None:
    attrs = row.get("attrs") or {}
    value = dict(attrs).get(key)
    return str(value) if value is not None else None


def _strip_peer(peer: str) -> str:
    """``fe80::1%ib0`` → ``fe80::1``; ``::ffff:10.0.0.1`` → ``10.0.0.1``."""
    address = peer.split("%", 1)[0]
    return address[7:] if address.lower().startswith("::ffff:") and "." in address else address


def ip_to_host(app: pl.DataFrame) -> dict[str, str]:
    """IP → host from NCCL Bootstrap/OOB lines (attrs ip) of the same logs."""
    known = app.filter(pl.col("host").is_not_null() & pl.col("attrs").map.get("ip").is_not_null())
    mapping: dict[str, str] = {}
    for ip, host in known.select(pl.col("attrs").map.get("ip"), "host").iter_rows():
        mapping.setdefault(_strip_peer(str(ip)), str(host))
    return mapping


def detect(tables: Tables) -> list[Verdict]:
    """Find NCCL transport failures and vote on the peer they blame.

    What it detects:
        NCCL's network transport failed between ranks: ``NET/IB : Got completion from peer
        <ip:port> with status=N`` (or ``error N``), ``remote process exiting``, ``unhandled system
        error`` and the "-> N" error propagation that follows them.

    Signals:
        ``app_events`` kind ``nccl_warn`` with ``peer`` and attrs status / status_form / vendor_err
        / direction; ``nccl_warn``/``nccl_error`` rows whose error is "remote process exiting" or
        "unhandled system error"; NCCL Bootstrap / OOB lines (attrs ip) to map a peer IP to its
        host; the identity table for the reporters' hosts.

    Rule:
        Each completion error votes for the peer it names, weighted by what its status means:
        status 12 (retries exhausted) and 13 (receiver not ready) and other remote errors blame the
        peer (weight 2); status 5 (flush) only repeats an earlier error on the same queue pair
        (weight 1); status 4 (local protection error) blames the reporting host itself, not the
        peer. The peer (or reporting host) with the most votes is the culprit, mapped from IP to
        host through the logs' own Bootstrap/OOB lines; when the IP cannot be mapped the verdict
        says so and names the IP only. Severity error; a symptom when an IB link flap on that host
        (or a crash of the peer) explains it.

    Known false positives:
        A peer that exits first (crash, OOM kill) makes every neighbour log transport errors that
        name it: the vote then names the victim of another fault, which correlation resolves. On
        RoCE with shared addresses several hosts may hide behind one IP.
    """
    if not tables.has("app_events"):
        return []
    app = tables.df("app_events")
    warns = app.filter(
        pl.col("kind").is_in(["nccl_warn", "nccl_error"])
        & (pl.col("peer").is_not_null() | pl.col("attrs").map.get("error").is_in(list(_OTHER_ERRORS)))
    ).sort("source_file", "source_line")
    if warns.height == 0:
        return []
    rows = warns.to_dicts()
    ip_host = ip_to_host(app)
    votes: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    local_blame: Counter[str] = Counter()
    for row in rows:
        status = _attr(row, "status")
        if status is not None:
            statuses[status] += 1
        if row["peer"] is None:
            continue
        peer = _strip_peer(str(row["peer"]))
        side = STATUS.get(status or "", ("", "peer"))[1]
        if side == "local":
            if row["host"]:
                local_blame[str(row["host"])] += 2
            continue
        votes[peer] += 1 if side == "consequence" else 2
    reporters = sorted({int(r["rank"]) for r in rows if r["rank"] is not None})
    reporter_hosts = sorted({str(r["host"]) for r in rows if r["host"]})
    missing: list[str] = []
    culprit_hosts: list[str] = []
    peer_ip: str | None = None
    mapped: bool | None = None
    blame = "peer"
    if votes and (not local_blame or votes.most_common(1)[0][1] >= local_blame.most_common(1)[0][1]):
        ranked = sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))
        peer_ip = ranked[0][0]
        host = ip_host.get(peer_ip)
        mapped = host is not None
        if host is not None:
            culprit_hosts = [host]
            who = f"host {host} ({peer_ip})"
        else:
            who = f"peer {peer_ip}"
            missing.append(
                f"host of IP {peer_ip}: no NCCL Bootstrap/OOB line of that host in the logs (NCCL_DEBUG=INFO on all ranks would map it)"
            )
    elif local_blame:
        blame = "local"
        host = sorted(local_blame.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        culprit_hosts = [host]
        who = f"the reporting host {host} (local protection errors)"
    else:
        who = "no named peer"
        missing.append("peer address (the NCCL lines name no peer)")
    culprit_ranks: list[int] = []
    if culprit_hosts and tables.has("identity"):
        ident = tables.df("identity").filter(pl.col("host").is_in(culprit_hosts))
        culprit_ranks = sorted(int(r) for r in ident["rank"].drop_nulls().to_list())
    blamed_has_klog = (
        bool(culprit_hosts)
        and tables.has("kernel_events")
        and (tables.df("kernel_events").filter(pl.col("host").is_in(culprit_hosts)).height > 0)
    )
    if not blamed_has_klog:
        blamed = f"host {culprit_hosts[0]}" if culprit_hosts else "the blamed host"
        missing.append(f"kernel log of {blamed} (mlx5 link down/up, port errors)")
    timed = [r["ts_ns"] for r in rows if r["ts_ns"] is not None]
    decisive = Counter(
        {code: n for code, n in statuses.items() if STATUS.get(code, ("", "peer"))[1] != "consequence"}
    )
    main_status = (decisive or statuses).most_common(1)[0][0] if statuses else None
    meaning = {
        code: STATUS.get(code, ("unknown ibv_wc_status", "peer"))[0] for code in sorted(statuses, key=int)
    }
    title = f"NCCL transport errors blame {who}"
    if main_status is not None:
        title += (
            f" (status {main_status}: {STATUS.get(main_status, ('unknown ibv_wc_status',))[0].split(':')[0]})"
        )
    if reporters:
        title += f"; reported by rank(s) {ranks_text(reporters)}"
    details: dict[str, Any] = {
        "peer": culprit_hosts[0] if culprit_hosts else peer_ip,
        "peer_ip": peer_ip,
        "peer_mapped": mapped,
        "blame": blame,
        "votes": dict(sorted(votes.items())),
        "statuses": dict(sorted(statuses.items())),
        "status_meaning": meaning,
        "reporter_ranks": reporters,
        "reporter_hosts": reporter_hosts,
        "first_ts_ns": min(timed) if timed else None,
        "ip_to_host": dict(sorted(ip_host.items())),
    }
    return [
        Verdict(
            pattern="nccl-transport-error",
            title=title,
            severity=Severity.ERROR,
            key=f"peer={details['peer']}",
            culprit=Culprit(
                ranks=culprit_ranks,
                hosts=culprit_hosts,
                links=[f"ip:{peer_ip}"] if peer_ip and not mapped else [],
            ),
            affected=Affected(ranks=reporters, hosts=reporter_hosts),
            window_start_ns=min(timed) if timed else None,
            window_end_ns=max(timed) if timed else None,
            evidence=[evidence_from_row("app_log", r) for r in rows[:10]],
            missing_evidence=missing,
            actions=[
                "Check the blamed host's IB/RoCE port (ibstat, link-flap counters, cable/transceiver) and its kernel log",
                "If that host's rank crashed first, the transport errors are a consequence of the crash",
            ],
            details=details,
        )
    ]


DETECTOR = Detector(
    id="nccl-transport-error",
    summary="NCCL network transport errors; majority vote over the peer host they name",
    sources=("app_log",),
    tables=("app_events", "identity"),
    detect=detect,
    scope=__name__,
)
