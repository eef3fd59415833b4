"""Detector ``gpu-app-fault``: application GPU faults (Xid 13 / 31 / 43) vs a suspect GPU."""

from __future__ import annotations

from ..report import Confidence, Culprit, Severity, Verdict
from ..tables import Tables
from .base import Detector
from .kernel_common import (
    evidence,
    gpu_context,
    gpu_key,
    group_by_gpu,
    kernel_rows,
    order_key,
    pid_rank,
    total_count,
    window,
    xid_action,
)

APP_XIDS = (13, 31, 43)


def detect(tables: Tables) -> list[Verdict]:
    """What it detects:
    A GPU exception raised by the running program (illegal address or instruction, MMU page
    fault, channel stopped), and whether it points at the application or at the GPU.

    Signals:
    kernel_events Xid 13 (graphics/SM exception, with GPC/TPC/SM), Xid 31 (MMU fault) and Xid 43
    (GPU stopped processing for a process), with the pid and process name they carry.

    Rule:
    One verdict per GPU. Faults from one process (or without pids) → application fault:
    severity error, action "fix the application / check CUDA", culprit the process's rank
    (pid → identity, else the GPU's rank). The same GPU faulting for two or more different
    processes, or Xid 13 repeating at the same GPC/TPC, → hardware suspect: severity error,
    action run field diagnostics. Xid 43 alone → warning: the rank using that GPU stopped
    (details.stalled_rank for correlation with a hang). Always partial (one source).

    Known false positives:
    Several ranks of one buggy program sharing a GPU (MPS) look like different processes;
    debuggers and sanitizers can provoke Xid 13 deliberately.
    """
    verdicts: list[Verdict] = []
    for (host, pci), rows in group_by_gpu(kernel_rows(tables, ["xid"], APP_XIDS)).items():
        rows.sort(key=order_key)
        host_v, pci_v = host or None, pci or None
        codes = sorted({int(r["xid"]) for r in rows})
        ctx = gpu_context(tables, host_v, pci_v)
        pids = sorted({int(r["pid"]) for r in rows if r.get("pid") is not None})
        comms = sorted({str(r["comm"]) for r in rows if r.get("comm")})
        locations = [r["attrs"].get("gpc_tpc_sm") for r in rows if r["attrs"].get("gpc_tpc_sm")]
        repeated_location = len(locations) != len(set(locations))
        ranks = sorted(
            {
                r
                for r in (
                    pid_rank(tables, host_v, p, row.get("rank"))
                    for row in rows
                    for p in ([row["pid"]] if row.get("pid") is not None else [])
                )
                if r is not None
            }
        )
        hardware = len(pids) >= 2 or repeated_location
        only_43 = codes == [43]
        if hardware:
            severity, cls = Severity.ERROR, "hardware suspect"
            actions = [
                "the same GPU faults for different processes (or at the same GPC/TPC): run DCGM diagnostics / field diag on it",
                xid_action(codes[0]),
            ]
        elif only_43:
            severity, cls = Severity.WARNING, "stopped channel"
            actions = [
                xid_action(43),
                "find the fault before it (Xid 13/31) or the rank that stopped advancing",
            ]
        else:
            severity, cls = Severity.ERROR, "application"
            actions = [
                xid_action(codes[0]),
                "fix the application (illegal memory access / bad kernel); check CUDA and driver versions",
            ]
        culprit_ranks = ranks or ([ctx.rank] if ctx.rank is not None else [])
        missing = list(ctx.missing)
        if pids and not ranks:
            missing.append(f"process ids {pids} are not mapped to ranks")
        start, end = window(rows)
        verdicts.append(
            Verdict(
                pattern="gpu-app-fault",
                title=f"GPU fault on {pci_v or '?'} ({host_v or '?'}), Xid {', '.join(map(str, codes))}: {cls}",
                severity=severity,
                key=gpu_key(host, pci),
                confidence=Confidence.PARTIAL,
                culprit=Culprit(
                    ranks=culprit_ranks, hosts=[host_v] if host_v else [], gpus=[ctx.gpu], pids=pids
                ),
                window_start_ns=start,
                window_end_ns=end,
                evidence=[evidence(r) for r in rows[:4]],
                missing_evidence=missing,
                actions=actions,
                details={
                    "xid": codes[0],
                    "xids": codes,
                    "classification": cls,
                    "pci_bus_id": pci_v,
                    "gpu_index": ctx.gpu_index,
                    "host": host_v,
                    "rank": culprit_ranks[0] if len(culprit_ranks) == 1 else None,
                    "pids": pids,
                    "comms": comms,
                    "distinct_processes": len(pids),
                    "repeated_location": repeated_location,
                    "stalled_rank": (culprit_ranks[0] if culprit_ranks else None) if 43 in codes else None,
                    "first_ts_ns": start,
                    "count": total_count(rows),
                    "action_class": "CONTACT_SUPPORT" if hardware else "RESTART_APP",
                },
            )
        )
    return verdicts


DETECTOR = Detector(
    id="gpu-app-fault",
    summary="Application GPU faults (Xid 13/31/43), escalated to a hardware suspect when one GPU faults across processes",
    sources=("kernel_log",),
    tables=("kernel_events", "identity"),
    detect=detect,
    scope=__name__,
)
