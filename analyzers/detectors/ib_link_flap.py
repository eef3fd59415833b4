"""Detector ``ib-link-flap``: InfiniBand / RoCE port going down (and back up) on a host."""

from __future__ import annotations

from typing import Any

from ..report import Confidence, Culprit, Severity, Verdict
from ..tables import Tables
from .base import Detector
from .common import ranks_on_host
from .kernel_common import evidence, kernel_rows, order_key, total_count, window

DOWN_STATES = {"DOWN"}
UP_STATES = {"ACTIVE", "UP"}
# Repeated flaps within this window are chronic (ByteRobust / GPUd use minutes to hours).
FLAP_WINDOW_NS = 3600 * 1_000_000_000


def detect(tables: Tables) -> list[Verdict]:
    """What it detects:
    A network port (InfiniBand or RoCE/Ethernet NIC) that lost its link: NCCL transport errors
    follow on every rank that talks through it.

    Signals:
    kernel_events kind ``ib_link`` with attrs link_state (``mlx5_core … Port: 1 Link DOWN`` /
    ``ACTIVE``, netdev ``Link down``/``Link up``, ``Lost carrier``, module ``Cable unplugged``)
    and port (``mlx5_5/1``, netdev name, module).

    Rule:
    Per (host, port): count DOWN events (collapsed rows count every line) and later UP/ACTIVE
    events. Two or more down/up cycles within an hour → error "link flapping". A port that went
    down and never came back → error "port down". A single down followed by up → warning
    (one self-healed flap is weak evidence). Ports that only come up (INIT → ACTIVE at boot)
    give nothing. Partial confidence unless NCCL warnings (app_events nccl_warn) on other hosts
    name this host as their peer.

    Known false positives:
    Administrative port resets, cable swaps and subnet-manager restarts; ports of NICs not used
    by the job.
    """
    verdicts: list[Verdict] = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in kernel_rows(tables, ["ib_link"]):
        state = row["attrs"].get("link_state")
        if state is None:
            continue
        port = row["attrs"].get("port") or row.get("subject") or row.get("pci_bus_id") or "?"
        groups.setdefault((str(row.get("host") or ""), str(port)), []).append(row)
    peers = _nccl_peer_hosts(tables)
    for (host, port), rows in sorted(groups.items()):
        rows.sort(key=order_key)
        downs = [r for r in rows if r["attrs"].get("link_state") in DOWN_STATES]
        if not downs:
            continue
        first_down = downs[0]
        ups_after = [
            r
            for r in rows
            if r["attrs"].get("link_state") in UP_STATES and order_key(r) > order_key(first_down)
        ]
        n_down = total_count(downs)
        n_up = total_count(ups_after)
        start, end = window(rows)
        cycles = min(n_down, n_up)
        within = start is None or end is None or end - start <= FLAP_WINDOW_NS
        still_down = order_key(downs[-1]) > max((order_key(r) for r in ups_after), default=(-1, "", -1))
        if cycles >= 2 and within:
            severity, what = Severity.ERROR, f"link flapping ({cycles} down/up cycles)"
        elif still_down:
            severity, what = Severity.ERROR, "port down (no recovery in the log)"
        else:
            severity, what = Severity.WARNING, "single link flap (self-healed)"
        host_v = host or None
        corroborated = host_v in peers
        missing = [] if corroborated else ["no NCCL warning from other ranks naming this host as peer"]
        verdicts.append(
            Verdict(
                pattern="ib-link-flap",
                title=f"{port} on {host_v or '?'}: {what}",
                severity=severity,
                key=f"host={host or '?'} port={port}",
                confidence=Confidence.FULL if corroborated else Confidence.PARTIAL,
                culprit=Culprit(hosts=[host_v] if host_v else [], links=[f"{host_v}:{port}"]),
                window_start_ns=start,
                window_end_ns=end,
                evidence=[evidence(r) for r in (downs[:2] + ups_after[:2])],
                missing_evidence=missing,
                actions=[
                    "check the cable/transceiver and switch port (ibstat, link_downed counter); drain the node if it repeats",
                ],
                details={
                    "xid": None,
                    "host": host_v,
                    "port": port,
                    "pci_bus_id": first_down.get("pci_bus_id"),
                    "rank": None,
                    "ranks_on_host": ranks_on_host(tables, host_v),
                    "down_events": n_down,
                    "up_events": n_up,
                    "cycles": cycles,
                    "still_down": still_down,
                    "first_ts_ns": first_down.get("ts_ns"),
                    "count": total_count(rows),
                    "action_class": "CHECK_LINK",
                },
            )
        )
    return verdicts


def _nccl_peer_hosts(tables: Tables) -> set[str]:
    if not tables.has("app_events"):
        return set()
    frame = tables.df("app_events")
    if "peer" not in frame.columns:
        return set()
    peers = frame.filter(frame["kind"] == "nccl_warn")["peer"].drop_nulls().to_list()
    return {str(p).split(":")[0].split("<")[0] for p in peers}


DETECTOR = Detector(
    id="ib-link-flap",
    summary="InfiniBand/RoCE port down or flapping on a host (mlx5 port state, netdev link, lost carrier, cable events)",
    sources=("kernel_log", "app_log"),
    tables=("kernel_events", "app_events", "identity"),
    detect=detect,
    scope=__name__,
)
