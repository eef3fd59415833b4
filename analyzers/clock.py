"""One clock: estimate per-host clock offsets from moments every rank observes together.

A synchronous collective completes on all members at nearly the same instant, so the spread of
its completion times across hosts is clock skew plus a little noise. For every host without a
manifest offset, the median of (host completion time − the collective's median completion time)
over many collectives estimates the host's offset, and the median absolute deviation its
uncertainty (on very large incidents, over an evenly spaced sample of the collectives). Offsets are applied only when they clearly exceed the uncertainty.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from .tables import Tables, replace_column

MIN_COLLECTIVES = 5
# Completions used per estimate: beyond this, every k-th sequence number is kept (the same ones on
# every rank, so each kept collective keeps all its members). A median over a quarter million
# completions is as good as over millions, at a fraction of the cost for thousands of ranks.
MAX_COMPLETIONS = 250_000
MIN_OFFSET_NS = 50_000_000
HOURS_NS = 3_600_000_000_000


@dataclass(frozen=True)
class ClockEstimate:
    """Estimated offset of one host's clock (host minus consensus), with its uncertainty."""

    host: str
    offset_ns: int
    uncertainty_ns: int
    collectives: int

    @property
    def significant(self) -> bool:
        """Large enough, and well enough supported, to correct for."""
        return (
            self.collectives >= MIN_COLLECTIVES
            and abs(self.offset_ns) >= MIN_OFFSET_NS
            and abs(self.offset_ns) > 3 * self.uncertainty_ns
        )

    def describe(self) -> str:
        """Human-readable note."""
        return (
            f"host {self.host}: clock offset estimated at {self.offset_ns / 1e9:+.3f} s "
            f"± {self.uncertainty_ns / 1e9:.3f} s from {self.collectives} collectives"
        )


def estimate_offsets(
    tables: Tables, known_hosts: frozenset[str], max_completions: int = MAX_COMPLETIONS
) -> list[ClockEstimate]:
    """Offsets of hosts not in ``known_hosts`` from flight-recorder completion times.

    Above ``max_completions`` completions, an evenly spaced sample of sequence numbers is used.
    """
    if not tables.has("fr_entries"):
        return []
    fr = tables.df(
        "fr_entries",
        ["group_key", "pg_name", "collective_seq_id", "host", "time_completed_ns", "is_p2p"],
    )
    group = pl.coalesce("group_key", "pg_name")
    completions = fr.filter(
        pl.col("time_completed_ns").is_not_null()
        & pl.col("host").is_not_null()
        & ~pl.col("is_p2p").fill_null(False)
    ).select(group.alias("_group"), "collective_seq_id", "host", "time_completed_ns")
    if completions.height == 0 or completions["host"].n_unique() < 2:
        return []
    if completions.height > max_completions:
        stride = -(-completions.height // max_completions)
        completions = completions.filter(pl.col("collective_seq_id") % stride == 0)
    per_collective = completions.with_columns(
        (
            pl.col("time_completed_ns")
            - pl.col("time_completed_ns").median().over("_group", "collective_seq_id")
        )
        .cast(pl.Int64)
        .alias("_skew"),
        pl.col("host").n_unique().over("_group", "collective_seq_id").alias("_hosts"),
    ).filter(pl.col("_hosts") >= 2)
    per_host = (
        per_collective.group_by("host", "_group", "collective_seq_id")
        .agg(pl.col("_skew").median())
        .group_by("host")
        .agg(
            pl.col("_skew").median().alias("offset"),
            (pl.col("_skew") - pl.col("_skew").median()).abs().median().alias("mad"),
            pl.len().alias("n"),
        )
        .sort("host")
    )
    return [
        ClockEstimate(str(host), int(offset), int(mad or 0), int(n))
        for host, offset, mad, n in per_host.iter_rows()
        if host not in known_hosts and offset is not None
    ]


def shift_host_times(table: pa.Table, columns: tuple[str, ...], offsets_ns: dict[str, int]) -> pa.Table:
    """Subtract each host's offset from the given time columns (the other columns are untouched)."""
    present = [c for c in columns if c in table.column_names]
    if not offsets_ns or not present or "host" not in table.column_names:
        return table
    frame = pl.from_arrow(table.select(["host", *present]), rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    offset = pl.col("host").cast(pl.String).replace_strict(offsets_ns, default=0, return_dtype=pl.Int64)
    shifted = frame.select([(pl.col(c) - offset).alias(c) for c in present])
    for column in present:
        table = replace_column(table, column, shifted[column].to_arrow())
    return table
