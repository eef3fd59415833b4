"""Flight-recorder calls: the entries of one collective on one rank, folded into one row.

A call is (process group, ``collective_seq_id``, rank); p2p entries do not advance
``collective_seq_id`` and are left out. Coalesced members of one sequence number fold into one
call (ops joined with ``+``) so pre-2.7 and 2.7+ layouts compare alike.

A call comes from one dump, so it is folded where the dump's entries are: in the ingest
workers, over each batch of consecutive files' entries, keyed by ``(source_file, pg_name,
collective_seq_id)``. Finalize then sets ``rank`` and ``group_key`` (decided across files) with
:func:`attach_keys`. Nothing here depends on group membership: the size relations that need the
group's size keep the ratio the sizes imply (``numel_ratio_min``/``max``) and the flight-recorder
view compares it with the group's size.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ..tables import conform, replace_column

ALL_REDUCE_OPS = frozenset({"all_reduce", "allreduce", "allreduce_coalesced", "all_reduce_coalesced"})
ALL_GATHER_OPS = frozenset(
    {
        "all_gather",
        "_all_gather_base",
        "all_gather_base",
        "all_gather_into_tensor",
        "all_gather_into_tensor_coalesced",
        "all_gather_single",
    }
)
REDUCE_SCATTER_OPS = frozenset(
    {
        "reduce_scatter",
        "_reduce_scatter_base",
        "reduce_scatter_base",
        "reduce_scatter_tensor",
        "reduce_scatter_tensor_coalesced",
        "reduce_scatter_single",
    }
)
ALL_TO_ALL_OPS = frozenset(
    {"all_to_all", "all_to_all_single", "all_to_all_v_single", "alltoall", "alltoall_base"}
)
GATHER_OPS = frozenset({"gather"})
SCATTER_OPS = frozenset({"scatter"})
# Ops whose per-rank sizes legitimately differ (uneven variants): totals only, or nothing.
UNEVEN_OPS = frozenset({"all_gather_v", "reduce_scatter_v"})

# Each op's size rules, as a small integer per entry: looked up once instead of testing every
# entry's op against each set.
_OTHER, _ALL_REDUCE, _ALL_GATHER, _REDUCE_SCATTER, _ALL_TO_ALL, _GATHER, _SCATTER, _UNEVEN = range(8)
_OP_KIND = {
    op: kind
    for kind, ops in (
        (_ALL_REDUCE, ALL_REDUCE_OPS),
        (_ALL_GATHER, ALL_GATHER_OPS),
        (_REDUCE_SCATTER, REDUCE_SCATTER_OPS),
        (_ALL_TO_ALL, ALL_TO_ALL_OPS),
        (_GATHER, GATHER_OPS),
        (_SCATTER, SCATTER_OPS),
        (_UNEVEN, UNEVEN_OPS),
    )
    for op in ops
}

FILE_KEYS = ("source_file", "pg_name", "collective_seq_id")
_SIGNATURES = ("sig", "op_sig", "in_sig", "out_sig", "dtype_sig")

# The fr_entries columns a fold reads.
ENTRY_COLUMNS = (
    "source_file",
    "source_line",
    "pg_name",
    "pg_desc",
    "collective_seq_id",
    "record_id",
    "is_p2p",
    "op",
    "profiling_name",
    "backend",
    "state",
    "retired",
    "input_sizes",
    "output_sizes",
    "input_numel",
    "output_numel",
    "input_dtypes",
    "output_dtypes",
    "time_created_ns",
    "time_started_ns",
    "time_completed_ns",
    "duration_ms",
    "timeout_ms",
    "call_stack_id",
    "call_site",
)


def calls_table(entries: pa.Table) -> pa.Table:
    """The ``fr_calls`` rows of ``entries`` (whole dumps), without ``rank`` and ``group_key``."""
    frame = pl.from_arrow(entries.select(list(ENTRY_COLUMNS)), rechunk=True)
    assert isinstance(frame, pl.DataFrame)
    folded = fold_calls(frame)
    return conform("fr_calls", folded.to_arrow())


def fold_calls(entries: pl.DataFrame) -> pl.DataFrame:
    """One row per ``FILE_KEYS`` for collectives, in order of each call's first entry.

    Entries are in record order within each dump (oldest first), so no sort is needed. Most
    calls are one entry (only coalesced ops have several): those are projected row by row and
    only the rest go through a group-by.
    """
    wrapped = (pl.col("record_id").min().over("source_file") > 0).fill_null(False).alias("wrapped")
    per_entry = (
        _entry_signals(entries.with_columns(wrapped, pl.col("op").cast(pl.String)))
        .filter(~pl.col("is_p2p").fill_null(False))
        .with_row_index("_row")
    )
    several = _repeated_rows(per_entry)
    if several.len() == 0:
        return _with_partial(per_entry.select(*FILE_KEYS, *_call_aggregations(single=True)))
    marked = per_entry.with_columns(pl.col("_row").is_in(several.implode()).alias("_several"))
    singles = marked.filter(~pl.col("_several")).select(
        *FILE_KEYS, *_call_aggregations(single=True), pl.col("_row")
    )
    multiples = (
        marked.filter(pl.col("_several"))
        .group_by(*FILE_KEYS, maintain_order=True)
        .agg(*_call_aggregations(single=False), pl.col("_row").first())
        .with_columns(pl.col(c).hash() for c in _SIGNATURES)
    )
    return _with_partial(pl.concat([singles, multiples], how="vertical").sort("_row").drop("_row"))


def _with_partial(calls: pl.DataFrame) -> pl.DataFrame:
    # The oldest sequence number of a wrapped buffer may be cut in the middle of a coalesced
    # group: it is kept for progress but not compared.
    oldest = pl.col("collective_seq_id") == pl.col("collective_seq_id").min().over("source_file", "pg_name")
    return calls.with_columns((pl.col("wrapped") & oldest).fill_null(False).alias("partial"))


def attach_keys(calls: pa.Table, keys: pl.DataFrame) -> pa.Table:
    """``calls`` with ``rank`` and ``group_key`` from ``keys`` (per source_file and pg_name).

    ``keys`` holds (source_file, pg_name, rank, group_key) rows, one value per (source_file,
    pg_name). Calls whose rank or group is unknown are dropped: they cannot be aligned with
    other ranks. Only the two key columns are computed; the other columns are not copied.
    """
    file_and_name = pair_code(text_code("source_file"), text_code("pg_name"))
    lookup = keys.select(file_and_name.alias("code"), "rank", pl.col("group_key").cast(pl.String)).unique(
        subset="code", keep="first", maintain_order=True
    )
    pairs = pl.from_arrow(calls.select(["source_file", "pg_name"]), rechunk=False)
    assert isinstance(pairs, pl.DataFrame)
    codes = pairs.select(file_and_name).to_series()
    ranks = codes.replace_strict(lookup["code"], lookup["rank"], default=None, return_dtype=pl.Int32)
    group_keys = text_at(codes, lookup["code"], lookup["group_key"])
    table = replace_column(replace_column(calls, "rank", ranks.to_arrow()), "group_key", group_keys)
    if ranks.null_count() or group_keys.null_count:
        table = table.filter(pc.and_(ranks.is_not_null().to_arrow(), group_keys.is_valid()))
    return table


def run_start(*columns: str) -> pl.Expr:
    """True at the first row of each run of equal ``columns`` (null equal to null).

    A dump's rows are contiguous, so over columns constant within a dump (file, rank, host)
    the run starts are one row per dump and hold every first occurrence of every key, in
    order: a ``unique(maintain_order=True)`` over them equals one over all rows, without
    hashing millions of them.
    """
    return pl.any_horizontal(
        pl.int_range(pl.len()) == 0, *(pl.col(c).ne_missing(pl.col(c).shift(1)) for c in columns)
    )


def text_code(column: str) -> pl.Expr:
    """A text column as its categorical code.

    Every categorical column shares the codes (the same text has the same code in every frame),
    so codes from two frames agree.
    """
    return pl.col(column).cast(pl.Categorical).to_physical().cast(pl.UInt64)


def pair_code(first: pl.Expr, second: pl.Expr) -> pl.Expr:
    """Two 32-bit unsigned codes as one integer (null with either)."""
    return first * (1 << 32) + second


def text_at(codes: pl.Series, known: pl.Series, texts: pl.Series) -> pa.DictionaryArray:
    """The text of ``texts`` at each of ``codes``' place in ``known`` (null where absent).

    Built as codes into the few distinct texts: no string per row of ``codes``.
    """
    names = texts.drop_nulls().unique(maintain_order=True)
    index = texts.replace_strict(names, pl.int_range(names.len(), dtype=pl.Int32, eager=True), default=None)
    picked = codes.replace_strict(known, index, default=None, return_dtype=pl.Int32)
    return pa.DictionaryArray.from_arrays(picked.to_arrow(), names.to_arrow().cast(pa.string()))


def _any_text(column: str) -> pl.Expr:
    """The list of strings in ``column`` holds a non-empty one (null for a null list)."""
    return pl.col(column).list.eval(pl.element().str.len_bytes() > 0).list.any()


def _done_expr() -> pl.Expr:
    # gloo never marks an entry completed: retired is its completion signal. Elsewhere a retired
    # entry that is not completed failed or timed out, so it is not "done".
    return (pl.col("state") == "completed").fill_null(False) | (
        pl.col("retired").fill_null(False) & (pl.col("backend") == "gloo").fill_null(False)
    )


def _entry_signals(entries: pl.DataFrame) -> pl.DataFrame:
    """Per entry: op kind, signature hashes, size-relation facts, done.

    Signatures are hashed on every entry, then the nested size and dtype lists are dropped
    before the filter and the folding, so they are never copied.
    """
    kind = pl.col("_kind")
    ignore_in = kind.is_in([_ALL_TO_ALL, _UNEVEN, _SCATTER])
    ignore_out = kind.is_in([_ALL_TO_ALL, _UNEVEN, _GATHER])
    # all_gather: output = input x group size; reduce_scatter: input = output x group size.
    gathers = (kind == _ALL_GATHER) & (pl.col("input_numel") > 0)
    scatters = (kind == _REDUCE_SCATTER) & (pl.col("output_numel") > 0)
    part = pl.when(gathers).then(pl.col("input_numel")).when(scatters).then(pl.col("output_numel"))
    whole = pl.when(gathers).then(pl.col("output_numel")).when(scatters).then(pl.col("input_numel"))
    return (
        entries.with_columns(
            pl.col("op")
            .fill_null("")
            .replace_strict(_OP_KIND, default=_OTHER, return_dtype=pl.UInt8)
            .alias("_kind"),
            pl.col("input_sizes").hash().alias("_in_raw"),
            pl.col("output_sizes").hash().alias("_out_raw"),
        )
        .with_columns(
            _done_expr().alias("done"),
            pl.when(ignore_in)
            .then(pl.lit(None, dtype=pl.UInt64))
            .otherwise(pl.col("_in_raw"))
            .alias("_in_h"),
            pl.when(ignore_out)
            .then(pl.lit(None, dtype=pl.UInt64))
            .otherwise(pl.col("_out_raw"))
            .alias("_out_h"),
            # Empty tensors (non-root gather/scatter: [] or [""]) carry no dtype to compare.
            pl.when((kind != _SCATTER) & _any_text("input_dtypes"))
            .then(pl.col("input_dtypes").hash())
            .otherwise(pl.lit(None, dtype=pl.UInt64))
            .alias("_in_dt"),
            pl.when((kind != _GATHER) & _any_text("output_dtypes"))
            .then(pl.col("output_dtypes").hash())
            .otherwise(pl.lit(None, dtype=pl.UInt64))
            .alias("_out_dt"),
            part.alias("_part"),
            whole.alias("_whole"),
        )
        .with_columns(
            # An op that disagrees with itself whatever its group's size.
            (
                ((kind == _ALL_REDUCE) & (pl.col("_in_raw") != pl.col("_out_raw")))
                | (pl.col("_whole") % pl.col("_part") != 0)
            )
            .fill_null(False)
            .alias("_shape_bad"),
            pl.when(pl.col("_whole") % pl.col("_part") == 0)
            .then(pl.col("_whole") // pl.col("_part"))
            .alias("_ratio"),
            pl.struct("op", "_in_h", "_out_h", "_in_dt", "_out_dt").hash().alias("_sig_e"),
        )
        .drop(
            "input_sizes",
            "output_sizes",
            "input_dtypes",
            "output_dtypes",
            "_kind",
            "_in_raw",
            "_out_raw",
            "_part",
            "_whole",
        )
    )


def _call_aggregations(single: bool) -> list[pl.Expr]:
    """How the entries of one call fold into one row.

    ``single=True`` gives the same values for a call made of one entry, as plain row
    expressions: folding millions of one-entry calls through a group-by (lists of one element,
    first/min/max of one value) costs seconds at a thousand ranks for nothing.
    """

    def signature(expr: pl.Expr) -> pl.Expr:
        # Several entries are hashed as one list, in record order, after the group-by
        # (``fold_calls``); a list never hashes like a single value, so a coalesced call never
        # matches a plain one.
        return expr.hash() if single else expr

    def folded(expr: pl.Expr, how: str) -> pl.Expr:
        return expr if single else getattr(expr, how)()

    retired_not_completed = pl.col("retired").fill_null(False) & (pl.col("state") != "completed").fill_null(
        True
    )
    return [
        folded(pl.col("source_line"), "first").alias("source_line"),
        folded(pl.col("pg_desc"), "first").alias("pg_desc"),
        (pl.col("op").fill_null("") if single else pl.col("op").str.join("+")).alias("ops"),
        folded(pl.col("profiling_name"), "first").alias("profiling_name"),
        folded(pl.col("backend"), "first").alias("backend"),
        folded(pl.col("record_id"), "first").alias("record_id"),
        signature(pl.col("_sig_e")).alias("sig"),
        signature(pl.col("op")).alias("op_sig"),
        signature(pl.col("_in_h")).alias("in_sig"),
        signature(pl.col("_out_h")).alias("out_sig"),
        signature(pl.struct("_in_dt", "_out_dt").hash()).alias("dtype_sig"),
        folded(pl.col("_shape_bad"), "any").alias("shape_bad"),
        folded(pl.col("_ratio"), "min").alias("numel_ratio_min"),
        folded(pl.col("_ratio"), "max").alias("numel_ratio_max"),
        folded(pl.col("done"), "any").alias("done"),
        folded(retired_not_completed, "any").alias("retired_not_completed"),
        folded(pl.col("state"), "last").alias("state"),
        folded(pl.col("time_created_ns"), "min").alias("created_ns"),
        folded(pl.col("time_started_ns"), "min").alias("started_ns"),
        folded(pl.col("time_completed_ns"), "max").alias("completed_ns"),
        folded(pl.col("duration_ms"), "max").alias("duration_ms"),
        folded(pl.col("timeout_ms"), "max").alias("timeout_ms"),
        (pl.col("input_numel").fill_null(0) if single else pl.col("input_numel").sum()).alias("input_numel"),
        (pl.col("output_numel").fill_null(0) if single else pl.col("output_numel").sum()).alias(
            "output_numel"
        ),
        (pl.col("call_stack_id") if single else pl.col("call_stack_id").drop_nulls().first()).alias(
            "call_stack_id"
        ),
        (pl.col("call_site") if single else pl.col("call_site").drop_nulls().first()).alias("call_site"),
        folded(pl.col("wrapped"), "first").alias("wrapped"),
    ]


def _repeated_rows(indexed: pl.DataFrame) -> pl.Series:
    """``_row`` of every entry whose call key another entry shares.

    Sorting the keys' hashes finds the few repeated ones far faster than a hash-table pass over
    millions of entries; only entries with a repeated hash are then compared by their keys, so
    a hash collision costs time, never a wrong fold.
    """
    hashes = indexed.select(pl.struct(*FILE_KEYS).hash()).to_series()
    ordered = hashes.sort()
    repeated = ordered.filter(ordered == ordered.shift(1))
    if repeated.len() == 0:
        return pl.Series("_row", [], dtype=pl.UInt32)
    candidates = indexed.filter(hashes.is_in(repeated.unique().implode()))
    return candidates.filter(pl.struct(*FILE_KEYS).is_duplicated())["_row"]
