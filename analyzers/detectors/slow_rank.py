"""Detector ``slow-rank``: one rank arrives last at most collectives of a group (a straggler)."""

from __future__ import annotations

import polars as pl

from ..fr_analysis import FrView, calls_at, fr_view
from ..report import Affected, Culprit, Evidence, Severity, Verdict
from ..tables import Tables
from .base import Detector

MIN_COLLECTIVES = 8
MIN_SHARE = 0.5
MIN_LAG_MS = 1.0
MIN_LAG_FRACTION = 0.2


def detect(tables: Tables) -> list[Verdict]:
    """Find a rank that arrives last at most collectives of a group and so makes the others wait.

    What it detects:
        A straggler: in a collective everybody waits for the last rank to arrive, so the last
        arriver has the shortest measured duration (it waits least) and the latest start. A
        rank that is last at most collectives of a group over many collectives slows the job.

    Signals:
        fr_entries duration_ms (timing enabled: TORCH_NCCL_ENABLE_TIMING) per (group, seq,
        rank) of completed collectives, else time_discovered_started_ns (arrival time).
        Without either field there is no verdict (gloo and untimed NCCL dumps; the
        collective-hang verdict says so in its missing evidence).

    Rule:
        Per completed (group, seq) with at least 3 ranks timed, the last arriver is the unique
        rank with the minimum duration (or the latest start); its lag is the median of the
        others minus its own value. A rank that is last in at least half of at least 8
        collectives of a group, with a median lag of at least 1 ms and at least 20 % of the
        median duration, is reported (warning) with its median lag and how many collectives it
        delayed.

    Known false positives:
        Start times compare clocks of different hosts; with skewed clocks the start-time
        fallback can name a rank on a host whose clock runs ahead. Durations are clock-free.
    """
    view = fr_view(tables)
    if view is None or not view.has_timing:
        return []
    per_seq = _per_collective(view.calls)
    verdicts = _by_metric(view, per_seq, "duration_ms", lowest_is_last=True, scale=1.0)
    if not verdicts:
        verdicts = _by_metric(view, per_seq, "started_ns", lowest_is_last=False, scale=1e-6)
    return verdicts


_METRICS = {"duration_ms": True, "started_ns": False}  # metric: whether its lowest value is last


def _per_collective(calls: pl.DataFrame) -> pl.DataFrame:
    """Per completed (group, seq), for each metric: ranks timed, median, extreme, who holds it.

    One group-by for both metrics, reduced to one row per collective: per-call windows over
    millions of calls cost hundreds of MB.
    """
    aggregations: list[pl.Expr] = []
    for column, lowest_is_last in _METRICS.items():
        # Compared in their own type: start times in ns do not fit a double's 53 bits exactly,
        # so as floats ranks starting within a few hundred ns of each other would tie.
        value = pl.col(column)
        extreme = value.min() if lowest_is_last else value.max()
        aggregations += [
            value.count().alias(f"{column}:n"),
            value.median().alias(f"{column}:med"),
            extreme.alias(f"{column}:ext"),
            pl.col("rank").filter(value == extreme).alias(f"{column}:last"),
        ]
    return (
        calls.lazy()
        .filter(pl.col("done") & ~pl.col("partial"))
        .group_by("group_key", "collective_seq_id")
        .agg(aggregations)
        .collect()
    )


def _by_metric(
    view: FrView, per_seq: pl.DataFrame, column: str, lowest_is_last: bool, scale: float
) -> list[Verdict]:
    timed = per_seq.select(
        "group_key",
        "collective_seq_id",
        pl.col(f"{column}:n").alias("n"),
        pl.col(f"{column}:med").alias("med"),
        pl.col(f"{column}:ext").alias("ext"),
        pl.col(f"{column}:last").alias("last"),
    ).filter(pl.col("n") >= 3)
    lag = ((pl.col("med") - pl.col("ext")) if lowest_is_last else (pl.col("ext") - pl.col("med"))) * scale
    totals = timed.group_by("group_key").agg(pl.len().alias("total"))
    per_rank = (
        timed.filter(pl.col("last").list.len() == 1)
        .with_columns(pl.col("last").list.first().alias("rank"), lag.alias("lag_ms"))
        .group_by("group_key", "rank")
        .agg(
            pl.len().alias("times_last"),
            pl.col("lag_ms").median().alias("median_lag_ms"),
            (pl.col("med") * scale).median().alias("median_value"),
            pl.col("collective_seq_id").min().alias("first_seq"),
        )
        .join(totals, on="group_key")
        .filter(
            (pl.col("total") >= MIN_COLLECTIVES)
            & (pl.col("times_last") >= pl.col("total") * MIN_SHARE)
            & (pl.col("median_lag_ms") >= MIN_LAG_MS)
        )
        .sort("group_key", "rank")
    )
    verdicts = []
    for key, rank, times, lag_ms, med, first_seq, total in per_rank.iter_rows():
        if column == "duration_ms" and med and lag_ms < MIN_LAG_FRACTION * med:
            continue
        # The first collective it was last at is cited.
        cited = calls_at(view, key, first_seq, ["rank", "source_file", "source_line"]).filter(
            pl.col("rank") == rank
        )
        source_file, source_line = cited.row(0)[1:] if cited.height else (None, None)
        group = view.groups.get(key)
        label = group.label if group else key
        verdicts.append(
            Verdict(
                pattern="slow-rank",
                title=(
                    f"Slow rank: rank {rank} arrived last at {times} of {total} collectives of group {label} "
                    f"({key}), median lag {lag_ms:.1f} ms"
                ),
                severity=Severity.WARNING,
                key=f"group={key} rank={rank}",
                culprit=Culprit(ranks=[int(rank)]),
                affected=Affected(ranks=[r for r in (group.members if group else ()) if r != rank]),
                evidence=[
                    Evidence(
                        source="flight_recorder",
                        file=str(source_file or ""),
                        line=int(source_line) if source_line is not None else None,
                        excerpt=f"rank {rank}: last to arrive at {times}/{total} collectives ({column})",
                    )
                ],
                details={
                    "group_key": key,
                    "pg_name": group.name if group else None,
                    "pg_desc": group.desc if group else None,
                    "culprit_ranks": [int(rank)],
                    "times_last": int(times),
                    "collectives": int(total),
                    "median_lag_ms": round(float(lag_ms), 3),
                    "metric": column,
                },
            )
        )
    return verdicts


DETECTOR = Detector(
    id="slow-rank",
    summary="A rank arrives last at most collectives of a group (needs FR timing fields)",
    sources=("flight_recorder",),
    tables=("fr_entries", "fr_calls", "fr_groups", "fr_status", "identity"),
    detect=detect,
    scope=__name__,
)
