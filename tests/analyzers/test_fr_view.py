"""The flight-recorder view finds entries in the Arrow table without a per-entry frame."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pytest

import tracecore.analyzers.tables as tables_module
from tests.helpers.incident import ingest_serial
from tests.helpers.paths import INCIDENTS
from tracecore.analyzers.fr_analysis import entry_row, fr_view, locate_rows, p2p_entries
from tracecore.analyzers.tables import Tables, conform


def _entries(files: list[tuple[str, int, list[int]]], batch_rows: int) -> pa.Table:
    """fr_entries rows of (file, rank, lines), cut into record batches of ``batch_rows``."""
    rows = [(file, rank, line) for file, rank, lines in files for line in lines]
    table = conform(
        "fr_entries",
        {
            "source_file": [r[0] for r in rows],
            "rank": [r[1] for r in rows],
            "source_line": [r[2] for r in rows],
            "record_id": list(range(len(rows))),
            "is_p2p": [r[2] % 3 == 0 for r in rows],
        },
    )
    return pa.Table.from_batches(table.to_batches(max_chunksize=batch_rows))


@pytest.mark.parametrize("batch_rows", [2, 3, 100])
def test_every_entry_is_located_by_its_file_and_line(batch_rows: int) -> None:
    # b's lines have gaps (rejected entries) and c's rank is unknown; a dump split over
    # batches is still one run, and a line no entry has is not found.
    table = _entries(
        [("a", 0, [1, 2, 3, 4]), ("b", 1, [1, 3, 4, 9]), ("c", None, [2, 3])],  # type: ignore[list-item]
        batch_rows,
    )
    view = fr_view(Tables({"fr_entries": table}))
    assert view is not None
    assert view.runs["source_file"].to_list() == ["a", "b", "c"]
    assert view.runs["dense"].to_list() == [True, False, True]
    wanted = list(
        zip(table.column("source_file").to_pylist(), table.column("source_line").to_pylist(), strict=True)
    )
    assert locate_rows(view, wanted) == list(range(table.num_rows))
    assert locate_rows(view, [("a", 5), ("b", 2), ("c", 1), ("d", 1)]) == [None, None, None, None]
    assert view.hosts.keys() == {0, 1} and view.dumped == (0, 1)


def test_point_to_point_rows_are_those_flagged() -> None:
    table = _entries([("a", 0, list(range(1, 8))), ("b", 1, list(range(1, 5)))], 3)
    view = fr_view(Tables({"fr_entries": table}))
    assert view is not None
    p2p = p2p_entries(view, ["source_file", "source_line"])
    flagged = [i for i, f in enumerate(table.column("is_p2p").to_pylist()) if f]
    assert p2p["_row"].to_list() == flagged
    assert p2p["source_line"].to_list() == [3, 6, 3]


@pytest.mark.parametrize("name", ["fr-coalesced-ws4-pickle", "fr-missing-rank-hang-json", "fr-p2p-pickle"])
def test_entry_row_is_the_first_entry_of_the_rank_at_that_sequence_number(name: str) -> None:
    tables = ingest_serial(INCIDENTS / name).tables
    view = fr_view(tables)
    assert view is not None
    entries = pl.from_arrow(tables["fr_entries"])
    assert isinstance(entries, pl.DataFrame)
    firsts = (
        entries.filter(~pl.col("is_p2p") & pl.col("group_key").is_not_null())
        .sort("rank", "record_id")
        .unique(subset=["group_key", "collective_seq_id", "rank"], keep="first", maintain_order=True)
    )
    assert firsts.height > 0
    for key, seq, rank, line in firsts.select(
        "group_key", "collective_seq_id", "rank", "source_line"
    ).iter_rows():
        row = entry_row(view, rank, key, seq)
        assert row is not None and (row["rank"], row["source_line"]) == (rank, line)
    assert entry_row(view, 0, "no-such-group", 1) is None


def test_calls_frame_columns_share_the_tables_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Ingest in parallel hands the calls over in large record batches; every column of the
    # view's frame, those it computes included, keeps that layout (a column in one piece among
    # chunked ones makes Polars copy the whole frame into one chunk). Chunks this small would
    # be joined on conversion: the threshold is lowered so they are kept.
    monkeypatch.setattr(tables_module, "SMALL_CHUNK_ROWS", 1)
    tables = ingest_serial(INCIDENTS / "fr-coalesced-ws4-pickle").tables
    calls = tables["fr_calls"]
    batched = pa.Table.from_batches(calls.to_batches(max_chunksize=max(1, calls.num_rows // 3)))
    view = fr_view(tables.with_table("fr_calls", batched))
    assert view is not None
    assert set(view.calls.n_chunks("all")) == {batched.column(0).num_chunks}
    assert batched.column(0).num_chunks > 1
    assert view.calls["_row"].to_list() == list(range(calls.num_rows))
    whole = fr_view(tables)
    assert whole is not None
    assert view.calls.equals(whole.calls)
