"""Table contract: conform parser output to the fixed schemas and hand tables to detectors."""

from __future__ import annotations

import contextlib
import mmap
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pyarrow as pa

from .schemas import SCHEMAS

if TYPE_CHECKING:
    import polars as pl


class SchemaMismatchError(ValueError):
    """Parser output does not fit its table's schema; lists every problem at once."""


def empty(name: str) -> pa.Table:
    """An empty table with the schema of ``name``."""
    return SCHEMAS[name].empty_table()


def conform(name: str, data: pa.Table | Mapping[str, Any]) -> pa.Table:
    """Cast ``data`` (a table or a dict of columns) to the schema of ``name``.

    Missing nullable columns are filled with nulls, columns are reordered, types are cast safely;
    unknown columns and unsafe casts are errors, all reported together.
    """
    schema = SCHEMAS[name]
    if isinstance(data, pa.Table):
        if data.schema.equals(schema) and not any(
            data.column(f.name).null_count for f in schema if not f.nullable
        ):
            return data  # already conformed (workers conform, then the engine checks again)
        columns = {field_name: data.column(field_name) for field_name in data.column_names}
        length = data.num_rows
    else:
        columns = dict(data)
        length = _common_length(name, columns)
    problems: list[str] = []
    unknown = sorted(set(columns) - set(schema.names))
    if unknown:
        problems.append(f"unknown columns {unknown}")
    arrays: list[pa.Array | pa.ChunkedArray] = []
    for field in schema:
        if field.name not in columns:
            if not field.nullable:
                problems.append(f"missing required column {field.name!r}")
                arrays.append(pa.nulls(length, field.type))
                continue
            arrays.append(pa.nulls(length, field.type))
            continue
        value = columns[field.name]
        try:
            if isinstance(value, (pa.Array, pa.ChunkedArray)):
                array = value if value.type == field.type else value.cast(field.type, safe=True)
            else:
                array = pa.array(value, type=field.type, from_pandas=False)
        except (
            pa.ArrowInvalid,
            pa.ArrowTypeError,
            pa.ArrowNotImplementedError,
            TypeError,
            ValueError,
        ) as exc:
            problems.append(f"column {field.name!r}: {exc}")
            array = pa.nulls(length, field.type)
        if not field.nullable and array.null_count:
            problems.append(f"column {field.name!r} has {array.null_count} nulls but is required")
        arrays.append(array)
    if problems:
        raise SchemaMismatchError(f"{name}: " + "; ".join(problems))
    return pa.Table.from_arrays(arrays, schema=schema)


def _common_length(name: str, columns: Mapping[str, Any]) -> int:
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise SchemaMismatchError(f"{name}: columns have different lengths {sorted(lengths)}")
    return lengths.pop() if lengths else 0


def concat(name: str, parts: Iterable[pa.Table]) -> pa.Table:
    """Concatenate conformed tables of one schema without copying buffers."""
    tables = [p for p in parts if p.num_rows]
    if not tables:
        return empty(name)
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def chunked_like(values: pa.Array | pa.ChunkedArray, lengths: Sequence[int]) -> pa.ChunkedArray:
    """``values`` cut into chunks of ``lengths``.

    Zero-copy slices of one array; only a chunk that spans two of ``values``' own chunks is
    joined. Polars joins every column of a frame into one copy when its columns are chunked
    differently (the whole calls table at thousands of ranks: +5.6 GB at 16,384), so a column
    computed in one piece is laid out like the columns it joins.
    """
    whole = values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values], values.type)
    if len(lengths) <= 1 or sum(lengths) != len(whole):
        return whole
    pieces: list[pa.Array] = []
    offset = 0
    for length in lengths:
        part = whole.slice(offset, length).chunks
        if len(part) == 1:
            pieces.append(part[0])
        else:
            pieces.append(pa.concat_arrays(part) if part else pa.array([], whole.type))
        offset += length
    return pa.chunked_array(pieces, whole.type)


