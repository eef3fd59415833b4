"""Shared flight-recorder analysis: ranks aligned by (group, sequence number), per-group progress.

Every collective detector reads the same derived frames, computed once per ``Tables`` with Polars:

* ``calls``: one row per (group, collective_seq_id, rank) for collectives (p2p excluded: they do
  not advance ``collective_seq_id``); coalesced members of one sequence number are folded into
  one call (ops joined with ``+``) so pre-2.7 and 2.7+ layouts compare alike;
* ``progress``: per (group, rank) the last enqueued and last completed sequence numbers, from the
  entries and from ``pg_status`` (gloo never marks entries completed: ``retired`` and
  ``pg_status`` are its only completion signals);
* ``groups``: members, desc and how membership was known.

Ranks are never aligned by ``record_id`` (a per-process counter that wraps and resets).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa

from .report import Evidence, excerpt
from .tables import Tables

DEFAULT_PG = "0"
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


@dataclass(frozen=True)
class Group:
    """One process group: name plus member set."""

    key: str
    name: str
    desc: str | None
    members: tuple[int, ...]
    source: str
    dumped: tuple[int, ...]

    @property
    def label(self) -> str:
        """``name:desc`` as torch prints it."""
        return f"{self.name}:{self.desc}" if self.desc else self.name

    @property
    def missing_dumps(self) -> tuple[int, ...]:
        """Members that left no dump."""
        dumped = set(self.dumped)
        return tuple(r for r in self.members if r not in dumped)


@dataclass
class FrView:
    """Derived flight-recorder frames shared by the detectors."""

    entries: pl.DataFrame
    calls: pl.DataFrame
    progress: pl.DataFrame
    groups: dict[str, Group]
    dumped: tuple[int, ...]
    hosts: dict[int, str | None]
    ref_ts_ns: int | None
    has_timing: bool
    has_frames: bool
    stacks: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    _progress_map: dict[tuple[str, int], tuple[int | None, int | None]] = field(default_factory=dict)
    _rows_at: dict[tuple[str, int], dict[int, dict[str, Any]]] = field(default_factory=dict)

    def progress_of(self, key: str, rank: int) -> tuple[int | None, int | None]:
        """(last enqueued, last completed) sequence number of ``rank`` in group ``key``."""
        if not self._progress_map and self.progress.height:
            self._progress_map = {
                (g, r): (e, c)
                for g, r, e, c in self.progress.select("group_key", "rank", "enq", "comp").iter_rows()
            }
        return self._progress_map.get((key, rank), (None, None))


_CACHE_ATTR = "_tracecore_fr_view"


def fr_view(tables: Tables) -> FrView | None:
    """The shared view of the incident's flight-recorder tables, or None when there are none.

    Computed once per ``Tables`` object (cached on it: the tables are immutable).
    """
    cached: FrView | bool | None = getattr(tables, _CACHE_ATTR, False)
    if cached is not False:
        return cached if isinstance(cached, FrView) else None
    view = _build(tables) if tables.has("fr_entries") or tables.has("fr_status") else None
    setattr(tables, _CACHE_ATTR, view)
    return view


def _done_expr() -> pl.Expr:
    # gloo never marks an entry completed: retired is its completion signal. Elsewhere a retired
    # entry that is not completed failed or timed out, so it is not "done".
    return (pl.col("state") == "completed").fill_null(False) | (
        pl.col("retired").fill_null(False) & (pl.col("backend") == "gloo").fill_null(False)
    )


def _any_text(column: str) -> pl.Expr:
    """The list of strings in ``column`` holds a non-empty one (null for a null list)."""
    return pl.col(column).list.eval(pl.element().str.len_bytes() > 0).list.any()


def _relation_bad(part: str, whole: str) -> pl.Expr:
    """``whole`` numel is not ``part`` numel x group size (all_gather out/in, reduce_scatter in/out).

    With an exact member list the size is the group's; otherwise the entry implies it, and only
    a ratio that is not a whole number or is below the known member count is wrong.
    """
    exact = pl.col(part) * pl.col("_size") != pl.col(whole)
    implied = (pl.col(whole) % pl.col(part) != 0) | (pl.col(whole) < pl.col(part) * pl.col("_size"))
    return pl.when(pl.col("_exact").fill_null(True)).then(exact).otherwise(implied)


# Columns no flight-recorder detector reads: left out of the view so millions of entries do not
# carry them through Polars (config-drift reads comm_lib_version from the table itself).
_NOT_IN_VIEW = frozenset(
    ("thread_name", "thread_id", "dump_format", "dump_version", "comm_lib_version", "ts_ns", "pg_id", "op_id")
)

# fr_entries' strings are dictionary-encoded (Categorical in Polars, 4 bytes per entry); the view
# keeps them so, except the ones it joins with other tables' text or folds as text.
_TEXT_IN_VIEW = ("group_key", "op")
_CALL_KEYS = ("group_key", "collective_seq_id", "rank")
_SHAPE_COLUMNS = ("input_sizes", "output_sizes", "input_dtypes", "output_dtypes")
_SIGNATURES = ("sig", "op_sig", "in_sig", "out_sig", "dtype_sig")


def _call_aggregations(single: bool) -> list[pl.Expr]:
    """How the entries of one (group, seq, rank) fold into one call.

    ``single=True`` gives the same values for a call made of one entry, as plain row
    expressions: folding millions of one-entry calls through a group-by (lists of one element,
    first/min/max of one value) costs several seconds at a thousand ranks for nothing.
    """

    def signature(expr: pl.Expr) -> pl.Expr:
        # Several entries are hashed as one list, in record order, after the group-by
        # (``_fold_calls``); a list never hashes like a single value, so a coalesced call never
        # matches a plain one.
        return expr.hash() if single else expr

    def folded(expr: pl.Expr, how: str) -> pl.Expr:
        return expr if single else getattr(expr, how)()

    retired_not_completed = pl.col("retired").fill_null(False) & (pl.col("state") != "completed").fill_null(
        True
    )
    return [
        (pl.col("op").fill_null("") if single else pl.col("op").str.join("+")).alias("ops"),
        folded(pl.col("profiling_name"), "first").alias("profiling_name"),
        signature(pl.col("_sig_e")).alias("sig"),
        signature(pl.col("op")).alias("op_sig"),
        signature(pl.col("_in_h")).alias("in_sig"),
        signature(pl.col("_out_h")).alias("out_sig"),
        signature(pl.struct("_in_dt", "_out_dt").hash()).alias("dtype_sig"),
        folded(pl.col("_syntax_bad"), "any").alias("syntax_bad"),
        folded(pl.col("done"), "any").alias("done"),
        folded(retired_not_completed, "any").alias("retired_not_completed"),
        folded(pl.col("state"), "last").alias("state"),
        folded(pl.col("time_created_ns"), "min").alias("created_ns"),
        folded(pl.col("time_started_ns"), "min").alias("started_ns"),
        folded(pl.col("time_completed_ns"), "max").alias("completed_ns"),
        folded(pl.col("duration_ms"), "max").alias("duration_ms"),
        folded(pl.col("timeout_ms"), "max").alias("timeout_ms"),
        folded(pl.col("record_id"), "first").alias("record_id"),
        (pl.col("input_numel").fill_null(0) if single else pl.col("input_numel").sum()).alias("input_numel"),
        (pl.col("output_numel").fill_null(0) if single else pl.col("output_numel").sum()).alias(
            "output_numel"
        ),
        (pl.col("call_stack_id") if single else pl.col("call_stack_id").drop_nulls().first()).alias(
            "call_stack_id"
        ),
        (pl.col("call_site") if single else pl.col("call_site").drop_nulls().first()).alias("call_site"),
        *(
            folded(pl.col(c), "first").alias(c)
            for c in ("source_file", "source_line", "backend", "pg_name", "pg_desc")
        ),
    ]


def _fold_calls(coll: pl.DataFrame) -> pl.DataFrame:
    """One row per (group, seq, rank), in order of each call's first entry.

    Entries are already in record order within each dump (oldest first), and a (group, seq,
    rank) comes from one dump, so no sort is needed. Most calls are one entry (only coalesced
    ops have several): those are projected row by row and only the rest go through a group-by.
    """
    indexed = coll.with_row_index("_row")
    several = _repeated_rows(indexed)
    if several.len() == 0:
        return indexed.select(*_CALL_KEYS, *_call_aggregations(single=True))
    marked = indexed.with_columns(pl.col("_row").is_in(several.implode()).alias("_several"))
    singles = marked.filter(~pl.col("_several")).select(
        *_CALL_KEYS, *_call_aggregations(single=True), pl.col("_row")
    )
    multiples = (
        marked.filter(pl.col("_several"))
        .group_by(*_CALL_KEYS, maintain_order=True)
        .agg(*_call_aggregations(single=False), pl.col("_row").first())
        .with_columns(pl.col(c).hash() for c in _SIGNATURES)
    )
    return pl.concat([singles, multiples], how="vertical").sort("_row").drop("_row")


def _repeated_rows(indexed: pl.DataFrame) -> pl.Series:
    """``_row`` of every entry whose (group, seq, rank) another entry shares.

    Sorting the keys' hashes finds the few repeated ones far faster than a hash-table pass over
    millions of entries; only entries with a repeated hash are then compared by their keys, so
    a hash collision costs time, never a wrong fold.
    """
    hashes = indexed.select(pl.struct(*_CALL_KEYS).hash()).to_series()
    ordered = hashes.sort()
    repeated = ordered.filter(ordered == ordered.shift(1))
    if repeated.len() == 0:
        return pl.Series("_row", [], dtype=pl.UInt32)
    candidates = indexed.filter(hashes.is_in(repeated.unique().implode()))
    return candidates.filter(pl.struct(*_CALL_KEYS).is_duplicated())["_row"]


def _view_frame(table: pa.Table, tables: Tables) -> pl.DataFrame:
    """The entries the view works on: no unread columns; strings categorical but ``_TEXT_IN_VIEW``."""
    names = [c for c in table.column_names if c not in _NOT_IN_VIEW]
    frame = tables.df("fr_entries", names)
    as_text = [c for c in _TEXT_IN_VIEW if c in frame.columns]
    return frame.with_columns(pl.col(*as_text).cast(pl.String)) if as_text else frame


def _build(tables: Tables) -> FrView:
    raw = _view_frame(tables["fr_entries"], tables)
    groups: dict[str, Group] = {}
    if tables.has("fr_groups"):
        for key, name, desc, ranks, source, dumped in (
            tables.df("fr_groups")
            .select("group_key", "pg_name", "pg_desc", "ranks", "membership_source", "dumped_ranks")
            .iter_rows()
        ):
            if key is None:
                continue
            groups[key] = Group(key, name, desc, tuple(ranks or ()), source or "", tuple(dumped or ()))
    # (no copy of the big table when every entry has its rank, the usual case)
    entries = raw.filter(pl.col("rank").is_not_null()) if raw["rank"].null_count() else raw
    dumped = tuple(sorted(set(entries["rank"].unique().to_list())))
    if tables.has("fr_status"):
        dumped = tuple(
            sorted(set(dumped) | set(tables.df("fr_status")["rank"].drop_nulls().unique().to_list()))
        )
    hosts = {
        int(r): h
        for r, h in entries.select("rank", "host").unique(subset="rank", keep="first").iter_rows()
        if r is not None
    }
    # Frames are not needed for the per-call folding (only call_stack_id / call_site): project
    # them away first so filters and group-bys never move the nested stacks.
    # Only the columns the per-call folding reads: filters and joins then never move the others
    # (thread names, versions, hosts ... of millions of entries).
    work_columns = [
        c
        for c in (
            "group_key",
            "collective_seq_id",
            "rank",
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
            "source_file",
            "source_line",
            "pg_name",
            "pg_desc",
        )
        if c in entries.columns
    ]
    # A group whose membership was inferred from the entries, or with members that left no dump,
    # may be larger than its known member list: its size relations then use the size the
    # entries themselves imply (output/input numel ratio), which must be a whole multiple and
    # at least the known member count. Size and exactness go in one lookup (size x 2 + exact):
    # a string lookup over millions of entries costs more than the arithmetic.
    size_code = {
        key: len(g.members) * 2 + int(g.source != "inferred" and not g.missing_dumps)
        for key, g in groups.items()
    }
    kind = pl.col("_kind")
    ignore_in = kind.is_in([_ALL_TO_ALL, _UNEVEN, _SCATTER])
    ignore_out = kind.is_in([_ALL_TO_ALL, _UNEVEN, _GATHER])
    # Signatures are hashed on every entry first, then the nested size and dtype lists are dropped
    # before the filter and the folding, so they are never copied (detectors that report them
    # read them from the entries: ``shape_details``).
    coll = (
        entries.select(work_columns)
        .with_columns(
            pl.col("op")
            .fill_null("")
            .replace_strict(_OP_KIND, default=_OTHER, return_dtype=pl.UInt8)
            .alias("_kind"),
            pl.col("group_key")
            .replace_strict(size_code, default=None, return_dtype=pl.Int64)
            .alias("_size_code"),
            pl.col("input_sizes").hash().alias("_in_raw"),
            pl.col("output_sizes").hash().alias("_out_raw"),
        )
        .with_columns(
            (pl.col("_size_code") // 2).alias("_size"),
            (pl.col("_size_code") % 2 == 1).alias("_exact"),
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
            # Per-rank size relations (an op that disagrees with itself).
            (
                ((kind == _ALL_REDUCE) & (pl.col("_in_raw") != pl.col("_out_raw")))
                | (
                    (kind == _ALL_GATHER)
                    & _relation_bad("input_numel", "output_numel")
                    & (pl.col("input_numel") > 0)
                )
                | (
                    (kind == _REDUCE_SCATTER)
                    & _relation_bad("output_numel", "input_numel")
                    & (pl.col("output_numel") > 0)
                )
            )
            .fill_null(False)
            .alias("_syntax_bad"),
        )
    )
    coll = (
        coll.with_columns(pl.struct("op", "_in_h", "_out_h", "_in_dt", "_out_dt").hash().alias("_sig_e"))
        .drop(*_SHAPE_COLUMNS, "_kind", "_size_code", "_in_raw", "_out_raw", "_size", "_exact", strict=False)
        .filter(~pl.col("is_p2p").fill_null(False) & pl.col("group_key").is_not_null())
    )
    # A dump whose oldest record id is not 0 has wrapped its ring buffer (lost older entries).
    wrapped_ranks = (
        entries.select("rank", "record_id")
        .group_by("rank")
        .agg(pl.col("record_id").min())
        .filter(pl.col("record_id") > 0)["rank"]
    )
    calls = _fold_calls(coll).with_columns(pl.col("rank").is_in(wrapped_ranks.implode()).alias("wrapped"))
    # The oldest sequence number of a wrapped buffer may be cut in the middle of a coalesced
    # group: it is kept for progress but not compared.
    calls = calls.with_columns(
        (
            pl.col("wrapped").fill_null(False)
            & (pl.col("collective_seq_id") == pl.col("collective_seq_id").min().over("group_key", "rank"))
        ).alias("partial")
    )
    per_rank = calls.group_by("group_key", "rank").agg(
        pl.col("collective_seq_id").max().alias("enq_e"),
        pl.col("collective_seq_id").filter(pl.col("done")).max().alias("comp_e"),
    )
    if tables.has("fr_status"):
        status = (
            tables.df("fr_status")
            .filter(pl.col("group_key").is_not_null() & pl.col("rank").is_not_null())
            .group_by("group_key", "rank")
            .agg(pl.col("last_enqueued").max().alias("enq_s"), pl.col("last_completed").max().alias("comp_s"))
        )
        progress = per_rank.join(status, on=["group_key", "rank"], how="full", coalesce=True)
    else:
        progress = per_rank.with_columns(
            pl.lit(None, dtype=pl.Int64).alias("enq_s"), pl.lit(None, dtype=pl.Int64).alias("comp_s")
        )
    progress = progress.with_columns(
        pl.max_horizontal("enq_e", "enq_s").alias("enq"),
        pl.max_horizontal("comp_e", "comp_s").alias("comp"),
    )
    stamps = [
        entries[c].max()
        for c in ("time_created_ns", "time_started_ns", "time_completed_ns")
        if c in entries.columns and entries.height
    ]
    known = [v for s in stamps if (v := as_int(s)) is not None]
    ref_ts = max(known) if known else None
    has_timing = bool(entries.height) and (
        entries["duration_ms"].null_count() < entries.height
        or entries["time_started_ns"].null_count() < entries.height
    )
    has_frames = bool(entries.height) and entries["stack_id"].null_count() < entries.height
    # Distinct stacks only (shared by all ranks): small, read once into a dict.
    stacks: dict[int, list[dict[str, Any]]] = {}
    if has_frames and tables.has("fr_stacks"):
        for stack_id, frames in tables.df("fr_stacks").select("stack_id", "frames").iter_rows():
            if stack_id is not None:
                stacks[int(stack_id)] = frames or []
    return FrView(entries, calls, progress, groups, dumped, hosts, ref_ts, has_timing, has_frames, stacks)


def shape_details(view: FrView, calls: pl.DataFrame) -> pl.DataFrame:
    """``calls`` with the tensor sizes and dtypes of each call's first entry (from the entries).

    The calls frame carries only their hashes; detectors that report the values themselves
    fetch them for the few calls they report.
    """
    present = [c for c in _SHAPE_COLUMNS if c in view.entries.columns]
    keys = [*_CALL_KEYS, "record_id"]
    wanted = calls.select(keys).unique()
    shapes = view.entries.select(*keys, *present).join(wanted, on=keys, how="semi").unique(subset=keys)
    return calls.join(shapes, on=keys, how="left", nulls_equal=True, maintain_order="left")


def as_int(value: Any) -> int | None:
    """A Polars scalar as int (None when null or not a number)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    return None


