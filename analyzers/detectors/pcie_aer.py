"""Detector ``pcie-aer``: PCIe AER errors and link events (fatal → device loss, corrected storm → degraded link)."""

from __future__ import annotations

from typing import Any

import polars as pl

from ..report import Confidence, Culprit, Severity, Verdict
from ..tables import Tables
from .base import Detector
from .kernel_common import (
    GpuContext,
    corroborate,
    dcgm_deltas,
    dcgm_evidence,
    evidence,
    gpu_context,
    kernel_rows,
    order_key,
    same_gpu,
    total_count,
    window,
)

# Corrected errors above this many per minute (and at least STORM_MIN_EVENTS) are a storm.
STORM_PER_MINUTE = 10.0
STORM_MIN_EVENTS = 10
# Without usable times, this many corrected events in one capture count as a storm.
STORM_UNTIMED_EVENTS = 100
REPLAY_FIELDS = ["DCGM_FI_DEV_PCIE_REPLAY_COUNTER"]
REPLAY_STORM = 100.0


def detect(tables: Tables) -> list[Verdict]:
    """What it detects:
    PCIe errors on the path to a GPU or NIC: an uncorrectable (fatal) error that takes the
    device off the bus, non-fatal uncorrectable errors, and storms of corrected errors that mark
    a marginal link (retries slow the device down and often precede its loss).

    Signals:
    kernel_events kind ``aer`` (attrs aer_severity, aer_type, aer_error, aer_event, reporter =
    the port that logged it, pci_bus_id = the device named as source), kind ``pcie_link``
    (pciehp Link Down / Card not present, bandwidth "limited by"); DCGM PCIe replay counter
    deltas (DCGM_FI_DEV_PCIE_REPLAY_COUNTER).

    Rule:
    Grouped per (host, reporting port). Fatal (Uncorrected Fatal, Surprise Down, device recovery
    failed) → critical "device loss"; non-fatal uncorrectable → error; pciehp link down / card
    not present → error. Corrected errors: at least 10 events and more than 10 per minute (or
    100 events when times are unknown) → warning "degraded link"; fewer → nothing (single
    corrected errors are normal). A downtrained link ("limited by") is reported (warning) only
    when the device is a GPU the identity table knows. DCGM replay delta ≥ 100 on the same GPU
    corroborates (full); alone it gives a partial warning.

    Known false positives:
    Corrected errors from ASPM power-state transitions on idle consumer ports; bandwidth
    "limited by" lines for devices deliberately placed behind narrower switches.
    """
    verdicts: list[Verdict] = []
    rows_all = kernel_rows(tables, ["aer", "pcie_link"])
    replay = dcgm_deltas(tables, REPLAY_FIELDS)
    if replay.height:
        replay = replay.filter(replay["delta"] >= REPLAY_STORM)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    # A port's "error received: <device>" names the device its following detail lines are about.
    source_of = {
        (r.get("host"), r["attrs"].get("reporter")): r.get("pci_bus_id")
        for r in rows_all
        if r["attrs"].get("aer_event") == "received" and r.get("pci_bus_id") != r["attrs"].get("reporter")
    }
    for row in rows_all:
        # One group per device: the port's "error received" line and the device's detail lines.
        reporter = row["attrs"].get("reporter")
        device_key = row.get("pci_bus_id") or reporter or ""
        if device_key == reporter:
            device_key = source_of.get((row.get("host"), reporter)) or device_key
        groups.setdefault((str(row.get("host") or ""), str(device_key)), []).append(row)
    covered: set[tuple[str | None, str | None]] = set()
    for (host, device_key), rows in sorted(groups.items()):
        rows.sort(key=order_key)
        reporters = [
            str(r["attrs"]["reporter"]) for r in rows if r["attrs"].get("reporter") not in (None, device_key)
        ]
        host_v, port_v = host or None, (reporters[0] if reporters else device_key) or None
        fatal = [
            r
            for r in rows
            if r["attrs"].get("aer_severity") == "fatal" or r["attrs"].get("aer_event") == "recovery_failed"
        ]
        nonfatal = [r for r in rows if r["attrs"].get("aer_severity") == "nonfatal"]
        link_down = [r for r in rows if r["attrs"].get("pcie_state") == "down"]
        degraded = [r for r in rows if r["attrs"].get("pcie_state") == "degraded"]
        corrected = [r for r in rows if r["attrs"].get("aer_severity") == "corrected"]
        # The device behind the port: a "received from <BDF>" source, or the driver that had no AER callback.
        devices = sorted(
            {str(r["pci_bus_id"]) for r in rows if r.get("pci_bus_id") and r.get("pci_bus_id") != port_v}
            | {
                str(r["pci_bus_id"])
                for r in kernel_rows(tables, ["aer"])
                if r["attrs"].get("aer_event") == "no_aer_driver"
                and r.get("host") == host_v
                and _near(r, rows)
            }
        )
        device = devices[0] if devices else port_v
        ctx = gpu_context(tables, host_v, device)
        if fatal or nonfatal or link_down:
            picked = fatal or nonfatal or link_down
            severity = Severity.CRITICAL if fatal else Severity.ERROR
            what = (
                "fatal PCIe error: device loss"
                if fatal
                else ("uncorrectable PCIe error" if nonfatal else "PCIe link down")
            )
            actions = (
                [
                    "the device behind this port is lost: drain the node, reseat/replace the GPU or riser, check the slot"
                ]
                if fatal
                else ["inspect the PCIe link (reseat, check riser/cable); watch for a following device loss"]
            )
            verdicts.append(
                _verdict(
                    tables,
                    host_v,
                    port_v,
                    device,
                    ctx,
                    rows,
                    picked,
                    severity,
                    what,
                    actions,
                    replay,
                    covered,
                )
            )
            continue
        events = _corrected_events(corrected)
        start, end = window(corrected)
        minutes = ((end - start) / 60e9) if start is not None and end is not None and end > start else None
        storm = events >= STORM_MIN_EVENTS and (
            (minutes is not None and events / max(minutes, 1.0) > STORM_PER_MINUTE)
            or (minutes is None and events >= STORM_UNTIMED_EVENTS)
        )
        if storm:
            verdicts.append(
                _verdict(
                    tables,
                    host_v,
                    port_v,
                    device,
                    ctx,
                    rows,
                    corrected,
                    Severity.WARNING,
                    f"corrected PCIe error storm ({events} events): degraded link",
                    ["degraded PCIe link: expect the device to straggle; reseat/replace before it fails"],
                    replay,
                    covered,
                    extra={"corrected_events": events, "minutes": minutes},
                )
            )
        elif degraded and ctx.identity is not None:
            verdicts.append(
                _verdict(
                    tables,
                    host_v,
                    port_v,
                    device,
                    ctx,
                    rows,
                    degraded,
                    Severity.WARNING,
                    "PCIe link trained below its capability (bandwidth limited)",
                    [
                        "reseat the GPU / check the riser: a downtrained link makes this rank a bandwidth straggler"
                    ],
                    replay,
                    covered,
                )
            )
    for row in replay.iter_rows(named=True):
        key = (row.get("host"), row.get("pci_bus_id"))
        if key in covered:
            continue
        ctx = gpu_context(tables, row.get("host"), row.get("pci_bus_id"))
        verdicts.append(
            Verdict(
                pattern="pcie-aer",
                title=f"PCIe replays on GPU {row.get('pci_bus_id') or row.get('gpu_index')} ({row.get('host') or '?'}): degraded link",
                severity=Severity.WARNING,
                key=f"host={row.get('host') or '?'} port={row.get('pci_bus_id') or row.get('gpu_index')}",
                confidence=Confidence.PARTIAL,
                culprit=ctx.culprit(),
                window_start_ns=row.get("first_ts_ns"),
                window_end_ns=row.get("last_ts_ns"),
                evidence=[dcgm_evidence(row, f"{row['field']} rose by {row['delta']:g}")],
                missing_evidence=[*ctx.missing, "no kernel AER lines for this GPU"],
                actions=["degraded PCIe link: reseat/replace; expect this rank to straggle"],
                details={
                    "xid": None,
                    "pci_bus_id": row.get("pci_bus_id"),
                    "gpu_index": row.get("gpu_index"),
                    "host": row.get("host"),
                    "rank": ctx.rank,
                    "first_ts_ns": row.get("first_ts_ns"),
                    "count": int(row["delta"]),
                    "dcgm_only": True,
                    "action_class": "DEGRADED_LINK",
                },
            )
        )
    return verdicts


