"""Tables: per-column conversion to Polars, values derived once per Arrow table, dictionary columns."""

from __future__ import annotations

import gc

import polars as pl
import pyarrow as pa

from tracecore.analyzers.tables import _DERIVED, SMALL_CHUNK_ROWS, Tables, derived, replace_column
from tracecore.analyzers.tables.schemas import DICTIONARY_STRING, coded, constant


def test_df_converts_the_named_columns_and_keeps_their_order() -> None:
    tables = Tables({"t": pa.table({"a": [1, 2], "b": ["x", "y"], "c": [0.5, 1.5]})})
    assert tables.df("t", ["c", "a"]).columns == ["c", "a"]
    assert tables.df("t").columns == ["a", "b", "c"]
    assert tables.df("t", ["b"])["b"].to_list() == ["x", "y"]


def _chunked(rows_per_chunk: int, chunks: int) -> pa.Table:
    parts = [
        pa.table({"rank": pa.array([i] * rows_per_chunk, pa.int32()), "op": ["all_reduce"] * rows_per_chunk})
        for i in range(chunks)
    ]
    return pa.concat_tables(parts)


def test_df_joins_many_small_chunks_and_keeps_large_ones() -> None:
    small = Tables({"fr_entries": _chunked(rows_per_chunk=10, chunks=50)}).df("fr_entries", ["rank", "op"])
    assert [s.n_chunks() for s in small.get_columns()] == [1, 1]
    assert small["rank"].to_list() == [i for i in range(50) for _ in range(10)]
    large = Tables({"fr_entries": _chunked(rows_per_chunk=SMALL_CHUNK_ROWS, chunks=3)}).df(
        "fr_entries", ["rank"]
    )
    assert large["rank"].n_chunks() == 3


def test_derived_is_computed_once_per_table_and_dropped_with_it() -> None:
    calls: list[int] = []
    table = pa.table({"a": [1, 2, 3]})

    def total() -> int:
        calls.append(1)
        return 6

    # Two Tables over the same Arrow table share the derived value.
    first, second = Tables({"t": table}), Tables({"t": table})
    assert derived(first["t"], "total", total) == 6
    assert derived(second["t"], "total", total) == 6
    assert calls == [1]
    key = (id(table), "total")
    assert key in _DERIVED
    del first, second, table, total
    gc.collect()
    assert key not in _DERIVED


def test_coded_column_holds_each_text_once_and_reads_none_as_null() -> None:
    # Codes into distinct values that repeat and include None (a profiling name without backend).
    column = coded(["nccl", None, "nccl", "gloo"], pa.array([0, 1, 2, 3, 0, None], pa.int32()))
    assert column.type == DICTIONARY_STRING
    assert column.dictionary.to_pylist() == ["nccl", "gloo"]
    assert column.to_pylist() == ["nccl", None, "nccl", "gloo", "nccl", None]


def test_constant_column_has_one_dictionary_value_or_is_all_null() -> None:
    column = constant("rank-3.pkl", 4)
    assert column.type == DICTIONARY_STRING
    assert column.dictionary.to_pylist() == ["rank-3.pkl"]
    assert column.to_pylist() == ["rank-3.pkl"] * 4
    assert constant(None, 3).to_pylist() == [None, None, None]


def test_dictionary_chunks_with_different_dictionaries_read_as_one_categorical() -> None:
    # Every dump's columns carry their own dictionary; concatenated, Polars sees one column.
    parts = [
        pa.table({"host": constant(host, 2), "op": coded(["send", "recv"], pa.array([1, 0], pa.int32()))})
        for host in ("node-a", "node-b")
    ]
    frame = Tables({"t": pa.concat_tables(parts)}).df("t")
    assert frame.schema["host"] == pl.Categorical
    assert frame["host"].to_list() == ["node-a", "node-a", "node-b", "node-b"]
    assert frame.filter(pl.col("op") == "send")["host"].to_list() == ["node-a", "node-b"]


def _layout(column: pa.ChunkedArray) -> list[int]:
    return [len(chunk) for chunk in column.chunks]


def test_replace_column_keeps_the_tables_chunk_layout() -> None:
    table = _chunked(rows_per_chunk=3, chunks=4).append_column(
        "seq", pa.chunked_array([pa.array(range(i * 3, i * 3 + 3), pa.int64()) for i in range(4)])
    )
    # One piece, as computed in Polars: laid out in the table's chunks of 3 rows.
    one_piece = pa.array(range(100, 112), pa.int64())
    replaced = replace_column(table, "seq", one_piece)
    assert _layout(replaced.column("seq")) == [3, 3, 3, 3]
    assert replaced.column("seq").to_pylist() == list(range(100, 112))
    # Other chunking (slices of 5 rows, as finalize computes them): pieces across two are joined.
    sliced = pa.chunked_array([pa.array(range(i, min(i + 5, 12)), pa.int32()) for i in range(0, 12, 5)])
    replaced = replace_column(table, "rank", sliced)
    assert _layout(replaced.column("rank")) == [3, 3, 3, 3]
    assert replaced.column("rank").to_pylist() == list(range(12))
    assert replaced.column("rank").type == pa.int32()
    # Dictionary columns (categorical in Polars) and a cast to the field's type.
    texts = pa.DictionaryArray.from_arrays(pa.array([0, 1] * 6, pa.int32()), pa.array(["a", "b"]))
    replaced = replace_column(table, "op", texts)
    assert _layout(replaced.column("op")) == [3, 3, 3, 3]
    assert replaced.column("op").to_pylist() == ["a", "b"] * 6
    # Aligned columns convert without Polars joining the frame's chunks.
    frame = pl.from_arrow(replaced, rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    assert frame.n_chunks("all") == [4, 4, 4]


def test_replace_column_with_an_empty_chunk_in_the_table() -> None:
    table = pa.Table.from_batches(
        [
            pa.record_batch({"v": pa.array([1, 2], pa.int64())}),
            pa.record_batch({"v": pa.array([], pa.int64())}),
            pa.record_batch({"v": pa.array([3], pa.int64())}),
        ]
    )
    replaced = replace_column(table, "v", pa.array([7, 8, 9], pa.int64()))
    assert _layout(replaced.column("v")) == [2, 0, 1]
    assert replaced.column("v").to_pylist() == [7, 8, 9]
