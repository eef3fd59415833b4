"""Identity and clock: apply the manifest to every table and build the ``identity`` table.

Runs after ingest and before detectors, so detectors can map a PCI address or pid to a rank
through ``tables["identity"]`` without knowing where each fact came from.
"""

from __future__ import annotations

from dataclasses import replace

import polars as pl
import pyarrow as pa

from .clock import HOURS_NS, estimate_offsets, shift_host_times
from .ingest.engine import IngestResult
from .ingest.manifest import Manifest
from .report import Problem
from .tables import Tables, conform

# Host-clock columns per table: the host's offset is removed from these.
_TIME_COLUMNS = {
    "fr_entries": ("ts_ns", "time_created_ns", "time_started_ns", "time_completed_ns"),
    "kernel_events": ("ts_ns", "last_ts_ns"),
    "app_events": ("ts_ns",),
    "stacks": ("ts_ns",),
    "gpu_metrics": ("ts_ns",),
}


def apply_manifest_and_identity(result: IngestResult) -> IngestResult:
    """Correct host clocks (manifest, else estimated), fill ranks from the pid map, add ``identity``."""
    tables = dict(result.tables.items())
    manifest = result.manifest
    notes = list(result.notes)
    problems = list(result.summary.problems)
    offsets = {h.name: int(h.clock_offset_ms * 1_000_000) for h in manifest.hosts if h.clock_offset_ms}
    declared = frozenset(h.name for h in manifest.hosts if h.clock_offset_ms)
    for estimate in estimate_offsets(Tables(tables), declared):
        if abs(estimate.offset_ns) >= HOURS_NS:
            problems.append(
                Problem(
                    "(clock)",
                    None,
                    f"clock of host {estimate.host} disagrees with the other hosts by "
                    f"{estimate.offset_ns / HOURS_NS:+.1f} h; corrected, but check its time zone and NTP",
                )
            )
        if estimate.significant:
            offsets[estimate.host] = estimate.offset_ns
            notes.append(estimate.describe() + "; corrected")
    for name, columns in _TIME_COLUMNS.items():
        if name in tables and tables[name].num_rows and offsets:
            frame = pl.from_arrow(tables[name])
            assert isinstance(frame, pl.DataFrame)
            tables[name] = conform(name, shift_host_times(frame, columns, offsets).to_arrow())
    for name in ("stacks", "app_events", "kernel_events"):
        if name in tables and tables[name].num_rows:
            tables[name] = _fill_rank_from_pid(name, tables[name], manifest)
    tables["identity"] = build_identity(Tables(tables), manifest)
    summary = replace(result.summary, problems=problems)
    return replace(result, tables=Tables(tables), notes=notes, summary=summary)


def _fill_rank_from_pid(name: str, table: pa.Table, manifest: Manifest) -> pa.Table:
    pairs = [(r.host, r.pid, r.rank) for r in manifest.ranks if r.pid is not None]
    if not pairs:
        return table
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    lookup = pl.DataFrame(
        {"_host": [p[0] for p in pairs], "pid": [p[1] for p in pairs], "_rank": [p[2] for p in pairs]},
        schema={"_host": pl.String, "pid": pl.Int64, "_rank": pl.Int32},
    )
    joined = frame.with_row_index("_row").join(lookup, on="pid", how="left")
    joined = joined.filter(
        pl.col("_host").is_null() | pl.col("host").is_null() | (pl.col("_host") == pl.col("host"))
    )
    joined = joined.unique(subset="_row", keep="first", maintain_order=True)
    merged = (
        frame.with_row_index("_row").join(joined.select("_row", "_rank"), on="_row", how="left").sort("_row")
    )
    merged = merged.with_columns(pl.coalesce("rank", "_rank").alias("rank")).drop("_row", "_rank")
    return conform(name, merged.to_arrow())


def build_identity(tables: Tables, manifest: Manifest) -> pa.Table:
    """One row per rank (and per GPU named without a rank) from every source that states a fact."""
    rows: dict[int, dict[str, object]] = {}

    def fact(rank: int, source: str, **values: object) -> None:
        row = rows.setdefault(rank, {"rank": rank, "sources": [], "assumptions": []})
        for key, value in values.items():
            if value is not None and row.get(key) is None:
                row[key] = value
        sources = row["sources"]
        assert isinstance(sources, list)
        if source not in sources:
            sources.append(source)

    for spec in manifest.ranks:
        fact(
            spec.rank,
            f"manifest:{manifest.source_file}",
            host=spec.host,
            local_rank=spec.local_rank,
            gpu_index=spec.gpu,
            pci_bus_id=spec.pci_bus_id,
            pid=spec.pid,
            nic=spec.nic,
        )
    if tables.has("fr_entries"):
        fr = tables.df("fr_entries").select("rank", "host", "source_file").unique(subset="rank").sort("rank")
        for rank, host, source_file in fr.iter_rows():
            if rank is not None:
                fact(rank, f"flight_recorder:{source_file}", host=host)
    if tables.has("stacks"):
        stacks = (
            tables.df("stacks")
            .filter(pl.col("rank").is_not_null())
            .select("rank", "host", "pid", "local_rank", "source_file")
            .unique(subset="rank", keep="first")
            .sort("rank")
        )
        for rank, host, pid, local_rank, source_file in stacks.iter_rows():
            fact(rank, f"pyspy:{source_file}", host=host, pid=pid, local_rank=local_rank)
    if tables.has("app_events"):
        init = (
            tables.df("app_events")
            .filter(pl.col("rank").is_not_null() & (pl.col("kind") == "nccl_init"))
            .select(
                "rank", "host", "pid", "local_rank", "gpu_index", "pci_bus_id", "source_file", "source_line"
            )
            .unique(subset="rank", keep="first")
            .sort("rank")
        )
        for rank, host, pid, local_rank, gpu_index, pci, source_file, line in init.iter_rows():
            fact(
                rank,
                f"app_log:{source_file}:{line}",
                host=host,
                pid=pid,
                local_rank=local_rank,
                gpu_index=gpu_index,
                pci_bus_id=pci,
            )
    ordered = [rows[r] for r in sorted(rows)]
    return conform("identity", {key: [row.get(key) for row in ordered] for key in _IDENTITY_KEYS})


_IDENTITY_KEYS = (
    "rank",
    "host",
    "local_rank",
    "gpu_index",
    "pci_bus_id",
    "gpu_uuid",
    "pid",
    "nic",
    "sources",
    "assumptions",
)
