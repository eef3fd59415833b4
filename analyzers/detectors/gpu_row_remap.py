"""Detector ``gpu-row-remap``: GPU memory row remapping recorded (Xid 63), failed (Xid 64) or pending."""

from __future__ import annotations

from ..report import Confidence, Severity, Verdict
from ..tables import Tables
from .base import Detector
from .kernel_common import (
    dcgm_evidence,
    dcgm_latest,
    evidence,
    gpu_context,
    gpu_key,
    group_by_gpu,
    kernel_rows,
    order_key,
    same_gpu,
    total_count,
    window,
    xid_action,
)

FAILURE = "DCGM_FI_DEV_ROW_REMAP_FAILURE"
PENDING = "DCGM_FI_DEV_ROW_REMAP_PENDING"
UNCORRECTABLE_ROWS = "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS"
FIELDS = [FAILURE, PENDING, UNCORRECTABLE_ROWS, "DCGM_FI_DEV_RETIRED_PENDING"]


def detect(tables: Tables) -> list[Verdict]:
    """What it detects:
    GPU memory that has run out of spare rows (remap failure: an RMA criterion) or that carries a
    remap waiting for the next GPU reset.

    Signals:
    kernel_events Xid 63 (remap / page retirement recorded) and Xid 64 (remap failed); DCGM
    latest values of DCGM_FI_DEV_ROW_REMAP_FAILURE, DCGM_FI_DEV_ROW_REMAP_PENDING,
    DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS and DCGM_FI_DEV_RETIRED_PENDING.

    Rule:
    One verdict per GPU. Xid 64 or a remap-failure flag → critical (RMA-class, not a job bug).
    Xid 63 or a pending remap/retirement → warning (reset the GPU before reuse). Uncorrectable
    remapped rows without pending or failure → info (degraded, watch). Kernel and DCGM agreeing
    on the GPU → full; either alone → partial.

    Known false positives:
    Remap counters are lifetime values: a GPU remapped long before the incident shows rows
    (reported as info only); Xid 63 at boot reflects a remap that has just been applied.
    """
    verdicts: list[Verdict] = []
    rows_all = kernel_rows(tables, ["xid"], [63, 64])
    latest = dcgm_latest(tables, FIELDS)
    seen: set[tuple[str | None, str | None]] = set()
    groups = group_by_gpu(rows_all)
    for row in latest.iter_rows(named=True):
        key = (str(row.get("host") or ""), str(row.get("pci_bus_id") or ""))
        if (row.get("value") or 0) > 0:
            groups.setdefault(key, [])
    for (host, pci), rows in sorted(groups.items()):
        rows.sort(key=order_key)
        host_v, pci_v = host or None, pci or None
        ctx = gpu_context(tables, host_v, pci_v)
        dcgm = same_gpu(latest, host_v, pci_v, ctx.gpu_index)
        values = {r["field"]: r for r in dcgm.iter_rows(named=True) if (r.get("value") or 0) > 0}
        codes = sorted({int(r["xid"]) for r in rows})
        if (host_v, pci_v) in seen:
            continue
        seen.add((host_v, pci_v))
        if 64 in codes or FAILURE in values:
            severity, state = Severity.CRITICAL, "remap failure"
            actions = [xid_action(64), "take the GPU out of service: remapping is exhausted (RMA criterion)"]
        elif 63 in codes or PENDING in values or "DCGM_FI_DEV_RETIRED_PENDING" in values:
            severity, state = Severity.WARNING, "remap pending"
            actions = [
                xid_action(63),
                "reset the GPU (or reboot) so the pending remap takes effect before reuse",
            ]
        elif values:
            severity, state = Severity.INFO, "rows remapped"
            actions = ["no action now; watch this GPU's remapped-row count"]
        else:
            continue
        ev = [evidence(r) for r in rows[:3]] + [
            dcgm_evidence(r, f"{name} = {r['value']:g}") for name, r in sorted(values.items())
        ]
        both = bool(rows) and bool(values)
        missing = list(ctx.missing)
        if not rows:
            missing.append("no kernel Xid 63/64 line for this GPU")
        if not values:
            missing.append("no DCGM row-remap fields for this GPU")
        start, end = window(rows)
        verdicts.append(
            Verdict(
                pattern="gpu-row-remap",
                title=f"GPU {pci_v or '?'} on {host_v or '?'}: {state}",
                severity=severity,
                key=gpu_key(host, pci),
                confidence=Confidence.FULL if both else Confidence.PARTIAL,
                culprit=ctx.culprit(),
                window_start_ns=start,
                window_end_ns=end,
                evidence=ev,
                missing_evidence=missing,
                actions=actions,
                details={
                    "xid": codes[-1] if codes else None,
                    "xids": codes,
                    "state": state,
                    "pci_bus_id": pci_v,
                    "gpu_index": ctx.gpu_index,
                    "host": host_v,
                    "rank": ctx.rank,
                    "first_ts_ns": start,
                    "count": total_count(rows),
                    "dcgm": {name: r["value"] for name, r in sorted(values.items())},
                    "action_class": "RESET_GPU" if severity != Severity.INFO else "IGNORE",
                },
            )
        )
    return verdicts


DETECTOR = Detector(
    id="gpu-row-remap",
    summary="GPU memory row remap failure (Xid 64, RMA class) or pending remap (Xid 63), with DCGM remap fields",
    sources=("kernel_log", "dcgm"),
    tables=("kernel_events", "gpu_metrics", "identity"),
    detect=detect,
    scope=__name__,
)
