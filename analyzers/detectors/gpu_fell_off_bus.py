"""Detector ``gpu-fell-off-bus``: a GPU disappeared from PCIe (Xid 79 or the no-Xid block)."""

from __future__ import annotations

from typing import Any

from .. import dcgm_signals
from ..report import Affected, Confidence, Severity, Verdict
from ..tables import Tables
from .base import Detector
from .kernel_common import (
    corroborate,
    dcgm_evidence,
    evidence,
    gpu_context,
    gpu_key,
    group_by_gpu,
    kernel_rows,
    order_key,
    recovery_actions,
    same_gpu,
    total_count,
    window,
    xid_action,
)

# AER / hot-plug events this long before the loss are taken as its cause.
PRECURSOR_WINDOW_NS = 120 * 1_000_000_000


def detect(tables: Tables) -> list[Verdict]:
    """What it detects:
    A GPU that fell off the PCIe bus: the driver can no longer reach it, every process on it
    dies or hangs, and the other ranks then time out in their collectives.

    Signals:
    kernel_events rows with Xid 79 (``NVRM: Xid (PCI:…): 79, … GPU has fallen off the bus``) or
    kind ``gpu_lost`` (``NVRM: GPU at … has fallen off the bus`` and the three-line
    ``The NVIDIA GPU … fallen off the bus and is not responding`` block that carries no Xid);
    precursors on the same host: AER fatal / Surprise Down, ``device recovery failed``,
    ``pciehp … Link Down`` / ``Card not present``; follow-up Xid 154 recovery action; DCGM: the
    GPU's series vanish while the host's other GPUs keep reporting (dcgm_signals.vanished_series).

    Rule:
    One verdict per (host, PCI address), severity critical. The PCI address is mapped to GPU
    index and rank through the identity table (missing mapping → missing_evidence). AER/hot-plug
    events on the same host up to 120 s before the first loss line (or earlier in the same file
    when times are unknown) become evidence and the start of details.cause_chain. Confidence is
    full when DCGM shows the same GPU's series vanishing, partial otherwise. A vanished DCGM
    series without any kernel line gives a partial verdict of severity warning.

    Known false positives:
    Deliberate hot-removal or a GPU reset through ``nvidia-smi -r`` on some drivers prints the
    same lines; a driver probe failure after a reboot (no-Xid block) may describe the previous
    boot's loss rather than the incident's.
    """
    verdicts: list[Verdict] = []
    lost = kernel_rows(tables, ["xid"], [79]) + kernel_rows(tables, ["gpu_lost"])
    precursors = [
        r
        for r in kernel_rows(tables, ["aer", "pcie_link"])
        if r["attrs"].get("aer_severity") == "fatal"
        or r["attrs"].get("aer_event") == "recovery_failed"
        or r["attrs"].get("pcie_state") == "down"
    ]
    vanished = dcgm_signals.vanished_series(tables)
    covered: set[tuple[str | None, str | None]] = set()
    for (host, pci), rows in group_by_gpu(lost).items():
        rows.sort(key=order_key)
        host_v = host or None
        pci_v = pci or None
        ctx = gpu_context(tables, host_v, pci_v)
        first = rows[0]
        start, end = window(rows)
        before = _precursors_of(precursors, first, host_v)
        chain = [_describe(p) for p in before] + [f"Xid 79: GPU {pci_v or '?'} fell off the bus"]
        actions_154 = recovery_actions(tables, host_v, pci_v)
        chain += [f"Xid 154: recovery action → {a}" for a in actions_154]
        dcgm_rows = same_gpu(vanished, host_v, pci_v, ctx.gpu_index)
        ev = [evidence(r) for r in rows[:3]] + [evidence(p) for p in before[:3]]
        missing = list(ctx.missing)
        confidence = corroborate(
            dcgm_rows,
            ev,
            missing,
            "no DCGM export showing this GPU's metrics stop",
            f"DCGM series of GPU {pci_v} stop while the host's other GPUs keep reporting",
        )
        covered.add((host_v, pci_v))
        verdicts.append(
            Verdict(
                pattern="gpu-fell-off-bus",
                title=f"GPU {pci_v or '?'} on {host_v or '?'} fell off the bus (Xid 79)"
                + (f"; rank {ctx.rank} lost its GPU" if ctx.rank is not None else ""),
                severity=Severity.CRITICAL,
                key=gpu_key(host, pci),
                confidence=confidence,
                culprit=ctx.culprit(
                    sorted({str(p["attrs"].get("reporter") or p.get("pci_bus_id")) for p in before})
                ),
                affected=Affected(hosts=[host_v] if host_v else []),
                window_start_ns=min(
                    [s for s in [start, *(p.get("ts_ns") for p in before)] if s is not None], default=None
                ),
                window_end_ns=end,
                evidence=ev,
                missing_evidence=missing,
                actions=[
                    xid_action(79),
                    "drain the node; reseat or replace the GPU (check riser/PCIe slot) before returning it to service",
                ],
                details={
                    "xid": 79,
                    "pci_bus_id": pci_v,
                    "gpu_index": ctx.gpu_index,
                    "host": host_v,
                    "rank": ctx.rank,
                    "rank_assumed": ctx.rank_assumed,
                    "first_ts_ns": start,
                    "count": total_count(rows),
                    "action_class": "RESTART_BM",
                    "cause_chain": chain,
                    "no_xid_block": any(r.get("kind") == "gpu_lost" for r in rows),
                    "recovery_action": actions_154[-1] if actions_154 else None,
                    "dcgm_corroborated": confidence == Confidence.FULL,
                },
            )
        )
    verdicts.extend(_dcgm_only(tables, vanished, covered))
    return verdicts