def replace_column(table: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    """``table`` with column ``name`` replaced by ``values``, chunked like the column it replaces.

    See :func:`chunked_like`; ``values`` is cast to the column's type.
    """
    index = table.schema.get_field_index(name)
    field = table.schema.field(index)
    values = values.cast(field.type) if values.type != field.type else values
    lengths = [len(chunk) for chunk in table.column(index).chunks]
    return table.set_column(index, field, chunked_like(values, lengths))


def release_pages(mappings: Iterable[mmap.mmap]) -> None:
    """Hand back the pages of ``mappings`` read so far (see :meth:`Tables.release_pages`)."""
    advice = getattr(mmap, "MADV_DONTNEED", None)
    if advice is None:
        return
    for mapping in mappings:
        with contextlib.suppress(OSError, ValueError):
            mapping.madvise(advice)


# Below this many rows per chunk on average, ``Tables.df`` joins a table's chunks.
SMALL_CHUNK_ROWS = 4_096

_DERIVED: dict[tuple[int, str], Any] = {}
T = TypeVar("T")


def derived(table: pa.Table, name: str, compute: Callable[[], T]) -> T:
    """``compute()`` once per Arrow table and ``name``, for as long as the table lives.

    For values derived from one table that several stages need (an ordering, a key column):
    every copy of an incident's ``Tables`` shares the same Arrow tables, so they share these too.
    """
    key = (id(table), name)
    if key not in _DERIVED:
        if not any(k[0] == key[0] for k in _DERIVED):
            # The entry goes when the table does, so a later table at the same address starts afresh.
            weakref.finalize(table, _forget, key[0])
        _DERIVED[key] = compute()
    return cast(T, _DERIVED[key])


def _forget(table_id: int) -> None:
    for key in [k for k in _DERIVED if k[0] == table_id]:
        del _DERIVED[key]


class Tables(Mapping[str, pa.Table]):
    """All tables of one incident, by name; absent tables read as empty ones.

    Detectors receive this and use :meth:`df` for Polars frames (converted once, cached).
    """

    def __init__(
        self, tables: Mapping[str, pa.Table] | None = None, mapped: Sequence[mmap.mmap] = ()
    ) -> None:
        self._tables: dict[str, pa.Table] = dict(tables or {})
        self._series: dict[str, dict[str, pl.Series]] = {}
        self._mapped = tuple(mapped)

    @property
    def mapped(self) -> tuple[mmap.mmap, ...]:
        """The memory-mapped files the tables' columns are read from (ingest's spool)."""
        return self._mapped

    def release_pages(self) -> None:
        """Hand back the mapped pages read so far; the next read maps them again.

        A stage that reads a column of millions of rows leaves its pages mapped (and counted in
        this process's memory) until the tables go, although the next stage reads other
        columns. The data stays in the page cache: reading it again costs a page fault, not a
        disk read, and the kernel may drop it under memory pressure like any cached file.
        """
        release_pages(self._mapped)

    def __getitem__(self, name: str) -> pa.Table:
        if name in self._tables:
            return self._tables[name]
        if name in SCHEMAS:
            return empty(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._tables)

    def __len__(self) -> int:
        return len(self._tables)

    def has(self, name: str) -> bool:
        """True when the table exists and has at least one row."""
        table = self._tables.get(name)
        return table is not None and table.num_rows > 0

    def df(self, name: str, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """The table (or only ``columns`` of it) as a Polars DataFrame.

        Columns are converted from Arrow once each and cached, so a stage that names the columns
        it reads never pays for the others (on millions of flight-recorder entries, the nested
        size lists and the strings dominate the conversion).
        """
        import polars as pl

        table = self[name]
        wanted = table.column_names if columns is None else list(columns)
        cache = self._series.setdefault(name, {})
        missing = [c for c in wanted if c not in cache]
        if missing:
            selected = table.select(missing)
            chunks = max(selected.column(i).num_chunks for i in range(selected.num_columns))
            # Thousands of small chunks (one per dump) make every later Polars operation pay
            # per chunk: those are joined once here. Large chunks stay zero-copy.
            rechunk = chunks > 1 and selected.num_rows < chunks * SMALL_CHUNK_ROWS
            converted = pl.from_arrow(selected, rechunk=rechunk)
            assert isinstance(converted, pl.DataFrame)
            for series in converted.get_columns():
                cache[series.name] = series
        return pl.DataFrame([cache[c] for c in wanted]) if wanted else pl.DataFrame()

    def with_table(self, name: str, table: pa.Table) -> Tables:
        """A copy with ``name`` replaced."""
        tables = dict(self._tables)
        tables[name] = table
        return Tables(tables, mapped=self._mapped)

    def names(self) -> list[str]:
        """Names of tables that exist (possibly empty)."""
        return sorted(self._tables)
