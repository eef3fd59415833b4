"""Detector ``gpu-memory-ecc``: uncorrectable GPU memory errors, contained (94) vs uncontained (95)."""

from __future__ import annotations

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
    pid_rank,
    recovery_actions,
    same_gpu,
    total_count,
    window,
    xid_action,
)

ECC_XIDS = (48, 92, 94, 95, 140)
DBE_FIELDS = ["DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL"]


def detect(tables: Tables) -> list[Verdict]:
    """What it detects:
    Uncorrectable GPU memory (ECC) errors and how far they reach: a contained error (Xid 94)
    kills only the process that touched the memory; an uncontained one (Xid 95, Xid 140) takes
    every process on the GPU down and needs a GPU reset; a double-bit error (Xid 48) is a
    hardware memory fault.

    Signals:
    kernel_events Xid 48, 94, 95, 140 (and 92, excessive single-bit errors) with the process
    they name and the ``RST``/``D-RST`` flags; DCGM double-bit ECC counter deltas
    (DCGM_FI_DEV_ECC_DBE_VOL_TOTAL / _AGG_TOTAL) on the same GPU.

    Rule:
    One verdict per GPU. 95 or 140 → uncontained: critical, reset the GPU, every rank on the GPU
    affected. 48 → critical, reset the GPU, RMA when it recurs. 94 alone → contained: error,
    restart the job, the named process (pid → rank) is the one that died. 92 alone → warning.
    Kernel and DCGM DBE delta on the same GPU → confidence full; a DCGM DBE delta alone → a
    partial verdict of severity error.

    Known false positives:
    Xid 94/95 lines repeat for every channel of every process (floods are collapsed into one
    row with a count); a DBE counter that only the aggregate field shows may predate the capture.
    """
    verdicts: list[Verdict] = []
    rows_all = kernel_rows(tables, ["xid"], ECC_XIDS)
    deltas = dcgm_deltas(tables, DBE_FIELDS)
    covered: set[tuple[str | None, str | None]] = set()
    for (host, pci), rows in group_by_gpu(rows_all).items():
        rows.sort(key=order_key)
        host_v, pci_v = host or None, pci or None
        codes = sorted({int(r["xid"]) for r in rows})
        ctx = gpu_context(tables, host_v, pci_v)
        dcgm_rows = same_gpu(deltas, host_v, pci_v, ctx.gpu_index)
        pids = sorted({int(r["pid"]) for r in rows if r.get("pid") is not None})
        if 95 in codes or 140 in codes:
            containment, severity, code = "uncontained", Severity.CRITICAL, 95 if 95 in codes else 140
            actions = [xid_action(code), "every process on this GPU was affected: reset the GPU before reuse"]
        elif 48 in codes:
            containment, severity, code = "double-bit", Severity.CRITICAL, 48
            actions = [
                xid_action(48),
                "reset the GPU; a recurring double-bit error on the same GPU means RMA",
            ]
        elif 94 in codes:
            containment, severity, code = "contained", Severity.ERROR, 94
            actions = [
                xid_action(94),
                "only the process that touched the bad memory died: restart the job; a GPU reset is advised to retire the page",
            ]
        else:
            containment, severity, code = "single-bit rate", Severity.WARNING, 92
            actions = [xid_action(92)]
        victim_ranks = sorted({r for r in (pid_rank(tables, host_v, p) for p in pids) if r is not None})
        culprit_ranks = [ctx.rank] if ctx.rank is not None else victim_ranks
        affected = ranks_on_host(tables, host_v) if containment == "uncontained" else victim_ranks
        start, end = window(rows)
        missing = list(ctx.missing)
        ev = [evidence(r) for r in rows[:4]]
        confidence = corroborate(dcgm_rows, ev, missing, "no DCGM double-bit ECC counter delta for this GPU")
        covered.add((host_v, pci_v))
        verdicts.append(
            Verdict(
                pattern="gpu-memory-ecc",
                title=f"{containment.capitalize()} GPU memory error on {pci_v or '?'} ({host_v or '?'}), Xid {', '.join(map(str, codes))}",
                severity=severity,
                key=gpu_key(host, pci),
                confidence=confidence,
                culprit=Culprit(
                    ranks=culprit_ranks, hosts=[host_v] if host_v else [], gpus=[ctx.gpu], pids=pids
                ),
                affected=Affected(ranks=affected, hosts=[host_v] if host_v else []),
                window_start_ns=start,
                window_end_ns=end,
                evidence=ev,
                missing_evidence=missing,
                actions=actions,
                details={
                    "xid": code,
                    "xids": codes,
                    "containment": containment,
                    "pci_bus_id": pci_v,
                    "gpu_index": ctx.gpu_index,
                    "host": host_v,
                    "rank": ctx.rank,
                    "pids": pids,
                    "victim_ranks": victim_ranks,
                    "first_ts_ns": start,
                    "count": total_count(rows),
                    "reset_required": any(r["attrs"].get("reset_required") == "Yes" for r in rows),
                    "action_class": "RESET_GPU" if severity == Severity.CRITICAL else "RESTART_APP",
                    "recovery_action": next(iter(reversed(recovery_actions(tables, host_v, pci_v))), None),
                    "cause_chain": [f"Xid {c}" for c in codes],
                    "cascade_xid45": cascades(tables, host_v, codes),
                },
            )
        )
    for row in deltas.iter_rows(named=True):
        key = (row.get("host"), row.get("pci_bus_id"))
        if key in covered:
            continue
        covered.add(key)
        ctx = gpu_context(tables, row.get("host"), row.get("pci_bus_id"))
        verdicts.append(
            Verdict(
                pattern="gpu-memory-ecc",
                title=f"DCGM counts {row['delta']:g} new double-bit ECC errors on GPU {row.get('pci_bus_id') or row.get('gpu_index')} ({row.get('host') or '?'})",
                severity=Severity.ERROR,
                key=gpu_key(row.get("host") or "", row.get("pci_bus_id") or f"index{row.get('gpu_index')}"),
                confidence=Confidence.PARTIAL,
                culprit=ctx.culprit(),
                window_start_ns=row.get("first_ts_ns"),
                window_end_ns=row.get("last_ts_ns"),
                evidence=[
                    dcgm_evidence(row, f"{row['field']} {row['first_value']:g} → {row['last_value']:g}")
                ],
                missing_evidence=[*ctx.missing, "no kernel Xid 48/94/95 line for this GPU"],
                actions=["reset the GPU; a recurring double-bit error on the same GPU means RMA"],
                details={
                    "xid": None,
                    "containment": "unknown",
                    "pci_bus_id": row.get("pci_bus_id"),
                    "gpu_index": row.get("gpu_index"),
                    "host": row.get("host"),
                    "rank": ctx.rank,
                    "first_ts_ns": row.get("first_ts_ns"),
                    "count": int(row["delta"]),
                    "action_class": "RESET_GPU",
                    "dcgm_only": True,
                },
            )
        )
    return verdicts


DETECTOR = Detector(
    id="gpu-memory-ecc",
    summary="Uncorrectable GPU memory errors: contained (Xid 94) vs uncontained (Xid 95/140), double-bit (Xid 48)",
    sources=("kernel_log", "dcgm"),
    tables=("kernel_events", "gpu_metrics", "identity"),
    detect=detect,
    scope=__name__,
)