def _precursors_of(
    precursors: list[dict[str, Any]], first: dict[str, Any], host: str | None
) -> list[dict[str, Any]]:
    found = []
    ts = first.get("ts_ns")
    for row in precursors:
        if row.get("host") != host:
            continue
        row_ts = row.get("ts_ns")
        if ts is not None and row_ts is not None:
            if 0 <= ts - row_ts <= PRECURSOR_WINDOW_NS:
                found.append(row)
        elif row.get("source_file") == first.get("source_file") and int(row["source_line"]) < int(
            first["source_line"]
        ):
            found.append(row)
    return sorted(found, key=order_key)


def _describe(row: dict[str, Any]) -> str:
    attrs = row["attrs"]
    if row.get("kind") == "aer":
        what = attrs.get("aer_error") or attrs.get("aer_event") or "error"
        return f"AER {attrs.get('aer_severity') or ''} {what} at {attrs.get('reporter') or row.get('pci_bus_id')}".replace(
            "  ", " "
        )
    return f"PCIe link {attrs.get('pcie_state') or 'event'} at {row.get('pci_bus_id')}"


def _dcgm_only(tables: Tables, vanished: Any, covered: set[tuple[str | None, str | None]]) -> list[Verdict]:
    verdicts = []
    for row in vanished.iter_rows(named=True):
        host, pci = row.get("host"), row.get("pci_bus_id")
        if (host, pci) in covered:
            continue
        ctx = gpu_context(tables, host, pci)
        verdicts.append(
            Verdict(
                pattern="gpu-fell-off-bus",
                title=f"DCGM stopped seeing GPU {pci or row.get('gpu_index')} on {host or '?'} (possible loss from the bus)",
                severity=Severity.WARNING,
                key=gpu_key(host or "", pci or f"index{row.get('gpu_index')}"),
                confidence=Confidence.PARTIAL,
                culprit=ctx.culprit(),
                window_start_ns=row.get("last_ts_ns"),
                window_end_ns=row.get("host_last_ts_ns"),
                evidence=[
                    dcgm_evidence(row, "last reading of this GPU; the host's other GPUs keep reporting")
                ],
                missing_evidence=[*ctx.missing, "no kernel log line (Xid 79) for this GPU"],
                actions=["check the node's kernel log for Xid 79 / AER lines; run nvidia-smi on the node"],
                details={
                    "xid": None,
                    "pci_bus_id": pci,
                    "gpu_index": row.get("gpu_index"),
                    "host": host,
                    "rank": ctx.rank,
                    "first_ts_ns": row.get("last_ts_ns"),
                    "count": 0,
                    "action_class": "INVESTIGATE",
                    "cause_chain": ["DCGM series vanished"],
                    "dcgm_only": True,
                },
            )
        )
    return verdicts


DETECTOR = Detector(
    id="gpu-fell-off-bus",
    summary="A GPU fell off the PCIe bus (Xid 79 or the no-Xid driver block), mapped to its rank",
    sources=("kernel_log", "dcgm"),
    tables=("kernel_events", "gpu_metrics", "identity"),
    detect=detect,
    scope=__name__,
)
