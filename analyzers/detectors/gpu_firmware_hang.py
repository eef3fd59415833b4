"""Detector ``gpu-firmware-hang``: GPU firmware / driver timeouts that wedge a GPU (GSP, ctx-switch, PMU)."""

from __future__ import annotations

from .. import dcgm_signals
from ..report import Severity, Verdict
from ..tables import Tables
from .base import Detector
from .kernel_common import (
    corroborate,
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

FIRMWARE_XIDS = (61, 62, 109, 110, 119, 120, 143, 158, 169)


def detect(tables: Tables) -> list[Verdict]:
    """What it detects:
    A GPU whose firmware or driver stopped answering (GSP RPC timeout, GSP error, context-switch
    timeout, micro-controller halt, init failure, fatal timeout): its rank's CUDA calls never
    return, the process looks alive but silent, and the other ranks time out waiting for it.

    Signals:
    kernel_events Xid 61, 62, 109, 110, 119, 120, 143, 158, 169; kind ``gsp`` lines on the same
    GPU (RPC history, "The GPU likely needs to be reset"); the Xid 154 recovery action that
    follows; DCGM: the GPU's series vanish (the exporter cannot read a wedged GPU).

    Rule:
    Any of these Xids on GPU g → one critical verdict for g, its rank the culprit even when the
    process is alive. Action: reset the GPU or reboot; recurrence → RMA. Kernel plus DCGM
    series vanishing on the same GPU → full; kernel alone → partial.

    Known false positives:
    Xid 119 can be triggered by a host under extreme CPU/memory pressure delaying the driver;
    Xid 61 is a legacy code (unused on A100 and newer).
    """
    verdicts: list[Verdict] = []
    vanished = dcgm_signals.vanished_series(tables)
    gsp = kernel_rows(tables, ["gsp"])
    for (host, pci), rows in group_by_gpu(kernel_rows(tables, ["xid"], FIRMWARE_XIDS)).items():
        rows.sort(key=order_key)
        host_v, pci_v = host or None, pci or None
        codes = sorted({int(r["xid"]) for r in rows})
        ctx = gpu_context(tables, host_v, pci_v)
        related = [g for g in gsp if g.get("host") == host_v and g.get("pci_bus_id") in (pci_v, None)]
        ev = [evidence(r) for r in rows[:3]] + [evidence(g) for g in related[:2]]
        missing = list(ctx.missing)
        dcgm = same_gpu(vanished, host_v, pci_v, ctx.gpu_index)
        confidence = corroborate(
            dcgm,
            ev,
            missing,
            "no DCGM export showing this GPU stop reporting",
            f"DCGM series of GPU {pci_v} stop",
        )
        start, end = window(rows)
        actions_154 = recovery_actions(tables, host_v, pci_v)
        verdicts.append(
            Verdict(
                pattern="gpu-firmware-hang",
                title=f"GPU {pci_v or '?'} on {host_v or '?'} wedged in firmware/driver (Xid {', '.join(map(str, codes))})"
                + (f"; rank {ctx.rank} cannot progress" if ctx.rank is not None else ""),
                severity=Severity.CRITICAL,
                key=gpu_key(host, pci),
                confidence=confidence,
                culprit=ctx.culprit(),
                window_start_ns=start,
                window_end_ns=end,
                evidence=ev,
                missing_evidence=missing,
                actions=[
                    xid_action(codes[0]),
                    "reset the GPU or reboot the node; repeated firmware hangs on one GPU → RMA",
                ],
                details={
                    "xid": codes[0],
                    "xids": codes,
                    "pci_bus_id": pci_v,
                    "gpu_index": ctx.gpu_index,
                    "host": host_v,
                    "rank": ctx.rank,
                    "first_ts_ns": start,
                    "count": total_count(rows),
                    "gsp_lines": total_count(related),
                    "recovery_action": actions_154[-1] if actions_154 else None,
                    "action_class": "RESET_GPU",
                    "cause_chain": [f"Xid {c}" for c in codes] + [f"Xid 154: {a}" for a in actions_154],
                },
            )
        )
    return verdicts


DETECTOR = Detector(
    id="gpu-firmware-hang",
    summary="GPU firmware/driver timeout (Xid 61/62/109/119/120/143/158): the GPU is wedged, its rank silent",
    sources=("kernel_log", "dcgm"),
    tables=("kernel_events", "gpu_metrics", "identity"),
    detect=detect,
    scope=__name__,
)