# -- helpers for verdicts ---------------------------------------------------------------------


def frames_text(frames: Any, limit: int = 8) -> list[str]:
    """Frames as ``name at file:line`` lines, innermost first."""
    lines: list[str] = []
    for frame in list(frames or [])[:limit]:
        if isinstance(frame, dict):
            lines.append(f"{frame.get('name')} at {frame.get('filename')}:{frame.get('line')}")
    return lines


def entry_row(view: FrView, rank: int, key: str, seq: int) -> dict[str, Any] | None:
    """The first entry of ``rank`` at (group, seq), as a dict (frames included).

    All ranks' rows of one (group, seq) are fetched with one filter and cached on the view, so
    asking for every waiting rank of a 1024-rank group scans the table once.
    """
    cached = view._rows_at.get((key, seq))
    if cached is None:
        rows = view.entries.filter(
            (pl.col("group_key") == key)
            & (pl.col("collective_seq_id") == seq)
            & ~pl.col("is_p2p").fill_null(False)
        ).sort("rank", "record_id")
        cached = {}
        for row in rows.iter_rows(named=True):
            if int(row["rank"]) not in cached:
                cached[int(row["rank"])] = with_frames(view, row)
        view._rows_at[(key, seq)] = cached
    return cached.get(rank)


def with_frames(view: FrView, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its ``frames`` (from fr_stacks by ``stack_id``; None when it has none)."""
    stack_id = row.get("stack_id")
    row["frames"] = view.stacks.get(int(stack_id)) if stack_id is not None else None
    return row


def last_entry(view: FrView, rank: int) -> dict[str, Any] | None:
    """The newest entry of ``rank`` (highest record id of its dump)."""
    rows = view.entries.filter(pl.col("rank") == rank).sort("record_id")
    return with_frames(view, rows.row(rows.height - 1, named=True)) if rows.height else None


def describe_entry(row: dict[str, Any]) -> str:
    """One-line description of an entry for evidence."""
    group = f"{row.get('pg_name')}:{row.get('pg_desc')}"
    status = row.get("state") or "?"
    retired = "retired" if row.get("retired") else "not retired"
    return (
        f"rank {row.get('rank')}: {row.get('profiling_name')} seq {row.get('collective_seq_id')} group {group} "
        f"in={row.get('input_sizes')} out={row.get('output_sizes')} {row.get('input_dtypes')} {status}, {retired}"
    )


def evidence_for(row: dict[str, Any], text: str | None = None) -> Evidence:
    """Evidence citing one flight-recorder entry (file and entry position)."""
    line = row.get("source_line")
    return Evidence(
        source="flight_recorder",
        file=str(row.get("source_file") or ""),
        line=int(line) if line is not None else None,
        excerpt=excerpt(text if text is not None else describe_entry(row)),
    )


def host_span(view: FrView, ranks: list[int]) -> tuple[list[str], str | None]:
    """(hosts of ``ranks``, "intra-node" / "cross-node" / None when hosts are unknown)."""
    hosts = sorted({h for r in ranks if (h := view.hosts.get(r))})
    if not hosts or any(view.hosts.get(r) is None for r in ranks if r in view.hosts):
        return hosts, None if not hosts else ("cross-node" if len(hosts) > 1 else None)
    return hosts, "intra-node" if len(hosts) == 1 else "cross-node"


def majority(values: dict[int, Any]) -> tuple[Any, list[int], list[int], bool]:
    """(majority value, ranks holding it, the other ranks, whether the majority is strict).

    Ties have no strict majority; then the value held by the most ranks, lowest rank first, is
    returned with ``strict`` False so callers can say so instead of blaming file order.
    """
    counts = Counter(values.values())
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], min(r for r, v in values.items() if v == kv[0])))
    best, best_count = ordered[0]
    strict = len(ordered) == 1 or ordered[1][1] < best_count
    holders = sorted(r for r, v in values.items() if v == best)
    others = sorted(r for r, v in values.items() if v != best)
    return best, holders, others, strict


# -- pending collectives per group ------------------------------------------------------------


@dataclass
class Pending:
    """The lowest sequence number of a group that is not completed on all members."""

    group: Group
    seq: int
    waiting: list[int]
    absent: list[int]
    no_dump: list[int]
    finished: list[int]
    behind: dict[int, int | None]
    no_record: list[int]
    inferred_culprits: bool = False

    @property
    def culprits(self) -> list[int]:
        """Members proven (by their own dump) never to have enqueued the collective.

        Members that left no dump are only unknown: they become the culprits when no dumped
        member explains the hang (every dumped member reached the collective).
        """
        return sorted(self.absent) if self.absent else sorted(self.no_dump)

    @property
    def unknown(self) -> list[int]:
        """Members without a dump that are not culprits (what they did cannot be known)."""
        return sorted(set(self.no_dump) - set(self.culprits))


def _floor(value: int | None) -> int:
    """Sequence numbers start at 1; None and -1 (pg_status "none") both mean 0."""
    return value if value is not None and value > 0 else 0


def pending_collectives(view: FrView) -> list[Pending]:
    """Per group, the lowest sequence number some member waits in, with who never reached it."""
    dumped = set(view.dumped)
    result: list[Pending] = []
    for key, group in sorted(view.groups.items()):
        members = list(group.members)
        progress = {r: view.progress_of(key, r) for r in members if r in dumped}
        waiting_seqs = [_floor(c) + 1 for r, (e, c) in progress.items() if _floor(e) > _floor(c)]
        if not waiting_seqs:
            continue
        seq = min(waiting_seqs)
        waiting: list[int] = []
        absent: list[int] = []
        finished: list[int] = []
        behind: dict[int, int | None] = {}
        no_record: list[int] = []
        for rank, (enq, comp) in sorted(progress.items()):
            done = _floor(comp)
            last = _floor(enq)
            if enq is None and comp is None:
                no_record.append(rank)
            if done >= seq:
                finished.append(rank)
            elif last >= seq:
                waiting.append(rank)
            else:
                absent.append(rank)
                behind[rank] = seq - last
        no_dump = [r for r in members if r not in dumped]
        for rank in no_dump:
            behind[rank] = None
        result.append(Pending(group, seq, waiting, absent, no_dump, finished, behind, no_record))
    return result


def signatures_agree(view: FrView, key: str, seq: int) -> bool:
    """True when every rank's call at (group, seq) has the same op/sizes/dtypes signature."""
    rows = view.calls.filter((pl.col("group_key") == key) & (pl.col("collective_seq_id") == seq))
    return rows["sig"].n_unique() <= 1 and not bool(rows["syntax_bad"].any())
