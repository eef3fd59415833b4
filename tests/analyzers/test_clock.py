"""Per-host clock offsets estimated from collective completions, and applied before detectors."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tracecore.analyzers.clock import estimate_offsets
from tracecore.analyzers.identity import apply_manifest_and_identity
from tracecore.analyzers.ingest.engine import IngestResult
from tracecore.analyzers.ingest.manifest import Manifest
from tracecore.analyzers.report import IngestSummary
from tracecore.analyzers.tables import Tables, conform

BASE = 1_795_755_328_000_000_000


def _fr(skew_ns: int, collectives: int = 12) -> Tables:
    rows: dict[str, list[object]] = {
        k: []
        for k in (
            "source_file",
            "host",
            "rank",
            "pg_name",
            "collective_seq_id",
            "time_completed_ns",
            "ts_ns",
            "is_p2p",
        )
    }
    for seq in range(collectives):
        for rank in range(4):
            host = "node-0" if rank < 2 else "node-1"
            jitter = (seq * 7 + rank * 3) % 5 * 1_000_000  # a few ms of honest noise
            done = BASE + seq * 1_000_000_000 + jitter + (skew_ns if host == "node-1" else 0)
            for key, value in (
                ("source_file", f"r{rank}"),
                ("host", host),
                ("rank", rank),
                ("pg_name", "0"),
                ("collective_seq_id", seq),
                ("time_completed_ns", done),
                ("ts_ns", done - 5_000_000),
                ("is_p2p", False),
            ):
                rows[key].append(value)
    return Tables({"fr_entries": conform("fr_entries", rows)})


def test_offset_of_a_host_running_ahead_is_estimated() -> None:
    estimates = {e.host: e for e in estimate_offsets(_fr(2_000_000_000), frozenset())}
    ahead = estimates["node-1"]
    # Two of four ranks are ahead, so each host sits half the skew from the median.
    assert abs(ahead.offset_ns - 1_000_000_000) < 5_000_000
    assert abs(estimates["node-0"].offset_ns + 1_000_000_000) < 5_000_000
    assert ahead.significant and ahead.uncertainty_ns < 5_000_000 and ahead.collectives == 12


def test_small_skew_is_not_corrected() -> None:
    assert not any(e.significant for e in estimate_offsets(_fr(1_000_000), frozenset()))


def test_hours_of_disagreement_are_reported_and_corrected() -> None:
    result = IngestResult(Path("."), _fr(3 * 3_600_000_000_000), IngestSummary(), Manifest())
    enriched = apply_manifest_and_identity(result)
    assert any("disagrees with the other hosts by" in p.problem for p in enriched.summary.problems)
    assert any("node-1: clock offset estimated" in n for n in enriched.notes)
    fr = enriched.tables.df("fr_entries")
    done = pl.col("time_completed_ns")
    spread = fr.group_by("collective_seq_id").agg((done.max() - done.min()).alias("spread"))
    assert spread.height == 12
    assert spread["spread"].max() < 10_000_000  # the hours of skew are gone


def test_large_incidents_use_an_even_sample_of_collectives() -> None:
    tables = _fr(2_000_000_000, collectives=40)
    whole = {e.host: e for e in estimate_offsets(tables, frozenset())}
    sampled = {e.host: e for e in estimate_offsets(tables, frozenset(), max_completions=40)}
    # 160 completions over a budget of 40: every 4th sequence number, all members of each kept.
    assert whole["node-1"].collectives == 40
    assert sampled["node-1"].collectives == 10
    assert abs(sampled["node-1"].offset_ns - whole["node-1"].offset_ns) < 5_000_000
    assert abs(sampled["node-1"].offset_ns - 1_000_000_000) < 5_000_000
