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
from .ingest.fr_calls import run_start
from .ingest.manifest import Manifest
from .report import Problem
from .tables import Tables, conform, replace_column

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
            tables[name] = shift_host_times(tables[name], columns, offsets)
    if "stacks" in tables and tables["stacks"].num_rows:
        tables["stacks"], rank_problems = _prefer_manifest_over_file_names(tables["stacks"], manifest)
        problems.extend(rank_problems)
    for name in ("stacks", "app_events", "kernel_events"):
        if name in tables and tables[name].num_rows:
            tables[name] = _fill_rank_from_pid(name, tables[name], manifest)
    tables["identity"], identity_problems = build_identity(Tables(tables), manifest)
    problems.extend(identity_problems)
    summary = replace(result.summary, problems=problems)
    return replace(result, tables=Tables(tables, mapped=result.tables.mapped), notes=notes, summary=summary)


# Rank hints weaker than a pid the manifest states (a file name may hold a local rank).
_WEAK_RANK_SOURCES = ("file-name", "process-elsewhere")


def _with_manifest_rank(frame: pl.DataFrame, manifest: Manifest) -> pl.DataFrame | None:
    """``frame`` plus ``_rank``: the rank the manifest gives each row's pid (same host, or host unknown)."""
    pairs = [(r.host, r.pid, r.rank) for r in manifest.ranks if r.pid is not None]
    if not pairs:
        return None
    lookup = pl.DataFrame(
        {"_host": [p[0] for p in pairs], "pid": [p[1] for p in pairs], "_rank": [p[2] for p in pairs]},
        schema={"_host": pl.String, "pid": pl.Int64, "_rank": pl.Int32},
    )
    indexed = frame.with_row_index("_row")
    matches = (
        indexed.select("_row", "pid", pl.col("host").cast(pl.String))
        .join(lookup, on="pid", how="inner")
        .filter(pl.col("_host").is_null() | pl.col("host").is_null() | (pl.col("_host") == pl.col("host")))
        .unique(subset="_row", keep="first", maintain_order=True)
        .select("_row", "_rank")
    )
    return indexed.join(matches, on="_row", how="left").sort("_row").drop("_row")


def _prefer_manifest_over_file_names(table: pa.Table, manifest: Manifest) -> tuple[pa.Table, list[Problem]]:
    """Where a dump's pid is a manifest rank, that rank beats a rank read from the file name."""
    if "rank_source" not in table.column_names or not any(r.pid is not None for r in manifest.ranks):
        return table, []
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    merged = _with_manifest_rank(frame, manifest)
    if merged is None:
        return table, []
    overridden = (
        pl.col("_rank").is_not_null()
        & pl.col("rank_source").is_in(list(_WEAK_RANK_SOURCES))
        & (pl.col("rank").is_null() | (pl.col("rank") != pl.col("_rank")))
    )
    conflicts = (
        merged.filter(overridden & pl.col("rank").is_not_null())
        .select("source_file", "pid", "rank", "_rank")
        .unique(maintain_order=True)
    )
    problems = [
        Problem(
            str(f),
            None,
            f"file name says rank {r} but its process (pid {p}) is rank {m} in the manifest; using rank {m}",
        )
        for f, p, r, m in conflicts.iter_rows()
    ]
    merged = merged.with_columns(
        pl.when(overridden).then(pl.col("_rank")).otherwise(pl.col("rank")).alias("rank"),
        pl.when(overridden).then(pl.lit("manifest")).otherwise(pl.col("rank_source")).alias("rank_source"),
    ).drop("_rank")
    return conform("stacks", merged.to_arrow()), problems


