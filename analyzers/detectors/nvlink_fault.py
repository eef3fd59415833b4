"""Detector ``nvlink-fault``: NVLink / NVSwitch faults (Xid 74, NVLink5 Xid 144–150, SXid, counters)."""

from __future__ import annotations

import polars as pl

from ..report import Affected, Confidence, Culprit, Severity, Verdict
from ..tables import Tables
from .base import Detector
from .common import ranks_on_host
from .kernel_common import (
    cascades,
    corroborate,
    dcgm_deltas,
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

NVLINK_XIDS = (74, 136, 144, 145, 146, 147, 148, 149, 150, 155)
NVLINK_FIELDS = [
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
]


def detect(tables: Tables) -> list[Verdict]:
    """What it detects:
    NVLink or NVSwitch faults that break intra-node (and NVL72 rack) communication: NCCL
    collectives on the affected GPUs hang or fail while every rank is still alive.

    Signals:
    kernel_events Xid 74, 136, 155 and the NVLink5 codes 144–150 (unit, Fatal/Nonfatal, link
    decoded into attrs); NVSwitch SXid rows (kind ``sxid``); DCGM NVLink CRC/replay/recovery
    counter deltas.

    Rule:
    One verdict per GPU with NVLink Xids: critical for Xid 74/136 or a Fatal NVLink5 error,
    warning for Nonfatal-only NVLink5 errors. One verdict per NVSwitch with SXids: critical when
    any is fatal (every GPU behind the switch is affected), warning otherwise. Kernel plus a DCGM
    NVLink error delta on the same GPU → full. DCGM deltas alone on exactly one GPU of a host
    (peers at zero) → partial warning (degraded link → intra-node straggler).

    Known false positives:
    Nonfatal NVLink5 errors and SXid non-fatal link interrupts at boot (link training) are
    common and benign; CRC counters grow slowly on healthy links (only a one-GPU outlier is
    reported).
    """
    verdicts: list[Verdict] = []
    deltas = dcgm_deltas(tables, NVLINK_FIELDS)
    covered: set[tuple[str | None, str | None]] = set()
    for (host, pci), rows in group_by_gpu(kernel_rows(tables, ["xid"], NVLINK_XIDS)).items():
        rows.sort(key=order_key)
        host_v, pci_v = host or None, pci or None
        codes = sorted({int(r["xid"]) for r in rows})
        fatal = any(c in (74, 136, 155) for c in codes) or any(
            r["attrs"].get("nvlink_fatal") == "yes" for r in rows
        )
        ctx = gpu_context(tables, host_v, pci_v)
        dcgm = same_gpu(deltas, host_v, pci_v, ctx.gpu_index)
        ev = [evidence(r) for r in rows[:4]]
        missing = list(ctx.missing)
        confidence = corroborate(dcgm, ev, missing, "no DCGM NVLink error counter delta for this GPU")
        covered.add((host_v, pci_v))
        links = sorted(
            {
                f"{pci_v} nvlink {r['attrs']['link']}"
                for r in rows
                if r["attrs"].get("link") not in (None, "-1")
            }
        )
        start, end = window(rows)
        verdicts.append(
            Verdict(
                pattern="nvlink-fault",
                title=f"{'Fatal' if fatal else 'Non-fatal'} NVLink error on GPU {pci_v or '?'} ({host_v or '?'}), Xid {', '.join(map(str, codes))}",
                severity=Severity.CRITICAL if fatal else Severity.WARNING,
                key=gpu_key(host, pci),
                confidence=confidence,
                culprit=ctx.culprit(links),
                affected=Affected(
                    ranks=ranks_on_host(tables, host_v) if fatal else [], hosts=[host_v] if host_v else []
                ),
                window_start_ns=start,
                window_end_ns=end,
                evidence=ev,
                missing_evidence=missing,
                actions=[
                    xid_action(codes[0]),
                    "drain the node; reset the GPUs / restart Fabric Manager, reseat on recurrence",
                ],
                details={
                    "xid": codes[0],
                    "xids": codes,
                    "fatal": fatal,
                    "units": sorted(
                        {r["attrs"]["nvlink_unit"] for r in rows if r["attrs"].get("nvlink_unit")}
                    ),
                    "pci_bus_id": pci_v,
                    "gpu_index": ctx.gpu_index,
                    "host": host_v,
                    "rank": ctx.rank,
                    "first_ts_ns": start,
                    "count": total_count(rows),
                    "recovery_action": next(iter(reversed(recovery_actions(tables, host_v, pci_v))), None),
                    "action_class": "RESET_GPU" if fatal else "WORKFLOW_NVLINK5_ERR",
                    "cause_chain": [f"Xid {c}" for c in codes],
                    "cascade_xid45": cascades(tables, host_v, codes),
                },
            )
        )
    for (host, pci), rows in group_by_gpu(kernel_rows(tables, ["sxid"])).items():
        rows.sort(key=order_key)
        host_v, pci_v = host or None, pci or None
        fatal = any(r["attrs"].get("nvlink_fatal") == "yes" for r in rows)
        codes = sorted({int(r["xid"]) for r in rows if r.get("xid") is not None})
        start, end = window(rows)
        verdicts.append(
            Verdict(
                pattern="nvlink-fault",
                title=f"NVSwitch {pci_v or '?'} on {host_v or '?'} reported {'fatal ' if fatal else ''}SXid {', '.join(map(str, codes))}",
                severity=Severity.CRITICAL if fatal else Severity.WARNING,
                key=f"host={host or '?'} nvswitch={pci or '?'}",
                confidence=Confidence.PARTIAL,
                culprit=Culprit(hosts=[host_v] if host_v else [], links=[f"nvswitch {pci_v}"]),
                affected=Affected(
                    ranks=ranks_on_host(tables, host_v) if fatal else [], hosts=[host_v] if host_v else []
                ),
                window_start_ns=start,
                window_end_ns=end,
                evidence=[evidence(r) for r in rows[:4]],
                missing_evidence=["no Fabric Manager log to confirm the switch state"],
                actions=[
                    "fatal SXid: every GPU behind this NVSwitch is affected; reset the baseboard/reboot and contact support"
                ]
                if fatal
                else ["non-fatal SXid: watch for recurrence; correlate with NCCL errors on this node"],
                details={
                    "sxid": codes,
                    "xid": None,
                    "fatal": fatal,
                    "pci_bus_id": pci_v,
                    "host": host_v,
                    "rank": None,
                    "first_ts_ns": start,
                    "count": total_count(rows),
                    "action_class": "RESET_GPU" if fatal else "IGNORE",
                },
            )
        )
    verdicts.extend(_counter_outliers(tables, deltas, covered))
    return verdicts


def _counter_outliers(
    tables: Tables, deltas: pl.DataFrame, covered: set[tuple[str | None, str | None]]
) -> list[Verdict]:
    if deltas.height == 0:
        return []
    verdicts = []
    by_host: dict[str | None, set[tuple[str | None, int | None]]] = {}
    for row in deltas.iter_rows(named=True):
        by_host.setdefault(row.get("host"), set()).add((row.get("pci_bus_id"), row.get("gpu_index")))
    for row in deltas.iter_rows(named=True):
        host, pci = row.get("host"), row.get("pci_bus_id")
        if (host, pci) in covered or len(by_host.get(host, set())) != 1:
            continue
        covered.add((host, pci))
        ctx = gpu_context(tables, host, pci)
        verdicts.append(
            Verdict(
                pattern="nvlink-fault",
                title=f"NVLink errors counted on GPU {pci or row.get('gpu_index')} only ({host or '?'}): degraded link",
                severity=Severity.WARNING,
                key=gpu_key(host or "", pci or f"index{row.get('gpu_index')}"),
                confidence=Confidence.PARTIAL,
                culprit=ctx.culprit(),
                window_start_ns=row.get("first_ts_ns"),
                window_end_ns=row.get("last_ts_ns"),
                evidence=[
                    dcgm_evidence(
                        row,
                        f"{row['field']} rose by {row['delta']:g} while the host's other GPUs stayed at zero",
                    )
                ],
                missing_evidence=[*ctx.missing, "no kernel NVLink Xid for this GPU"],
                actions=[
                    "check this GPU's NVLink (nvidia-smi nvlink -e); expect it to straggle in intra-node collectives"
                ],
                details={
                    "xid": None,
                    "pci_bus_id": pci,
                    "gpu_index": row.get("gpu_index"),
                    "host": host,
                    "rank": ctx.rank,
                    "first_ts_ns": row.get("first_ts_ns"),
                    "count": int(row["delta"]),
                    "field": row["field"],
                    "dcgm_only": True,
                    "action_class": "INVESTIGATE_LINK_SI",
                },
            )
        )
    return verdicts


DETECTOR = Detector(
    id="nvlink-fault",
    summary="NVLink / NVSwitch faults: Xid 74, NVLink5 Xid 144-150, SXid, one-GPU NVLink counter outliers",
    sources=("kernel_log", "dcgm"),
    tables=("kernel_events", "gpu_metrics", "identity"),
    detect=detect,
    scope=__name__,
)
