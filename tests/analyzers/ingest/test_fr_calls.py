"""fr_calls: folded at ingest (per batch of dumps), the same as folding the finished entries."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from tests.helpers.incident import copy_into, ingest_serial
from tests.helpers.paths import INCIDENTS
from tests.helpers.spool import pack_run
from tracecore.analyzers.fr_analysis import _take, fr_view
from tracecore.analyzers.ingest.discovery import discover
from tracecore.analyzers.ingest.engine import _BatchSpool, _unpack_batch, parse_one
from tracecore.analyzers.ingest.fr_calls import calls_table
from tracecore.analyzers.ingest.manifest import Manifest
from tracecore.analyzers.ingest.registry import PARSERS
from tracecore.analyzers.tables import Tables

# Coalesced groups, wrapped ring buffers, p2p, mismatched sizes and dtypes, subgroups, a dump
# whose rank comes from elsewhere than its name: every way a call's fold or keys can differ.
CASES = [
    "fr-coalesced-ws4-pickle",
    "fr-coalesced-ws4-json",
    "fr-ring-wrap-ws4-r0-pickle",
    "fr-ring-wrap-pickle-pgfixed",
    "fr-p2p-pickle",
    "fr-size-mismatch-ws5-r3-pickle",
    "fr-dtype-mismatch-ws4-r1-json",
    "fr-subgroup-hang-ws8-pickle",
    "fr-heldout-subgroup-dp-ws8-r3-r2nodump-pickle",
    "fr-synthetic-slow-rank-nccl",
]


def _calls(tables: Tables) -> pl.DataFrame:
    view = fr_view(tables)
    assert view is not None
    keys = ["group_key", "collective_seq_id", "rank"]
    table = pl.from_arrow(view.calls_table)
    assert isinstance(table, pl.DataFrame)
    calls = table.with_columns(view.calls["syntax_bad"], pl.col(pl.Categorical).cast(pl.String))
    return calls.select(sorted(calls.columns)).sort(keys)


def _without_calls(tables: Tables) -> Tables:
    """``tables`` as a table directory written before fr_calls existed would load."""
    return Tables({n: tables[n] for n in tables.names() if n != "fr_calls"})


@pytest.mark.parametrize("name", CASES)
def test_calls_folded_at_ingest_equal_calls_folded_from_the_entries(name: str) -> None:
    tables = ingest_serial(INCIDENTS / name).tables
    assert tables.has("fr_calls")
    from_ingest = _calls(tables)
    from_entries = _calls(_without_calls(tables))
    assert from_ingest.height > 0
    assert from_ingest.equals(from_entries, null_equal=True)


def test_calls_folded_batch_by_batch_equal_calls_folded_at_once(tmp_path: Path) -> None:
    # Batches of a third of the entries: the four dumps fold two by two, and the calls of the
    # batches, in file order, are those of one fold over every entry.
    root = INCIDENTS / "fr-coalesced-ws4-pickle"
    results = [parse_one(job, Manifest()) for job in discover(root, list(PARSERS), Manifest()).files]
    entries = pa.concat_tables(
        r.output.tables["fr_entries"] for r in results if "fr_entries" in r.output.tables
    )
    pack_run(_BatchSpool(str(tmp_path), batch_rows=max(1, entries.num_rows // 3)), results)
    parts = [r.output.tables["fr_calls"] for r in _unpack_batch(results) if "fr_calls" in r.output.tables]
    assert len(parts) == 2
    assert pa.concat_tables(parts).to_pylist() == calls_table(entries).to_pylist()


def test_calls_of_a_dump_claimed_twice_are_kept_once(tmp_path: Path) -> None:
    copy = copy_into(tmp_path, INCIDENTS / "fr-coalesced-ws4-pickle", "incident")
    # A second dump of rank 0 in another folder, one byte longer (so not a duplicate input), and
    # a third under a name that names no rank (its calls cannot be aligned: left out).
    first = copy / "comm_lib_trace_rank_0"
    (copy / "again").mkdir()
    (copy / "again" / first.name).write_bytes(first.read_bytes() + b"\n")
    (copy / "comm_lib_trace_rank_0.copy").write_bytes(first.read_bytes() + b"\n\n")
    result = ingest_serial(copy)
    assert any("two dumps claim rank 0" in p.problem for p in result.summary.problems)
    tables = result.tables
    calls = tables.df("fr_calls")
    counts = calls.group_by("group_key", "collective_seq_id", "rank").len()
    assert counts["len"].max() == 1
    files = set(calls["source_file"].cast(pl.String))
    assert len(files) == 4 and not any(f.endswith(".copy") for f in files)
    assert _calls(tables).equals(_calls(_without_calls(tables)))


def test_rows_are_taken_in_the_asked_order_across_chunks() -> None:
    table = pa.Table.from_batches(
        [
            pa.record_batch({"i": list(range(start, start + 4))}, schema=pa.schema([("i", pa.int64())]))
            for start in (0, 4, 8)
        ]
    )
    rows = [9, 0, 5, 11, 4, 0]
    assert _take(table, rows).column("i").to_pylist() == rows
    assert _take(table, []).num_rows == 0