def _fill_rank_from_pid(name: str, table: pa.Table, manifest: Manifest) -> pa.Table:
    """Rows without a rank get the one the manifest's pid map gives them."""
    if not any(r.pid is not None for r in manifest.ranks):
        return table
    if table.column("rank").null_count == 0:
        return table
    # Only the three columns involved cross into Polars; the rank column is set back in place
    # (kernel logs can hold millions of rows of text that need not move).
    frame = pl.from_arrow(table.select(["host", "pid", "rank"]), rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    merged = _with_manifest_rank(frame, manifest)
    if merged is None:
        return table
    ranks = merged.select(pl.coalesce("rank", "_rank").alias("rank"))["rank"].to_arrow()
    return replace_column(table, "rank", ranks)


def build_identity(tables: Tables, manifest: Manifest) -> tuple[pa.Table, list[Problem]]:
    """One row per rank (and per GPU named without a rank) from every source that states a fact.

    Facts stated by content (the manifest, NCCL init lines, DCGM labels) are strong: two strong
    sources that disagree are reported as a problem, the first one listed is kept. Facts suggested
    only by a file's location (FR and py-spy hosts) are weak: they fill gaps and never conflict.
    The conventional "GPU index = local rank" is used only as a recorded assumption.
    """
    rows: dict[int, dict[str, object]] = {}
    origin: dict[tuple[int, str], tuple[object, str, bool]] = {}
    problems: list[Problem] = []

    def fact(rank: int, source: str, strong: bool, **values: object) -> None:
        row = rows.setdefault(rank, {"rank": rank, "sources": [], "assumptions": []})
        for key, value in values.items():
            if value is None:
                continue
            known = origin.get((rank, key))
            if known is None or (strong and not known[2]):
                row[key] = value
                origin[(rank, key)] = (value, source, strong)
            elif strong and known[2] and known[0] != value:
                problems.append(
                    Problem(
                        "(identity)",
                        None,
                        f"rank {rank} {key}: {known[0]} ({known[1]}) vs {value} ({source}); kept the first",
                    )
                )
        sources = row["sources"]
        assert isinstance(sources, list)
        if source not in sources:
            sources.append(source)

    for spec in manifest.ranks:
        fact(
            spec.rank,
            f"manifest:{manifest.source_file}",
            True,
            host=spec.host,
            local_rank=spec.local_rank,
            gpu_index=spec.gpu,
            pci_bus_id=spec.pci_bus_id,
            pid=spec.pid,
            nic=spec.nic,
        )
    if tables.has("app_events"):
        init = (
            tables.df("app_events")
            .filter(pl.col("rank").is_not_null() & (pl.col("kind") == "nccl_init"))
            .select(
                "rank",
                "host",
                "pid",
                "local_rank",
                "gpu_index",
                "pci_bus_id",
                "attrs",
                "source_file",
                "source_line",
            )
            .unique(subset="rank", keep="first", maintain_order=True)
            .sort("rank")
        )
        for rank, host, pid, local_rank, gpu_index, pci, attrs, source_file, line in init.iter_rows():
            nic = dict(attrs or []).get("nic") if attrs else None
            fact(
                rank,
                f"app_log:{source_file}:{line}",
                True,
                host=host,
                pid=pid,
                local_rank=local_rank,
                gpu_index=gpu_index,
                pci_bus_id=pci,
                nic=nic,
            )
    if tables.has("fr_entries"):
        fr = (
            tables.df("fr_entries", ["rank", "host", "source_file"])
            .filter(run_start("rank", "host", "source_file"))
            .unique(subset="rank")
            .sort("rank")
        )
        for rank, host, source_file in fr.iter_rows():
            if rank is not None:
                fact(rank, f"flight_recorder:{source_file}", False, host=host)
    if tables.has("stacks"):
        stacks = (
            tables.df("stacks")
            .filter(pl.col("rank").is_not_null())
            .select("rank", "host", "pid", "local_rank", "source_file")
            .unique(subset="rank", keep="first", maintain_order=True)
            .sort("rank")
        )
        for rank, host, pid, local_rank, source_file in stacks.iter_rows():
            fact(rank, f"pyspy:{source_file}", False, host=host, pid=pid, local_rank=local_rank)
    gpus = _gpu_facts(tables)
    _attach_gpus(rows, gpus)
    ordered = [rows[r] for r in sorted(rows)]
    claimed = {(r.get("host"), r.get("pci_bus_id")) for r in ordered}
    for gpu in gpus:
        if (gpu["host"], gpu["pci_bus_id"]) not in claimed and gpu["pci_bus_id"] is not None:
            ordered.append({**gpu, "rank": None, "sources": [gpu["source"]], "assumptions": []})
    table = conform("identity", {key: [row.get(key) for row in ordered] for key in _IDENTITY_KEYS})
    return table, problems


def _gpu_facts(tables: Tables) -> list[dict[str, object]]:
    """GPUs named by DCGM labels (host, index, PCI id, UUID), one entry per GPU."""
    if not tables.has("gpu_metrics"):
        return []
    frame = (
        tables.df("gpu_metrics")
        .filter(pl.col("gpu_index").is_not_null() & pl.col("mig_instance").is_null())
        .select("host", "gpu_index", "pci_bus_id", "gpu_uuid", "source_file")
        .unique(subset=["host", "gpu_index"], keep="first", maintain_order=True)
        .sort("host", "gpu_index")
    )
    return [
        {"host": h, "gpu_index": i, "pci_bus_id": p, "gpu_uuid": u, "source": f"dcgm:{f}"}
        for h, i, p, u, f in frame.iter_rows()
    ]


def _attach_gpus(rows: dict[int, dict[str, object]], gpus: list[dict[str, object]]) -> None:
    """Join DCGM GPU facts to ranks by PCI id, else by a stated GPU index, else by local rank (assumed)."""
    by_pci = {(g["host"], g["pci_bus_id"]): g for g in gpus if g["pci_bus_id"] is not None}
    by_index = {(g["host"], g["gpu_index"]): g for g in gpus}
    for row in rows.values():
        assumptions = row["assumptions"]
        assert isinstance(assumptions, list)
        gpu = by_pci.get((row.get("host"), row.get("pci_bus_id")))
        if gpu is None and row.get("gpu_index") is not None:
            gpu = by_index.get((row.get("host"), row.get("gpu_index")))
        if gpu is None and row.get("gpu_index") is None and row.get("local_rank") is not None:
            gpu = by_index.get((row.get("host"), row.get("local_rank")))
            if gpu is not None:
                assumptions.append(
                    f"GPU index {row['local_rank']} taken from local rank {row['local_rank']} (convention; no source states it)"
                )
        if gpu is None:
            continue
        for key in ("gpu_index", "pci_bus_id", "gpu_uuid"):
            if row.get(key) is None:
                row[key] = gpu[key]
        sources = row["sources"]
        assert isinstance(sources, list)
        if gpu["source"] not in sources:
            sources.append(gpu["source"])


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
