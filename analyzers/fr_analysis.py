"""Shared flight-recorder analysis: ranks aligned by (group, sequence number), per-group progress.

Every collective detector reads the same derived frames, computed once per ``Tables`` with Polars:

* ``calls``: one row per (group, collective_seq_id, rank) for collectives, from ``fr_calls``
  (folded at ingest, ``analyzers/ingest/fr_calls.py``), with the size relations that need the
  group's size (``syntax_bad``) and ``partial`` (the cut oldest call of a wrapped buffer);
* ``progress``: per (group, rank) the last enqueued and last completed sequence numbers, from the
  entries and from ``pg_status`` (gloo never marks entries completed: ``retired`` and
  ``pg_status`` are its only completion signals);
* ``groups``: members, desc and how membership was known.

Ranks are never aligned by ``record_id`` (a per-process counter that wraps and resets).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from .ingest.fr_calls import ENTRY_COLUMNS, attach_keys, fold_calls, run_start
from .report import Evidence, excerpt
from .tables import Tables, chunked_like, conform

DEFAULT_PG = "0"


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
    """Derived flight-recorder frames shared by the detectors.

    The entries themselves stay in Arrow (``table``): the detectors compare calls, and read
    entries only where a verdict cites them, located through ``runs``.
    """

    table: pa.Table
    runs: pl.DataFrame
    calls: pl.DataFrame
    calls_table: pa.Table
    progress: pl.DataFrame
    groups: dict[str, Group]
    dumped: tuple[int, ...]
    hosts: dict[int, str | None]
    ref_ts_ns: int | None
    has_timing: bool
    has_frames: bool
    stacks: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    _progress_map: dict[tuple[str, int], tuple[int | None, int | None]] = field(default_factory=dict)
    _rows_at: dict[tuple[str, int], pl.DataFrame] = field(default_factory=dict)
    _full_rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    _runs_by_file: dict[str, list[tuple[int, int, int | None, bool]]] = field(default_factory=dict)

    @property
    def entry_count(self) -> int:
        """Number of entries (every dump's, ranked or not)."""
        return self.table.num_rows

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


# Tensor sizes and dtypes: read only for the calls a verdict reports (the calls carry hashes).
_SHAPE_COLUMNS = ("input_sizes", "output_sizes", "input_dtypes", "output_dtypes")


def _dump_runs(table: pa.Table) -> pl.DataFrame:
    """One row per run of consecutive entries from one dump: where its rows are, whose they are.

    ``start``/``count`` are its rows in ``table``; ``first_line`` its first entry's
    ``source_line``, and ``dense`` whether its lines are consecutive (then an entry's row follows
    from its line without a search). Reads ``source_file`` and ``rank`` over every entry and
    ``source_line``/``host`` at the runs' ends only.
    """
    schema = pl.Schema(
        {
            "source_file": pl.String,
            "rank": pl.Int32,
            "host": pl.String,
            "start": pl.Int64,
            "count": pl.Int64,
            "first_line": pl.Int64,
            "dense": pl.Boolean,
        }
    )
    if table.num_rows == 0:
        return pl.DataFrame(schema=schema)
    keys = pl.from_arrow(table.select(["source_file", "rank"]), rechunk=False)
    assert isinstance(keys, pl.DataFrame)
    starts = keys.with_row_index("start").filter(run_start("source_file", "rank"))
    start = starts["start"].cast(pl.Int64)
    count = start.shift(-1, fill_value=table.num_rows) - start
    at_start = pl.from_arrow(_take(table.select(["source_line", "host"]), start.to_list()))
    at_end = pl.from_arrow(_take(table.select(["source_line"]), (start + count - 1).to_list()))
    assert isinstance(at_start, pl.DataFrame) and isinstance(at_end, pl.DataFrame)
    first_line = at_start["source_line"]
    return pl.DataFrame(
        {
            "source_file": starts["source_file"],
            "rank": starts["rank"],
            "host": at_start["host"],
            "start": start,
            "count": count,
            "first_line": first_line,
            "dense": (at_end["source_line"] - first_line == count - 1).fill_null(False),
        }
    ).cast(schema)


def locate_rows(view: FrView, sources: Sequence[tuple[str, int]]) -> list[int | None]:
    """The rows in ``view.table`` of the entries at (source_file, source_line), None if absent."""
    by_file = view._runs_by_file
    if not by_file:
        for file, start, count, first, dense in view.runs.select(
            "source_file", "start", "count", "first_line", "dense"
        ).iter_rows():
            by_file.setdefault(file, []).append((start, count, first, dense))
    lines = view.table.column("source_line")
    found: list[int | None] = []
    for file, line in sources:
        row = None
        for start, count, first, dense in by_file.get(file, ()):
            if dense:
                if first is not None and first <= line < first + count:
                    row = start + line - first
            else:
                position = pc.index(lines.slice(start, count), line).as_py()
                row = start + position if position >= 0 else None
            if row is not None:
                break
        found.append(row)
    return found


# The fr_calls columns read over every call. The others (the text ones: file, group names,
# profiling name, state, call site; the component signatures) are read from Arrow only for the
# calls a verdict reports (``calls_at``, ``call_columns``): a text column converted for all
# calls costs a categorical code per call, read and written.
_BULK_CALL_COLUMNS = (
    "group_key",
    "collective_seq_id",
    "rank",
    "ops",
    "backend",
    "sig",
    "done",
    "retired_not_completed",
    "created_ns",
    "started_ns",
    "duration_ms",
    "timeout_ms",
    "input_numel",
    "output_numel",
    "call_stack_id",
    "wrapped",
    "partial",
)


def _calls(tables: Tables, groups: dict[str, Group]) -> tuple[pl.DataFrame, pa.Table]:
    """(the calls frame, the fr_calls table it reads), one row per (group, seq, rank).

    The frame holds ``_BULK_CALL_COLUMNS``, ``_row`` (the call's row in the table) and each
    call's group-size relations (``syntax_bad``). Tables that carry no ``fr_calls`` (built by
    hand, or written before it existed) get it folded here from the entries, the same way
    ingest folds it.
    """
    bulk = [*_BULK_CALL_COLUMNS, "shape_bad", "numel_ratio_min", "numel_ratio_max"]
    if "fr_calls" in tables.names():
        table = tables["fr_calls"]
        calls = tables.df("fr_calls", bulk)
    else:
        with_lists = pl.from_arrow(tables["fr_entries"].select(list(ENTRY_COLUMNS)))
        assert isinstance(with_lists, pl.DataFrame)
        folded = conform("fr_calls", fold_calls(with_lists).to_arrow())
        keys = tables.df("fr_entries", ["source_file", "pg_name", "rank", "group_key"])
        table = attach_keys(folded, keys)
        converted = pl.from_arrow(table.select(bulk))
        assert isinstance(converted, pl.DataFrame)
        calls = converted
    # group_key and ops stay categorical (4-byte codes: group-bys over millions of calls hash
    # those, not strings); frames joined with other tables' text cast them first.
    #
    # An all_gather / reduce_scatter whose sizes imply another group size than its group's.
    # With an exact member list the size is the group's; otherwise (membership inferred from
    # the entries, or members that left no dump) the group may be larger than its known members
    # and only a ratio below the known member count is wrong. Size and exactness go in one
    # lookup (size x 2 + exact).
    code = per_group(
        {
            key: len(g.members) * 2 + int(g.source != "inferred" and not g.missing_dumps)
            for key, g in groups.items()
        }
    )
    size = code // 2
    exact = (code % 2 == 1).fill_null(True)
    ratio_bad = (
        pl.when(exact)
        .then((pl.col("numel_ratio_min") != size) | (pl.col("numel_ratio_max") != size))
        .otherwise(pl.col("numel_ratio_min") < size)
    )
    # Both new columns are laid out in the frame's chunks: a column in one piece among chunked
    # ones makes Polars join every column of the frame into one copy.
    lengths = [len(chunk) for chunk in calls.get_column("collective_seq_id").get_chunks()]
    syntax_bad = calls.select(
        (pl.col("shape_bad").fill_null(False) | ratio_bad.fill_null(False)).alias("syntax_bad")
    ).to_series()
    rows = pl.int_range(calls.height, dtype=pl.UInt32, eager=True).alias("_row")
    aligned = [_laid_out(series, lengths) for series in (rows, syntax_bad)]
    kept = calls.drop("shape_bad", "numel_ratio_min", "numel_ratio_max")
    frame = pl.DataFrame([aligned[0], *kept.get_columns(), aligned[1]])
    return frame, table


def _laid_out(series: pl.Series, lengths: list[int]) -> pl.Series:
    """``series`` in chunks of ``lengths`` (:func:`chunked_like`), under the same name."""
    laid_out = pl.from_arrow(chunked_like(series.to_arrow(), lengths), rechunk=False)
    assert isinstance(laid_out, pl.Series)
    return laid_out.alias(series.name)


def per_group(values: Mapping[str, int], default: int | None = None) -> pl.Expr:
    """``values`` of each row's categorical ``group_key`` (``default`` for a group not in it).

    Looked up by categorical codes, which every categorical column shares (the same text has the
    same code in every frame): no string is built or hashed per row.
    """
    codes = pl.Series(list(values), dtype=pl.String).cast(pl.Categorical).to_physical()
    return (
        pl.col("group_key")
        .to_physical()
        .replace_strict(
            codes, pl.Series(list(values.values()), dtype=pl.Int64), default=default, return_dtype=pl.Int64
        )
    )


def _build(tables: Tables) -> FrView:
    table = tables["fr_entries"]  # (an empty one when there is only fr_status)
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
    runs = _dump_runs(table)
    ranked_runs = runs.filter(pl.col("rank").is_not_null())
    dumped_ranks = set(ranked_runs["rank"].to_list())
    if tables.has("fr_status"):
        dumped_ranks |= set(tables.df("fr_status")["rank"].drop_nulls().to_list())
    dumped = tuple(sorted(dumped_ranks))
    hosts = {
        int(r): h
        for r, h in ranked_runs.select("rank", "host").unique(subset="rank", keep="first").iter_rows()
    }
    calls, calls_table = _calls(tables, groups)
    # Lazy: an eager group-by carries every column of the frame and, over the hundred-odd
    # chunks of thousands of ranks, joins them all into one copy first (+3.4 GB at 8,192 ranks).
    per_rank = (
        calls.lazy()
        .group_by("group_key", "rank")
        .agg(
            pl.col("collective_seq_id").max().alias("enq_e"),
            pl.col("collective_seq_id").filter(pl.col("done")).max().alias("comp_e"),
        )
        .with_columns(pl.col("group_key").cast(pl.String))
        .collect()
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
    # Whole-table facts from Arrow (null counts are kept with the columns; a max reads one column).
    ranked = table
    if table.num_rows and table.column("rank").null_count:
        ranked = table.filter(pc.is_valid(table.column("rank")))
    stamps = [
        as_int(pc.max(ranked.column(c)).as_py())
        for c in ("time_created_ns", "time_started_ns", "time_completed_ns")
        if ranked.num_rows
    ]
    known = [v for v in stamps if v is not None]
    ref_ts = max(known) if known else None
    height = ranked.num_rows
    has_timing = bool(height) and (
        ranked.column("duration_ms").null_count < height
        or ranked.column("time_started_ns").null_count < height
    )
    has_frames = bool(height) and ranked.column("stack_id").null_count < height
    # Distinct stacks only (shared by all ranks): small, read once into a dict.
    stacks: dict[int, list[dict[str, Any]]] = {}
    if has_frames and tables.has("fr_stacks"):
        for stack_id, frames in tables.df("fr_stacks").select("stack_id", "frames").iter_rows():
            if stack_id is not None:
                stacks[int(stack_id)] = frames or []
    return FrView(
        table,
        runs,
        calls,
        calls_table,
        progress,
        groups,
        dumped,
        hosts,
        ref_ts,
        has_timing,
        has_frames,
        stacks,
    )


def shape_details(view: FrView, calls: pl.DataFrame) -> pl.DataFrame:
    """``calls`` with the tensor sizes and dtypes of each call's first entry (from the entries).

    The calls frame carries only their hashes; detectors that report the values themselves
    fetch them for the few calls they report.
    """
    keys = ["source_file", "source_line"]
    calls = calls.with_columns(pl.col("source_file").cast(pl.String))
    wanted = calls.select(keys).unique(maintain_order=True)
    rows = locate_rows(view, list(wanted.iter_rows()))
    found = [i for i, row in enumerate(rows) if row is not None]
    located = wanted[found]
    shapes = pl.concat(
        [located, entry_columns(view, pl.Series([rows[i] for i in found], dtype=pl.Int64), _SHAPE_COLUMNS)],
        how="horizontal",
    )
    return calls.join(shapes, on=keys, how="left", nulls_equal=True, maintain_order="left")


def p2p_entries(view: FrView, columns: Sequence[str]) -> pl.DataFrame:
    """``columns`` of the point-to-point entries, with ``_row`` (their row in ``view.table``)."""
    converted = pl.from_arrow(view.table.column("is_p2p"))
    assert isinstance(converted, pl.Series)
    flags = converted.fill_null(False)
    frame = pl.from_arrow(view.table.select(list(columns)).filter(flags.to_arrow()))
    assert isinstance(frame, pl.DataFrame)
    return frame.insert_column(0, flags.arg_true().cast(pl.Int64).alias("_row"))


def entry_columns(view: FrView, rows: pl.Series, columns: Sequence[str]) -> pl.DataFrame:
    """``columns`` of the entries at ``rows`` (their ``_row``), read from the Arrow table."""
    taken = pl.from_arrow(_take(view.table.select(list(columns)), rows.to_list()))
    assert isinstance(taken, pl.DataFrame)
    return taken


def full_rows(view: FrView, rows: Sequence[int]) -> list[dict[str, Any]]:
    """The entries at ``rows`` (their ``_row``) with every column, frames included."""
    return [with_frames(view, row) for row in _take(view.table, rows).to_pylist()]


def _take(table: pa.Table, rows: Sequence[int]) -> pa.Table:
    """``table``'s rows at ``rows``, in that order.

    Taken chunk by chunk: a take over the whole chunked table would first join every chunk (and
    unify their dictionaries), copying millions of entries to read a handful.
    """
    batches = table.to_batches()
    starts = [0]
    for batch in batches:
        starts.append(starts[-1] + batch.num_rows)
    by_batch: dict[int, list[int]] = {}
    for position, row in enumerate(rows):
        by_batch.setdefault(bisect.bisect_right(starts, row) - 1, []).append(position)
    pieces: list[pa.RecordBatch] = []
    placed: list[int] = []
    for index, positions in by_batch.items():
        local = pa.array([rows[p] - starts[index] for p in positions], type=pa.int64())
        pieces.append(batches[index].take(local))
        placed.extend(positions)
    gathered = pa.Table.from_batches(pieces, schema=table.schema)
    order = sorted(range(len(placed)), key=placed.__getitem__)
    return gathered.take(pa.array(order, type=pa.int64()))


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
    """The first entry of ``rank``'s call at (group, seq), as a dict (frames included).

    Only the rows asked for are read in full: reading every column of a thousand rows scattered
    over a memory-mapped table maps hundreds of MB of their neighbours.
    """
    at = first_rows_at(view, key, seq).filter(pl.col("rank") == rank)
    if at.height == 0:
        return None
    row = locate_rows(view, [(at["source_file"][0], at["source_line"][0])])[0]
    return _full_row(view, row) if row is not None else None


def calls_at(view: FrView, key: str, seq: int, columns: Sequence[str | pl.Expr]) -> pl.DataFrame:
    """``columns`` (names or expressions over fr_calls columns) of every rank's call at (group, seq)."""
    rows = (
        view.calls.lazy()
        .filter((pl.col("group_key") == key) & (pl.col("collective_seq_id") == seq))
        .select("_row")
        .collect()
    )
    return call_columns(view, rows["_row"], columns)


def call_columns(view: FrView, rows: pl.Series, columns: Sequence[str | pl.Expr]) -> pl.DataFrame:
    """``columns`` (names or expressions over fr_calls columns) of the calls at ``rows`` (``_row``).

    Only the columns named are gathered, for those rows: gathering every column of a thousand
    calls that lie far apart would read each column's pages whole.
    """
    needed: list[str] = []
    for column in columns:
        for name in column.meta.root_names() if isinstance(column, pl.Expr) else [column]:
            if name not in needed:
                needed.append(name)
    in_frame = [c for c in needed if c in view.calls.columns]
    from_arrow = [c for c in needed if c not in view.calls.columns]
    parts = [view.calls.select(in_frame)[rows]] if in_frame else []
    if from_arrow:
        taken = pl.from_arrow(_take(view.calls_table.select(from_arrow), rows.to_list()))
        assert isinstance(taken, pl.DataFrame)
        parts.append(taken)
    frame = pl.concat(parts, how="horizontal") if parts else pl.DataFrame()
    return frame.select(columns)


def first_rows_at(view: FrView, key: str, seq: int) -> pl.DataFrame:
    """Each rank's call at (group, seq): rank, where its first entry is, when it was created.

    Cached on the view: asking for every waiting rank of a 1024-rank group filters once.
    """
    cached = view._rows_at.get((key, seq))
    if cached is None:
        cached = (
            calls_at(
                view,
                key,
                seq,
                [
                    "rank",
                    pl.col("source_file").cast(pl.String),
                    "source_line",
                    "record_id",
                    pl.col("created_ns").alias("time_created_ns"),
                ],
            )
            .sort("rank", "record_id")
            .unique(subset="rank", keep="first", maintain_order=True)
        )
        view._rows_at[(key, seq)] = cached
    return cached


def _full_row(view: FrView, row: int) -> dict[str, Any]:
    cached = view._full_rows.get(row)
    if cached is None:
        cached = view._full_rows[row] = full_rows(view, [row])[0]
    return cached


def with_frames(view: FrView, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its ``frames`` (from fr_stacks by ``stack_id``; None when it has none)."""
    stack_id = row.get("stack_id")
    row["frames"] = view.stacks.get(int(stack_id)) if stack_id is not None else None
    return row


def last_entry(view: FrView, rank: int) -> dict[str, Any] | None:
    """The newest entry of ``rank`` (highest record id of its dump)."""
    candidates = []
    for start, count in view.runs.filter(pl.col("rank") == rank).select("start", "count").iter_rows():
        record_ids = pl.from_arrow(view.table.column("record_id").slice(start, count))
        assert isinstance(record_ids, pl.Series)
        candidates.append(
            pl.DataFrame({"_row": pl.int_range(start, start + count, eager=True), "record_id": record_ids})
        )
    if not candidates:
        return None
    newest = pl.concat(candidates).sort("record_id", maintain_order=True)["_row"][-1]
    return full_rows(view, [int(newest)])[0]


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
    rows = calls_at(view, key, seq, ["sig", "syntax_bad"])
    return rows["sig"].n_unique() <= 1 and not bool(rows["syntax_bad"].any())
