"""Tables: per-column conversion to Polars, and values derived once per Arrow table."""

from __future__ import annotations

import gc

import pyarrow as pa

from tracecore.analyzers.tables import _DERIVED, Tables, derived


def test_df_converts_the_named_columns_and_keeps_their_order() -> None:
    tables = Tables({"t": pa.table({"a": [1, 2], "b": ["x", "y"], "c": [0.5, 1.5]})})
    assert tables.df("t", ["c", "a"]).columns == ["c", "a"]
    assert tables.df("t").columns == ["a", "b", "c"]
    assert tables.df("t", ["b"])["b"].to_list() == ["x", "y"]


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
