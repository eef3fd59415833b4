"""Detector ``collective-timeout``: collectives that failed or ran past their timeout."""

from __future__ import annotations

import polars as pl

from ..fr_analysis import as_int, call_columns, describe_entry, entry_row, evidence_for, fr_view
from ..report import Affected, Severity, Verdict, ranks_text
from ..tables import Tables
from .base import Detector


def detect(tables: Tables) -> list[Verdict]:
    """Find collectives retired without completing, or in flight longer than their timeout.

    What it detects:
        Work the communication library gave up on (the watchdog retired it without the end
        event: timed out or errored) and collectives still in flight for longer than the
        group's timeout_ms at the time of the dump.

    Signals:
        fr_entries state, retired, timeout_ms, time_created_ns; the newest timestamp in any
        dump (created/started/completed) as a lower bound of the dump time.

    Rule:
        Per (group, seq): on NCCL-like backends, retired and not completed means timed out or
        failed (gloo retires finished work without ever marking it completed, so retired is
        success there). A collective not done whose enqueue time is more than timeout_ms
        before the newest timestamp in the dumps certainly outlived its timeout (the dump was
        taken no earlier than that timestamp). One error verdict per group, first seq first.
        When collectives are in flight but the dumps carry no dump time and no started or
        completed timestamps (gloo), nothing is reported (no guessing); the collective-hang
        verdict says once in its missing evidence that timeouts could not be assessed.

    Known false positives:
        Host clocks that disagree by more than the timeout can make an in-flight collective
        look older than it is when the newest timestamp comes from another host.
    """
    view = fr_view(tables)
    if view is None or view.calls.height == 0:
        return []
    calls = view.calls.lazy().with_columns(
        (pl.col("retired_not_completed") & (pl.col("backend") != "gloo").fill_null(True)).alias("_failed"),
        (
            ~pl.col("done")
            & pl.col("created_ns").is_not_null()
            & pl.col("timeout_ms").is_not_null()
            & (
                pl.lit(view.ref_ts_ns or 0, dtype=pl.Int64) - pl.col("created_ns")
                > pl.col("timeout_ms") * 1_000_000
            )
        ).alias("_overdue"),
    )
    bad = (
        calls.filter(pl.col("_failed") | pl.col("_overdue"))
        .select("_row", "group_key", "collective_seq_id", "rank", "_failed", "timeout_ms", "created_ns")
        .collect()
    )
    bad = bad.hstack(call_columns(view, bad["_row"], ["profiling_name"]))
    verdicts: list[Verdict] = []
    if bad.height:
        firsts = (
            bad.group_by("group_key").agg(pl.col("collective_seq_id").min().alias("seq")).sort("group_key")
        )
        for key, seq in firsts.iter_rows():
            rows = bad.filter((pl.col("group_key") == key) & (pl.col("collective_seq_id") == seq))
            group = view.groups.get(key)
            label = group.label if group else key
            ranks = sorted(rows["rank"].to_list())
            failed = bool(rows["_failed"].any())
            op = rows["profiling_name"].mode().sort().to_list()[0]
            timeout = as_int(rows["timeout_ms"].max())
            created = as_int(rows["created_ns"].min())
            evidence = []
            for rank in ranks[:4]:
                row = entry_row(view, rank, key, seq)
                if row is not None:
                    evidence.append(evidence_for(row, describe_entry(row)))
            age_s = (view.ref_ts_ns - created) / 1e9 if view.ref_ts_ns and created else None
            how = (
                "retired without completing (timed out or failed)"
                if failed
                else (
                    f"in flight for at least {age_s:.0f} s, beyond its {int(timeout or 0) / 1000:.0f} s timeout"
                )
            )
            verdicts.append(
                Verdict(
                    pattern="collective-timeout",
                    title=f"Collective timeout in group {label} ({key}) at #{seq} ({op}): {how} on ranks "
                    f"{ranks_text(ranks)}",
                    severity=Severity.ERROR,
                    key=f"group={key} seq={seq}",
                    affected=Affected(
                        ranks=ranks, hosts=sorted({h for r in ranks if (h := view.hosts.get(r))})
                    ),
                    window_start_ns=created,
                    window_end_ns=view.ref_ts_ns,
                    evidence=evidence,
                    details={
                        "group_key": key,
                        "pg_name": group.name if group else None,
                        "pg_desc": group.desc if group else None,
                        "seq": seq,
                        "op": op,
                        "ranks": ranks,
                        "retired_not_completed": failed,
                        "timeout_ms": timeout,
                        "in_flight_s_at_least": age_s,
                        "first_ts_ns": created,
                    },
                )
            )
        return verdicts
    return verdicts


DETECTOR = Detector(
    id="collective-timeout",
    summary="Collectives retired without completing, or in flight longer than their timeout at dump time",
    sources=("flight_recorder",),
    tables=("fr_entries", "fr_calls", "fr_groups", "fr_status", "identity"),
    detect=detect,
    scope=__name__,
)