def _near(row: dict[str, Any], rows: list[dict[str, Any]]) -> bool:
    """True when ``row`` sits within a few lines (same file) of one of ``rows``."""
    return any(
        r.get("source_file") == row.get("source_file")
        and abs(int(r["source_line"]) - int(row["source_line"])) <= 8
        for r in rows
    )


def _corrected_events(rows: list[dict[str, Any]]) -> int:
    """Error events, counted on the header lines (each event prints several detail lines)."""
    received = total_count([r for r in rows if r["attrs"].get("aer_event") == "received"])
    bus = total_count([r for r in rows if r["attrs"].get("aer_event") == "bus_error"])
    return max(received, bus)


def _verdict(
    tables: Tables,
    host: str | None,
    port: str | None,
    device: str | None,
    ctx: GpuContext,
    rows: list[dict[str, Any]],
    picked: list[dict[str, Any]],
    severity: Severity,
    what: str,
    actions: list[str],
    replay: pl.DataFrame,
    covered: set[tuple[str | None, str | None]],
    extra: dict[str, Any] | None = None,
) -> Verdict:
    start, end = window(picked)
    missing = list(ctx.missing)
    ev = [evidence(r) for r in picked[:4]]
    dcgm = same_gpu(replay, host, device, ctx.gpu_index)
    confidence = corroborate(dcgm, ev, missing, None)
    if confidence is Confidence.FULL:
        covered.add((host, device))
    details = {
        "xid": None,
        "pci_bus_id": device,
        "root_port": port,
        "gpu_index": ctx.gpu_index,
        "host": host,
        "rank": ctx.rank,
        "first_ts_ns": start,
        "count": total_count(picked),
        "aer_errors": sorted({r["attrs"]["aer_error"] for r in rows if r["attrs"].get("aer_error")}),
        "aer_types": sorted({r["attrs"]["aer_type"] for r in rows if r["attrs"].get("aer_type")}),
        "action_class": "DEVICE_LOSS" if severity == Severity.CRITICAL else "DEGRADED_LINK",
    }
    details.update(extra or {})
    return Verdict(
        pattern="pcie-aer",
        title=f"{what} at {port or '?'} on {host or '?'}"
        + (f" (device {device})" if device and device != port else ""),
        severity=severity,
        key=f"host={host or '?'} port={port or '?'} device={device or '?'}",
        confidence=confidence,
        culprit=Culprit(
            ranks=[ctx.rank] if ctx.rank is not None else [],
            hosts=[host] if host else [],
            gpus=[ctx.gpu] if ctx.identity is not None else [],
            links=[f"pcie {port}"] if port else [],
        ),
        window_start_ns=start,
        window_end_ns=end,
        evidence=ev,
        missing_evidence=missing,
        actions=actions,
        details=details,
    )


DETECTOR = Detector(
    id="pcie-aer",
    summary="PCIe AER: fatal errors (device loss), corrected-error storms and downtrained links (degraded)",
    sources=("kernel_log", "dcgm"),
    tables=("kernel_events", "gpu_metrics", "identity"),
    detect=detect,
    scope=__name__,
)
