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

from .ingest.fr_calls import ENTRY_COLUMNS, attach_keys, fold_calls
from .report import Evidence, excerpt
from .tables import Tables, conform

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
    """Derived flight-recorder frames shared by the detectors."""

    entries: pl.DataFrame
    table: pa.Table
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
    _rows_at: dict[tuple[str, int], pl.DataFrame] = field(default_factory=dict)
    _full_rows: dict[int, dict[str, Any]] = field(default_factory=dict)

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


# The only entry columns the view and the detectors read over every entry (per-call facts come
# from fr_calls). The rest, nested size and dtype lists included, are read only for the few
# entries a verdict reports: those rows are taken from the Arrow table by ``_row``
# (``full_rows``, ``entry_columns``). Strings stay categorical (4-byte codes); cast them before
# joining them with another table's text.
_VIEW_COLUMNS = (
    "rank",
    "host",
    "group_key",
    "collective_seq_id",
    "record_id",
    "is_p2p",
    "op",
    "p2p_peer",
    "input_numel",
    "time_created_ns",
    "time_started_ns",
    "time_completed_ns",
    "duration_ms",
    "stack_id",
)
_CALL_KEYS = ("group_key", "collective_seq_id", "rank")
_SHAPE_COLUMNS = ("input_sizes", "output_sizes", "input_dtypes", "output_dtypes")


def _view_frame(tables: Tables) -> pl.DataFrame:
    """The entries' ``_VIEW_COLUMNS``, with ``_row``: each entry's row in the Arrow table."""
    return tables.df("fr_entries", _VIEW_COLUMNS).with_row_index("_row")


def _calls(tables: Tables, groups: dict[str, Group]) -> pl.DataFrame:
    """One row per (group, seq, rank) from ``fr_calls``, with each call's group-size relations.

    Tables that carry no ``fr_calls`` (built by hand, or written before it existed) get it
    folded here from the entries, the same way ingest folds it.
    """
    if "fr_calls" in tables.names():
        calls = tables.df("fr_calls")
    else:
        with_lists = pl.from_arrow(tables["fr_entries"].select(list(ENTRY_COLUMNS)))
        assert isinstance(with_lists, pl.DataFrame)
        folded = conform("fr_calls", fold_calls(with_lists).to_arrow())
        keys = tables.df("fr_entries", ["source_file", "pg_name", "rank", "group_key"])
        converted = pl.from_arrow(attach_keys(folded, keys))
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
    return calls.with_columns(
        (pl.col("shape_bad").fill_null(False) | ratio_bad.fill_null(False)).alias("syntax_bad")
    ).drop("shape_bad", "numel_ratio_min", "numel_ratio_max")


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
    raw = _view_frame(tables)
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
    calls = _calls(tables, groups)
    per_rank = (
        calls.group_by("group_key", "rank")
        .agg(
            pl.col("collective_seq_id").max().alias("enq_e"),
            pl.col("collective_seq_id").filter(pl.col("done")).max().alias("comp_e"),
        )
        .with_columns(pl.col("group_key").cast(pl.String))
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
    return FrView(
        entries,
        tables["fr_entries"],
        calls,
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
    keys = [*_CALL_KEYS, "record_id"]
    calls = calls.with_columns(pl.col("group_key").cast(pl.Categorical))
    wanted = calls.select(keys).unique()
    found = view.entries.select(*keys, "_row").join(wanted, on=keys, how="semi").unique(subset=keys)
    shapes = pl.concat(
        [found.drop("_row"), entry_columns(view, found["_row"], _SHAPE_COLUMNS)], how="horizontal"
    )
    return calls.join(shapes, on=keys, how="left", nulls_equal=True, maintain_order="left")


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
    """The first entry of ``rank`` at (group, seq), as a dict (frames included).

    Every rank's first row at one (group, seq) is located with one filter and cached on the view
    (asking for each waiting rank of a 1024-rank group scans the table once), but only the rows
    asked for are read in full: reading every column of a thousand rows scattered over a
    memory-mapped table maps hundreds of MB of their neighbours.
    """
    row = first_rows_at(view, key, seq).filter(pl.col("rank") == rank)["_row"]
    return _full_row(view, int(row[0])) if row.len() else None


def first_rows_at(view: FrView, key: str, seq: int) -> pl.DataFrame:
    """Each rank's first entry at (group, seq) in the view's columns (``_row`` included)."""
    cached = view._rows_at.get((key, seq))
    if cached is None:
        cached = (
            view.entries.filter(
                (pl.col("group_key") == key)
                & (pl.col("collective_seq_id") == seq)
                & ~pl.col("is_p2p").fill_null(False)
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
    rows = view.entries.filter(pl.col("rank") == rank).sort("record_id")["_row"]
    return full_rows(view, [int(rows[-1])])[0] if rows.len() else None


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
