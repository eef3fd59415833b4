"""Detector ``gpu-throttle``: a GPU slowed by thermal, power or hardware limits (pattern P07)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from .. import dcgm_fields
from ..dcgm_signals import (
    GPU_KEY,
    SIGNAL_COLUMNS,
    composite_key,
    counter_deltas,
    gpu_rows,
    gpu_rows_file_order,
    gpus,
    rank_for_gpu,
    with_label,
)
from ..report import Affected, Culprit, Evidence, GpuRef, Severity, Verdict, excerpt
from ..tables import Tables
from .base import Detector

REASONS_FIELD = "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"
SM_CLOCK_FIELD = "DCGM_FI_DEV_SM_CLOCK"
EVENTS_COUNT_FIELD = "DCGM_EXP_CLOCK_EVENTS_COUNT"
UTIL_FIELD = "DCGM_FI_DEV_GPU_UTIL"
# Violation counters that measure time spent slowed for a power, thermal or hardware reason
# (sync-boost and low-utilisation violations are normal operation).
VIOLATION_FIELDS = (
    "DCGM_FI_DEV_POWER_VIOLATION",
    "DCGM_FI_DEV_THERMAL_VIOLATION",
    "DCGM_FI_DEV_BOARD_LIMIT_VIOLATION",
    "DCGM_FI_DEV_RELIABILITY_VIOLATION",
)
SLOWDOWN_MASK = sum(dcgm_fields.SLOWDOWN_BITS.values())
HARDWARE_REASONS = frozenset({"HW_SLOWDOWN", "HW_THERMAL", "HW_POWER_BRAKE"})
# dcgm-exporter's clock_event label values that are slowdowns.
SLOWDOWN_EVENTS = {name.lower(): name for name in dcgm_fields.SLOWDOWN_BITS}

MIN_SHARE = 0.2  # share of a GPU's samples that must show the slowdown (P07)
CLOCK_GAP = 0.1  # SM clock at least 10% below the host median
IDLE_UTIL = 5.0  # readings of an idle GPU (util ≤ 5%) say nothing about clocks


@dataclass
class _Finding:
    """What the signals say about one GPU."""

    key: tuple[Any, ...]
    reasons: set[str] = field(default_factory=set)
    reason_share: float | None = None
    reason_samples: int = 0
    violations: dict[str, float] = field(default_factory=dict)
    events: dict[str, float] = field(default_factory=dict)
    clock_share: float | None = None
    clock_mhz: float | None = None
    clock_median_mhz: float | None = None
    first_ts: int | None = None
    last_ts: int | None = None
    evidence: list[Evidence] = field(default_factory=list)
    signals: list[str] = field(default_factory=list)

    def widen(self, start: int | None, end: int | None) -> None:
        """Extend the slowdown window to cover ``start``..``end`` (unknown times change nothing)."""
        if start is not None:
            self.first_ts = start if self.first_ts is None else min(self.first_ts, start)
        if end is not None:
            self.last_ts = end if self.last_ts is None else max(self.last_ts, end)


def detect(tables: Tables) -> list[Verdict]:
    """Name GPUs whose clocks were held down by power, thermal or hardware slowdown.

    What it detects:
        A GPU that runs slower than its peers because the driver lowered its clocks: hardware
        slowdown, power brake, thermal slowdown (hardware or software) or the software power cap.
        In a data-parallel job that GPU's rank becomes the straggler everyone waits for.

    Signals:
        ``gpu_metrics`` (DCGM): the clock-event (throttle) reasons bitmask, field 112
        (``DCGM_FI_DEV_CLOCK_THROTTLE_REASONS`` / ``CLOCKS_EVENT_REASONS``), every documented bit
        decoded (GPU_IDLE 0x1, CLOCKS_SETTING 0x2, SW_POWER_CAP 0x4, HW_SLOWDOWN 0x8, SYNC_BOOST
        0x10, SW_THERMAL 0x20, HW_THERMAL 0x40, HW_POWER_BRAKE 0x80, DISPLAY_CLOCKS 0x100); the
        power / thermal / board-limit / reliability violation counters (fields 240, 241, 243, 245);
        dcgm-exporter's ``DCGM_EXP_CLOCK_EVENTS_COUNT`` per ``clock_event``; the SM clock (field
        100) against the host median, with utilisation (field 203) or the GPU_IDLE bit to leave
        idle readings out. ``identity`` maps the GPU to its rank.

    Rule:
        A GPU is throttled when any of: slowdown bits (SW_POWER_CAP, HW_SLOWDOWN, SW_THERMAL,
        HW_THERMAL, HW_POWER_BRAKE) are set in at least 20% of its reason samples; a violation
        counter rises over the capture; the exporter's clock-event count for a slowdown event is
        above zero; or its SM clock sits at least 10% below the median of its host's GPUs in at
        least 20% of the busy readings while the median GPU is not slowed. One verdict per GPU,
        or one per host when more than half of a host's GPUs are throttled (cooling or power of
        the node). Severity error for hardware reasons (HW_SLOWDOWN, HW_THERMAL, HW_POWER_BRAKE),
        warning otherwise. Confidence is partial (DCGM alone). The rank comes from the identity
        table (PCI address, UUID, else host + GPU index as a stated assumption); without a
        mapping the verdict says so in missing_evidence. When the export lacks all of these
        fields (dcgm-exporter's default counters omit reasons and violation counters) there is
        no verdict: missing fields are not evidence of health, and docs/dcgm.md says so.

    Known false positives:
        SW_POWER_CAP on a GPU running at its power limit is normal under heavy load; it is a
        warning only and matters when peers are not capped. A GPU that idles without the GPU_IDLE
        bit or a utilisation reading can show a low SM clock. Violation counters count since the
        driver loaded, so a rise inside a short capture is real but may be small (see details).
    """
    findings: dict[tuple[Any, ...], _Finding] = {}

    def finding(key: tuple[Any, ...]) -> _Finding:
        return findings.setdefault(key, _Finding(key))

    _reason_bits(tables, finding)
    _violations(tables, finding)
    _event_counts(tables, finding)
    _low_clocks(tables, finding)
    if not findings:
        return []
    return _verdicts(tables, findings)


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row.get(k) for k in GPU_KEY)


def _row_evidence(row: dict[str, Any], text: str) -> Evidence:
    line = row.get("source_line")
    return Evidence(
        "dcgm", str(row.get("source_file") or ""), int(line) if line is not None else None, excerpt(text)
    )


def _gpu_name(key: tuple[Any, ...]) -> str:
    host, index, pci, uuid = key
    parts = [f"GPU {index}" if index is not None else "GPU"]
    if pci:
        parts.append(f"({pci})")
    elif uuid:
        parts.append(f"({uuid})")
    if host:
        parts.append(f"on {host}")
    return " ".join(parts)


def _reason_bits(tables: Tables, finding: Any) -> None:
    rows = gpu_rows(tables, [REASONS_FIELD], SIGNAL_COLUMNS)
    if rows.height == 0:
        return
    rows = rows.with_columns(pl.col("value").cast(pl.Int64).alias("mask"))
    rows = rows.with_columns((pl.col("mask") & SLOWDOWN_MASK).alias("slow"))
    per_gpu = rows.group_by(composite_key(rows, GPU_KEY).alias("_gpu"), maintain_order=True).agg(
        *[pl.col(k).first() for k in GPU_KEY],
        pl.len().alias("samples"),
        (pl.col("slow") != 0).sum().alias("slow_samples"),
        pl.col("mask").filter(pl.col("slow") != 0).unique().sort().alias("masks"),
        pl.col("ts_ns").filter(pl.col("slow") != 0).min().alias("first_ts"),
        pl.col("ts_ns").filter(pl.col("slow") != 0).max().alias("last_ts"),
        pl.struct("source_file", "source_line", "value", "metric")
        .filter(pl.col("slow") != 0)
        .first()
        .alias("first_row"),
    )
    for row in per_gpu.filter(pl.col("slow_samples") > 0).iter_rows(named=True):
        share = row["slow_samples"] / row["samples"]
        if share < MIN_SHARE:
            continue
        item = finding(_key(row))
        names: set[str] = set()
        for mask in row["masks"]:
            names.update(dcgm_fields.decode_clock_events(int(mask)))
        item.reasons |= names
        item.reason_share = share
        item.reason_samples = row["samples"]
        item.widen(row["first_ts"], row["last_ts"])
        first = row["first_row"]
        decoded = "|".join(dcgm_fields.decode_clock_events(int(first["value"])))
        item.evidence.append(
            _row_evidence(
                first, f"{first['metric']} = {int(first['value'])} (0x{int(first['value']):x}: {decoded})"
            )
        )
        item.signals.append("clock-event reasons")


def _violations(tables: Tables, finding: Any) -> None:
    deltas = counter_deltas(tables, list(VIOLATION_FIELDS)).filter(pl.col("delta") > 0)
    for row in deltas.iter_rows(named=True):
        item = finding(_key(row))
        item.violations[row["field"]] = row["delta"]
        span = None
        if row["first_ts_ns"] is not None and row["last_ts_ns"] is not None:
            span = row["last_ts_ns"] - row["first_ts_ns"]
            item.widen(row["first_ts_ns"], row["last_ts_ns"])
        share = f" ({row['delta'] / (span / 1000) * 100:.0f}% of {span / 1e9:.0f} s)" if span else ""
        item.evidence.append(
            _row_evidence(
                row,
                f"{row['field']} rose by {row['delta']:.0f} us{share}: {row['first_value']:.0f} -> {row['last_value']:.0f}",
            )
        )
        if "violation counters" not in item.signals:
            item.signals.append("violation counters")


def _event_counts(tables: Tables, finding: Any) -> None:
    rows = gpu_rows(tables, [EVENTS_COUNT_FIELD], [*SIGNAL_COLUMNS, "labels_id"])
    if rows.height == 0:
        return
    rows = with_label(tables, rows, "event", ("clock_event",))
    rows = rows.with_columns(pl.col("event").str.to_lowercase()).filter(
        pl.col("event").is_in(list(SLOWDOWN_EVENTS)) & (pl.col("value") > 0)
    )
    for row in rows.iter_rows(named=True):
        item = finding(_key(row))
        name = SLOWDOWN_EVENTS[row["event"]]
        item.reasons.add(name)
        item.events[name] = max(item.events.get(name, 0.0), row["value"])
        item.widen(row["ts_ns"], row["ts_ns"])
        item.evidence.append(
            _row_evidence(row, f"{row['metric']}{{clock_event={row['event']}}} = {row['value']:g}")
        )
        if "exporter clock-event count" not in item.signals:
            item.signals.append("exporter clock-event count")


def _low_clocks(tables: Tables, finding: Any) -> None:
    columns = [*GPU_KEY, "field", "value", "ts_ns", "scrape", "source_file", "source_line"]
    rows = gpu_rows_file_order(tables, [SM_CLOCK_FIELD, UTIL_FIELD, REASONS_FIELD], columns)
    if rows.get_column("host").null_count():
        rows = rows.filter(pl.col("host").is_not_null())
    if rows.height == 0 or not rows.get_column("field").eq(SM_CLOCK_FIELD).any():
        return
    # One small table of GPUs; the millions of readings carry only its row number.
    rows = rows.with_columns(composite_key(rows, GPU_KEY).alias("_key"))
    gpu_table = (
        rows.group_by("_key", maintain_order=True)
        .agg(*[pl.col(k).first() for k in GPU_KEY])
        .with_row_index("_gpu")
    )
    gpu_of = pl.col("_key").replace_strict(gpu_table.get_column("_key"), gpu_table.get_column("_gpu"))
    host_of = pl.col("_gpu").replace_strict(
        gpu_table.get_column("_gpu"), gpu_table.get_column("host").to_physical()
    )
    readings = rows.select(
        gpu_of.alias("_gpu"),
        pl.coalesce(pl.col("ts_ns"), pl.col("scrape").cast(pl.Int64)).alias("tick"),
        "ts_ns",
        "field",
        "value",
    )
    wide = _clock_table(readings)
    idle = (pl.col(UTIL_FIELD) <= IDLE_UTIL) | ((pl.col(REASONS_FIELD).cast(pl.Int64) & 0x1) != 0)
    busy = wide.filter(~idle.fill_null(False)).with_columns(host_of.alias("_host"))
    # Median SM clock of the host's busy GPUs at each tick (one integer key for host and tick).
    busy = busy.with_columns(composite_key(busy, ["_host", "tick"]).alias("_host_at"))
    per_tick = (
        busy.group_by("_host_at")
        .agg(pl.col(SM_CLOCK_FIELD).median().alias("median"), pl.len().alias("gpus"))
        .rename({"_host_at": "_at"})
        .sort("_at")
    )
    at = busy.get_column("_host_at")
    busy = busy.with_columns(_aligned(per_tick, at, "median", "gpus"))
    busy = busy.with_columns(
        ((pl.col(SM_CLOCK_FIELD) <= (1 - CLOCK_GAP) * pl.col("median")) & (pl.col("gpus") >= 2)).alias("low")
    )
    low = pl.col("low")
    per_gpu = busy.group_by("_gpu").agg(
        pl.len().alias("samples"),
        low.sum().alias("low_samples"),
        pl.col(SM_CLOCK_FIELD).filter(low).median().alias("clock"),
        pl.col("median").filter(low).median().alias("host_median"),
        pl.col("ts_ns").filter(low).min().alias("first_ts"),
        pl.col("ts_ns").filter(low).max().alias("last_ts"),
        # The first low reading in reading order: time (unknown first), then first appearance.
        pl.struct("_clock_pos", SM_CLOCK_FIELD, "median")
        .filter(low)
        .sort_by([pl.col("tick_ts").filter(low), pl.col("_first_pos").filter(low)], nulls_last=False)
        .first()
        .alias("row"),
    )
    per_gpu = per_gpu.filter(pl.col("low_samples") > 0)
    if per_gpu.height == 0:
        return
    # GPU columns and the cited readings' places, for the few rows cited.
    per_gpu = per_gpu.join(gpu_table.drop("_key"), on="_gpu", how="left").sort("_gpu")
    cited = per_gpu.get_column("row").struct.field("_clock_pos")
    where = rows.select("source_file", "source_line")[cited]
    per_gpu = per_gpu.with_columns(
        pl.struct(
            where.get_column("source_file"),
            where.get_column("source_line"),
            pl.col("row").struct.field(SM_CLOCK_FIELD),
            pl.col("row").struct.field("median"),
        ).alias("row")
    )
    for row in per_gpu.iter_rows(named=True):
        share = row["low_samples"] / row["samples"]
        if share < MIN_SHARE:
            continue
        item = finding(_key(row))
        item.clock_share = share
        item.clock_mhz, item.clock_median_mhz = row["clock"], row["host_median"]
        item.widen(row["first_ts"], row["last_ts"])
        first = row["row"]
        item.evidence.append(
            _row_evidence(
                first,
                f"SM clock {first[SM_CLOCK_FIELD]:.0f} MHz vs host median {first['median']:.0f} MHz "
                f"({share:.0%} of busy readings ≥10% below)",
            )
        )
        item.signals.append("SM clock below host median")


def _clock_table(readings: pl.DataFrame) -> pl.DataFrame:
    """Per GPU and tick with an SM clock reading: the last reading of each field (reading order).

    ``readings`` (``_gpu``, ``tick``, ``ts_ns``, ``field``, ``value``) are in reading order among
    rows of equal time. Columns: ``_gpu``, ``tick``, ``tick_ts`` (the tick when it is a time),
    ``ts_ns`` (of the clock reading), the SM clock, utilisation and reasons values,
    ``_clock_pos`` (row of ``readings`` holding the clock reading) and ``_first_pos`` (first row
    of that GPU and tick, any field). GPU and tick are one integer key; each field's first and
    last reading per key are runs (sorted only when the keys do not already rise) and the
    fields are aligned by binary search, not by group-bys or joins over millions of rows.
    """
    code = (
        pl.when(pl.col("field") == SM_CLOCK_FIELD)
        .then(pl.lit(0, pl.Int8))
        .when(pl.col("field") == UTIL_FIELD)
        .then(pl.lit(1, pl.Int8))
        .otherwise(pl.lit(2, pl.Int8))
    )
    keyed = readings.select("_gpu", "tick", "ts_ns", code.alias("_field"), "value").with_row_index("_pos")
    keyed = keyed.with_columns(composite_key(keyed, ["_gpu", "tick"]).alias("_at"))
    clock_first, clocks = _first_and_last(keyed.filter(pl.col("_field") == 0))
    clocks = clocks.select(
        "_gpu",
        "_at",
        "tick",
        "ts_ns",
        pl.col("value").alias(SM_CLOCK_FIELD),
        pl.col("_pos").alias("_clock_pos"),
    )
    at = clocks.get_column("_at")
    firsts = [clock_first.get_column("_pos")]
    columns = []
    for number, name in ((1, UTIL_FIELD), (2, REASONS_FIELD)):
        first, last = _first_and_last(keyed.filter(pl.col("_field") == number))
        columns.extend(_aligned(last.select("_at", pl.col("value").alias(name)), at, name))
        firsts.extend(_aligned(first.select("_at", "_pos"), at, "_pos"))
    first_pos = pl.select(pl.min_horizontal([pl.lit(f) for f in firsts]).alias("_first_pos")).to_series()
    # Times of a GPU's ticks are either all times or all scrape numbers (a GPU's tick with
    # ``ts_ns`` is a time); unknown times come first in reading order.
    return clocks.with_columns(*columns, first_pos).with_columns(pl.col("ts_ns").alias("tick_ts")).drop("_at")


def _first_and_last(rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The first and the last row (reading order) of each ``_at`` key, both sorted by ``_at``.

    Exports usually hold one reading per GPU, field and time, series after series: the keys
    already rise, and nothing is sorted. Otherwise the integer columns are sorted once (stable).
    """
    if rows.height == 0 or rows.select((pl.col("_at").diff() > 0).all()).item():
        return rows, rows
    rows = rows.sort("_at", maintain_order=True)
    first = rows.filter((pl.col("_at") != pl.col("_at").shift(1)).fill_null(True))
    last = rows.filter((pl.col("_at") != pl.col("_at").shift(-1)).fill_null(True))
    return first, last


def _aligned(side: pl.DataFrame, at: pl.Series, *columns: str) -> list[pl.Series]:
    """``side``'s ``columns`` at each key of ``at`` (null where absent); ``side._at`` is sorted and unique."""
    keys = side.get_column("_at")
    if keys.len() == at.len() and (keys == at).all():  # e.g. every field read at every tick
        return [side.get_column(c) for c in columns]
    if keys.len() == 0:
        return [
            pl.select(pl.repeat(None, at.len(), dtype=side.schema[c]).alias(c)).to_series() for c in columns
        ]
    position = keys.search_sorted(at).clip(upper_bound=keys.len() - 1)
    hit = pl.lit(keys.gather(position) == at)
    found = pl.select(
        [pl.when(hit).then(pl.lit(side.get_column(c).gather(position))).alias(c) for c in columns]
    )
    return found.get_columns()


# What a rising violation counter says, in the words of the actions below.
_VIOLATION_KIND = {
    "DCGM_FI_DEV_POWER_VIOLATION": "power",
    "DCGM_FI_DEV_BOARD_LIMIT_VIOLATION": "power",
    "DCGM_FI_DEV_THERMAL_VIOLATION": "thermal",
    "DCGM_FI_DEV_RELIABILITY_VIOLATION": "reliability",
}


def _what(item: _Finding) -> str:
    if item.reasons:
        return ", ".join(sorted(item.reasons))
    if item.violations:
        names = [f.removeprefix("DCGM_FI_DEV_") for f in sorted(item.violations)]
        return ", ".join(names) + " rising"
    return "low SM clock"


def _severity(reasons: set[str]) -> Severity:
    return Severity.ERROR if reasons & HARDWARE_REASONS else Severity.WARNING


def _actions(reasons: set[str], clock_only: bool, violations: dict[str, float] | None = None) -> list[str]:
    kinds = {_VIOLATION_KIND.get(f) for f in (violations or {})}
    if "power" in kinds:
        reasons = reasons | {"SW_POWER_CAP"}
    if "thermal" in kinds:
        reasons = reasons | {"SW_THERMAL"}
    actions: list[str] = []
    if reasons & {"HW_SLOWDOWN", "HW_POWER_BRAKE"}:
        actions.append(
            "Hardware slowdown / power brake: check the node's power supplies and run `dcgmi diag -r 3` on this GPU; drain it if it recurs"
        )
    if reasons & {"HW_THERMAL", "SW_THERMAL"}:
        actions.append(
            "Thermal slowdown: check fans, airflow and inlet temperature of this node (`nvidia-smi -q -d TEMPERATURE`)"
        )
    if "SW_POWER_CAP" in reasons:
        actions.append("Power cap: compare the power limit with its peers (`nvidia-smi -q -d POWER`)")
    if clock_only or not actions:
        actions.append(
            "Low SM clock: read the clock-event reasons (`nvidia-smi -q -d PERFORMANCE`) while the job runs"
        )
    return actions


def _details(item: _Finding) -> dict[str, Any]:
    host, index, pci, uuid = item.key
    return {
        "host": host,
        "gpu_index": index,
        "pci_bus_id": pci,
        "gpu_uuid": uuid,
        "reasons": sorted(item.reasons),
        "reason_share": item.reason_share,
        "reason_samples": item.reason_samples,
        "violation_delta_us": dict(sorted(item.violations.items())),
        "clock_event_counts": dict(sorted(item.events.items())),
        "clock_below_median_share": item.clock_share,
        "sm_clock_mhz": item.clock_mhz,
        "host_median_sm_clock_mhz": item.clock_median_mhz,
        "first_ts_ns": item.first_ts,
        "signals": item.signals,
    }


def _verdicts(tables: Tables, findings: dict[tuple[Any, ...], _Finding]) -> list[Verdict]:
    all_gpus = gpus(tables)
    gpus_per_host = dict(all_gpus.group_by("host").len().iter_rows())
    by_host: dict[Any, list[_Finding]] = {}
    for item in findings.values():
        by_host.setdefault(item.key[0], []).append(item)
    verdicts: list[Verdict] = []
    for host, items in sorted(by_host.items(), key=lambda kv: str(kv[0])):
        items.sort(key=lambda f: tuple("" if v is None else str(v) for v in f.key))
        total = gpus_per_host.get(host, len(items))
        if host is not None and total >= 2 and len(items) * 2 > total:
            verdicts.append(_host_verdict(tables, host, items, total))
        else:
            verdicts.extend(_gpu_verdict(tables, item) for item in items)
    return verdicts


def _mapping(tables: Tables, item: _Finding) -> tuple[GpuRef, int | None, dict[str, Any], list[str]]:
    host, index, pci, uuid = item.key
    mapping = rank_for_gpu(tables, host, index, pci, uuid)
    missing: list[str] = []
    info: dict[str, Any] = {
        "rank_mapped_by": mapping.matched_by,
        "rank_assumed": mapping.assumption is not None,
    }
    if mapping.assumption:
        info["rank_assumption"] = mapping.assumption
    rank = mapping.identity.rank if mapping.identity else None
    if rank is None:
        missing.append(
            f"no rank mapping for {_gpu_name(item.key)}: the identity table (manifest, NCCL init lines) does not name this GPU"
        )
    gpu = GpuRef(host=host, index=index, pci_bus_id=pci, uuid=uuid)
    return gpu, rank, info, missing


def _gpu_verdict(tables: Tables, item: _Finding) -> Verdict:
    host, index, pci, _uuid = item.key
    gpu, rank, info, missing = _mapping(tables, item)
    what = _what(item)
    who = f"rank {rank}'s " if rank is not None else ""
    return Verdict(
        pattern="gpu-throttle",
        title=f"{who}{_gpu_name(item.key)} throttled ({what})",
        severity=_severity(item.reasons),
        key=f"host={host} gpu={index} pci={pci}",
        culprit=Culprit(ranks=[rank] if rank is not None else [], hosts=[host] if host else [], gpus=[gpu]),
        window_start_ns=item.first_ts,
        window_end_ns=item.last_ts,
        evidence=item.evidence[:4],
        missing_evidence=missing,
        actions=_actions(item.reasons, not item.reasons and not item.violations, item.violations),
        details={**_details(item), **info, "scope": "gpu"},
    )


def _host_verdict(tables: Tables, host: str, items: list[_Finding], total: int) -> Verdict:
    gpus: list[GpuRef] = []
    ranks: list[int] = []
    missing: list[str] = []
    reasons: set[str] = set()
    violations: dict[str, float] = {}
    evidence: list[Evidence] = []
    for item in items:
        gpu, rank, _info, lacking = _mapping(tables, item)
        gpus.append(gpu)
        if rank is not None:
            ranks.append(rank)
        missing.extend(lacking)
        reasons |= item.reasons
        violations.update(item.violations)
        evidence.extend(item.evidence[:1])
    starts = [i.first_ts for i in items if i.first_ts is not None]
    ends = [i.last_ts for i in items if i.last_ts is not None]
    what = ", ".join(sorted(reasons)) if reasons else ", ".join(sorted({_what(i) for i in items}))
    return Verdict(
        pattern="gpu-throttle",
        title=f"{len(items)} of {total} GPUs on {host} throttled ({what})",
        severity=_severity(reasons),
        key=f"host={host} scope=host",
        culprit=Culprit(ranks=ranks, hosts=[host], gpus=gpus),
        affected=Affected(ranks=ranks, hosts=[host]),
        window_start_ns=min(starts) if starts else None,
        window_end_ns=max(ends) if ends else None,
        evidence=evidence[:6],
        missing_evidence=missing,
        actions=_actions(reasons, not reasons and not violations, violations),
        details={
            "scope": "host",
            "host": host,
            "gpus_throttled": len(items),
            "gpus_on_host": total,
            "reasons": sorted(reasons),
            "per_gpu": [_details(i) for i in items],
        },
    )


DETECTOR = Detector(
    id="gpu-throttle",
    summary="GPU clocks held down by hardware slowdown, power brake, thermal limits or the power cap",
    sources=("dcgm",),
    tables=("gpu_metrics", "identity"),
    detect=detect,
    scope=__name__,
)
