"""Derived DCGM signals that several detectors use as corroboration.

Every function takes the incident's tables and returns a Polars frame with fixed columns, empty
when ``gpu_metrics`` lacks the fields. Field names are canonical (pre-4.6 DCGM spellings, e.g.
``DCGM_FI_DEV_ECC_DBE_VOL_TOTAL``); the dcgm parser maps renamed fields onto them, and callers may
pass either spelling (DCGM 4.6 names are mapped to the canonical ones here too).

Rows are per GPU, keyed by ``GPU_KEY``. Rows without any GPU identity (no index, PCI id or UUID,
e.g. Prometheus ``up``) and MIG-instance rows (``mig_instance`` set) are left out: the signals
describe whole GPUs. Readings are ordered by time, then file, scrape and line, so files without
timestamps still keep their written order.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from . import dcgm_fields
from .detectors.common import GpuIdentity, identity_for_pci, map_value
from .tables import Tables, derived

GPU_KEY = ["host", "gpu_index", "pci_bus_id", "gpu_uuid"]

DELTA_SCHEMA = {
    "host": pl.String,
    "gpu_index": pl.Int32,
    "pci_bus_id": pl.String,
    "gpu_uuid": pl.String,
    "field": pl.String,
    "first_value": pl.Float64,
    "last_value": pl.Float64,
    "delta": pl.Float64,
    "first_ts_ns": pl.Int64,
    "last_ts_ns": pl.Int64,
    "source_file": pl.String,
    "source_line": pl.Int64,
}

LATEST_SCHEMA = {
    "host": pl.String,
    "gpu_index": pl.Int32,
    "pci_bus_id": pl.String,
    "gpu_uuid": pl.String,
    "field": pl.String,
    "value": pl.Float64,
    "ts_ns": pl.Int64,
    "source_file": pl.String,
    "source_line": pl.Int64,
}

VANISHED_SCHEMA = {
    "host": pl.String,
    "gpu_index": pl.Int32,
    "pci_bus_id": pl.String,
    "gpu_uuid": pl.String,
    "last_ts_ns": pl.Int64,
    "host_last_ts_ns": pl.Int64,
    "source_file": pl.String,
    "source_line": pl.Int64,
}

IDLE_SCHEMA = {
    "host": pl.String,
    "gpu_index": pl.Int32,
    "pci_bus_id": pl.String,
    "gpu_uuid": pl.String,
    "field": pl.String,
    "value": pl.Float64,
    "peer_mean": pl.Float64,
    "peers": pl.UInt32,
    "idle_samples": pl.UInt32,
    "idle_from_ts_ns": pl.Int64,
    "last_ts_ns": pl.Int64,
    "was_busy": pl.Boolean,
    "source_file": pl.String,
    "source_line": pl.Int64,
}

# Utilisation fields idle_outliers reads, in order of preference (whole-GPU activity).
UTIL_FIELDS = ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_PROF_GR_ENGINE_ACTIVE")
# Idle: at most 5% of full scale; busy peers: at least 50% on average.
IDLE_FRACTION = 0.05
BUSY_FRACTION = 0.5

_ORDER = ["ts_ns", "source_file", "scrape", "source_line"]


def _typed(schema: dict[str, type[pl.DataType]]) -> list[pl.Expr]:
    """Select-and-cast expressions giving exactly ``schema``'s columns and types."""
    return [pl.col(name).cast(dtype) for name, dtype in schema.items()]


def canonical_fields(fields: list[str] | tuple[str, ...]) -> list[str]:
    """Canonical (pre-4.6) names for ``fields`` given in any known spelling."""
    return list(dict.fromkeys(dcgm_fields.canonical(f)[0] for f in fields))


# Columns the signals read; passed as ``columns`` so large captures copy only what is read.
SIGNAL_COLUMNS = [*GPU_KEY, "field", "metric", "value", "ts_ns", "source_file", "scrape", "source_line"]
_READING_COLUMNS = [*GPU_KEY, "field", "value", "ts_ns", "source_file", "source_line"]
_LAST_SEEN_COLUMNS = [*GPU_KEY, "ts_ns", "source_file", "source_line"]


def composite_key(frame: pl.DataFrame, columns: list[str]) -> pl.Series:
    """One Int64 per row of ``frame``, equal exactly where all ``columns`` are equal (nulls too).

    Group-bys, joins and sorts over one integer key are several times faster than over several
    (categorical) columns with millions of rows. Integer and categorical columns are packed
    arithmetically (offset codes, null as 0; the first column most significant, so keys rise
    with the columns' values, nulls first), or as dense ranks when their value ranges are too
    wide to pack in 63 bits; anything else gets a group number from a join.
    """
    if all(frame.schema[name] == pl.Categorical or frame.schema[name].is_integer() for name in columns):
        for dense in (False, True):
            key = _packed_key(frame, columns, dense)
            if key is not None:
                return key
    groups = frame.select(columns).unique(maintain_order=True).with_row_index("_key")
    keyed = frame.select(columns).join(
        groups, on=columns, how="left", nulls_equal=True, maintain_order="left"
    )
    return keyed.get_column("_key").cast(pl.Int64)


def _packed_key(frame: pl.DataFrame, columns: list[str], dense: bool) -> pl.Series | None:
    """``composite_key`` by arithmetic on integer codes; None when the codes do not fit 63 bits."""
    codes: list[pl.Expr] = []
    span = 1
    for name in reversed(columns):  # the last column varies fastest
        column = pl.col(name)
        if frame.schema[name] == pl.Categorical:
            column = column.to_physical()
        low, high = frame.select(column.min().alias("low"), column.max().alias("high")).row(0)
        if dense and low is not None and int(high) - int(low) >= frame.height:
            # More codes than rows (e.g. times in ns): dense codes instead, a running count of
            # changes when the column is already sorted (times in reading order), else a rank.
            if frame.get_column(name).is_sorted() and frame.get_column(name).null_count() == 0:
                column = (column != column.shift(1)).fill_null(True).cum_sum()
            else:
                column = column.rank("dense")
            low, high = frame.select(column.min().alias("low"), column.max().alias("high")).row(0)
        if low is None:  # all null: one code, nothing to add
            continue
        codes.append((column.cast(pl.Int64) - int(low) + 1).fill_null(0) * span)
        span *= int(high) - int(low) + 2
        if span >= 2**62:
            return None
    if not codes:
        return frame.select(pl.repeat(0, pl.len(), dtype=pl.Int64).alias("key")).to_series()
    return frame.select(pl.sum_horizontal(codes).alias("key")).to_series()


_WHOLE_GPU = (
    pl.any_horizontal(
        pl.col("gpu_index").is_not_null(),
        pl.col("pci_bus_id").is_not_null(),
        pl.col("gpu_uuid").is_not_null(),
    )
    & pl.col("mig_instance").is_null()
    & pl.col("value").is_not_null()
)


def _file_ranks(frame: pl.DataFrame) -> pl.Expr:
    """``source_file`` as its lexical rank among the frame's files (few files: integer compares)."""
    files = frame.get_column("source_file").unique().drop_nulls()
    names = files.cast(pl.String).to_list()
    rank = {name: position for position, name in enumerate(sorted(names))}
    physical = files.to_physical().to_list()
    return (
        pl.col("source_file")
        .to_physical()
        .replace_strict(physical, [rank[n] for n in names], default=None, return_dtype=pl.UInt32)
    )


def _in_file_order(keys: pl.DataFrame) -> bool:
    """Whether rows (``source_file``, ``scrape``, ``source_line``) are in file, scrape, line order."""
    keys = keys.select(_file_ranks(keys).alias("_file"), "scrape", "source_line")
    tie = [
        pl.col("_file"),
        pl.col("scrape").cast(pl.Int64).fill_null(-1),
        pl.col("source_line").fill_null(-1),
    ]
    nxt = [t.shift(-1) for t in tie]
    in_order = (tie[0] < nxt[0]) | (
        (tie[0] == nxt[0]) & ((tie[1] < nxt[1]) | ((tie[1] == nxt[1]) & (tie[2] <= nxt[2])))
    )
    return bool(keys.select(in_order.fill_null(True).all()).item())


def _reading_order(frame: pl.DataFrame, rows: pl.Series) -> pl.Series:
    """``rows`` (row numbers of ``frame``) in reading order: time, then file, scrape and line."""
    if rows.len() < 2:
        return rows
    # Only integer keys are sorted, never the wide rows: the file name becomes its lexical rank,
    # so the stable arg-sort gives the order of
    # ``frame[rows].sort(_ORDER, nulls_last=False, maintain_order=True)`` at a fraction of the
    # cost (string keys make multi-column sorts of millions of rows slow).
    keys = frame.select(_ORDER)[rows]
    # Rows usually arrive ordered by file, scrape and line (files one after the other, each in
    # written order): then one stable sort by time gives the full order. Multi-column sorts of
    # millions of rows with many equal times are far slower, so they are the fallback only.
    if _in_file_order(keys):
        position = keys.select(pl.arg_sort_by("ts_ns", nulls_last=False, maintain_order=True)).to_series()
    else:
        keys = keys.with_columns(_file_ranks(keys).alias("source_file"))
        position = keys.select(pl.arg_sort_by(_ORDER, nulls_last=False, maintain_order=True)).to_series()
    return rows.gather(position)


def _rows_where(frame: pl.DataFrame, condition: pl.Expr) -> pl.Series:
    """Row numbers (UInt32) of ``frame`` where ``condition`` holds, in frame order."""
    return frame.select(pl.int_range(pl.len(), dtype=pl.UInt32).filter(condition).alias("_row")).to_series()


# Columns that decide whether a row is a whole GPU's reading, and its reading order.
_WHOLE_GPU_COLUMNS = ["gpu_index", "pci_bus_id", "gpu_uuid", "mig_instance", "value"]
_ORDER_COLUMNS = ["ts_ns", "source_file", "scrape", "source_line"]


def _gpu_order(tables: Tables) -> pl.Series:
    """Row numbers of whole-GPU rows with a value, in reading order (one sort per table)."""

    def order() -> pl.Series:
        frame = tables.df("gpu_metrics", [*_WHOLE_GPU_COLUMNS, *_ORDER_COLUMNS])
        return _reading_order(frame, _rows_where(frame, _WHOLE_GPU))

    return derived(tables["gpu_metrics"], "gpu_order", order)


def gpu_rows(
    tables: Tables, fields: list[str] | tuple[str, ...] | None = None, columns: list[str] | None = None
) -> pl.DataFrame:
    """``gpu_metrics`` rows that belong to a whole GPU, optionally only ``fields``, in reading order.

    ``columns`` limits the result to those columns (all when ``None``): with millions of rows,
    converting and copying only what a signal reads is most of the cost. With ``fields``, only
    those rows are ordered.
    """
    if not tables.has("gpu_metrics"):
        frame = tables.df("gpu_metrics").clear()
        return frame.select(columns) if columns is not None else frame
    if fields is None:
        order = _gpu_order(tables)
    else:
        frame = tables.df("gpu_metrics", [*_WHOLE_GPU_COLUMNS, *_ORDER_COLUMNS, "field"])
        wanted = _WHOLE_GPU & pl.col("field").is_in(canonical_fields(fields))
        order = _reading_order(frame, _rows_where(frame, wanted))
    if order.len() == 0:  # no conversion of columns nobody will read
        table = tables["gpu_metrics"]
        empty = pl.from_arrow(table.select(columns or table.column_names).slice(0, 0))
        assert isinstance(empty, pl.DataFrame)
        return empty
    return tables.df("gpu_metrics", columns)[order]


def gpu_rows_file_order(
    tables: Tables, fields: list[str] | tuple[str, ...], columns: list[str]
) -> pl.DataFrame:
    """Like :func:`gpu_rows`, but ordered only among readings of the same time.

    Rows of equal ``ts_ns`` come in reading order (file, scrape, line); otherwise the order is
    the table's. When the table is in file order (as ingested) that is a filter: no sort and no
    gather of millions of rows, which cost far more than the filter. Callers that need times in
    order sort the few columns they use themselves.
    """
    if not tables.has("gpu_metrics"):
        return tables.df("gpu_metrics").clear().select(columns)
    wanted = _WHOLE_GPU & pl.col("field").is_in(canonical_fields(fields))
    needed = list(dict.fromkeys([*_WHOLE_GPU_COLUMNS, *_ORDER_COLUMNS, "field", *columns]))
    rows = tables.df("gpu_metrics", needed).filter(wanted)
    if _in_file_order(rows):
        return rows.select(columns)
    return gpu_rows(tables, fields, columns)


def _gpu_key(tables: Tables) -> pl.Series:
    """``composite_key`` of ``GPU_KEY`` for every row of ``gpu_metrics`` (several signals group by
    it; computed once per table)."""
    return derived(
        tables["gpu_metrics"],
        "gpu_key",
        lambda: composite_key(tables.df("gpu_metrics", GPU_KEY), GPU_KEY).alias("_gpu"),
    )


def gpus(tables: Tables) -> pl.DataFrame:
    """Every whole GPU (``GPU_KEY`` columns) that has a reading, one row each, in no set order."""
    if not tables.has("gpu_metrics"):
        return tables.df("gpu_metrics").clear().select(GPU_KEY)
    columns = list(dict.fromkeys([*GPU_KEY, *_WHOLE_GPU_COLUMNS]))
    rows = tables.df("gpu_metrics", columns).with_columns(_gpu_key(tables)).filter(_WHOLE_GPU)
    return rows.group_by("_gpu").agg(*[pl.col(k).first() for k in GPU_KEY]).drop("_gpu")


def counter_deltas(tables: Tables, fields: list[str]) -> pl.DataFrame:
    """Per GPU and field: first and last reading over the capture and their difference.

    ``delta`` is ``last_value - first_value`` (negative after a counter reset, e.g. a driver
    reload); ``source_file``/``source_line`` point at the last reading.
    """
    rows = gpu_rows(tables, fields, _READING_COLUMNS)
    if rows.height == 0:
        return pl.DataFrame(schema=DELTA_SCHEMA)
    grouped = rows.group_by(composite_key(rows, [*GPU_KEY, "field"]).alias("_key"), maintain_order=True).agg(
        *[pl.col(k).first() for k in (*GPU_KEY, "field")],
        pl.col("value").first().alias("first_value"),
        pl.col("value").last().alias("last_value"),
        pl.col("ts_ns").first().alias("first_ts_ns"),
        pl.col("ts_ns").last().alias("last_ts_ns"),
        pl.col("source_file").last(),
        pl.col("source_line").last(),
    )
    grouped = grouped.with_columns((pl.col("last_value") - pl.col("first_value")).alias("delta"))
    return grouped.select(_typed(DELTA_SCHEMA)).sort([*GPU_KEY, "field"], nulls_last=True)


def latest_values(tables: Tables, fields: list[str]) -> pl.DataFrame:
    """Per GPU and field: the last reading and where it was read.

    For ``DCGM_FI_DEV_XID_ERRORS`` this is the last Xid the GPU reported since the exporter or
    driver started (the value is sticky): weak corroboration for kernel-log Xids, not an event.
    """
    rows = gpu_rows(tables, fields, _READING_COLUMNS)
    if rows.height == 0:
        return pl.DataFrame(schema=LATEST_SCHEMA)
    grouped = rows.group_by(composite_key(rows, [*GPU_KEY, "field"]).alias("_key"), maintain_order=True).agg(
        *[pl.col(k).first() for k in (*GPU_KEY, "field")],
        pl.col("value").last(),
        pl.col("ts_ns").last(),
        pl.col("source_file").last(),
        pl.col("source_line").last(),
    )
    return grouped.select(_typed(LATEST_SCHEMA)).sort([*GPU_KEY, "field"], nulls_last=True)


def vanished_series(tables: Tables) -> pl.DataFrame:
    """GPUs whose series stop (or go blank) while other GPUs of the same host keep reporting.

    A GPU vanished when its last reading is older than the host's last reading and at least one
    other GPU of the host reported at that last time. Blank values are dropped at parse time, so
    a series that goes blank ends the same way as one that stops. Needs known times (``ts_ns``).
    """
    if not tables.has("gpu_metrics"):
        return pl.DataFrame(schema=VANISHED_SCHEMA)
    # Several detectors ask for the vanished GPUs of the same table; computed once.
    return derived(tables["gpu_metrics"], "vanished_series", lambda: _vanished(tables)).clone()


def _vanished(tables: Tables) -> pl.DataFrame:
    frame = tables.df("gpu_metrics", list(dict.fromkeys([*GPU_KEY, *_WHOLE_GPU_COLUMNS, *_ORDER_COLUMNS])))
    timed = _WHOLE_GPU & pl.col("ts_ns").is_not_null() & pl.col("host").is_not_null()
    rows = (
        frame.lazy()
        .with_columns(_gpu_key(tables))
        .with_row_index("_row")
        .filter(timed)
        .select("_row", "_gpu", *GPU_KEY, "ts_ns")
        .collect()
    )
    if rows.height == 0:
        return pl.DataFrame(schema=VANISHED_SCHEMA)
    # The last reading of a GPU (in reading order) is among its readings at its latest time:
    # only those few rows are put in order, not all of them.
    latest = pl.col("ts_ns") == pl.col("ts_ns").max()
    per_gpu = rows.group_by("_gpu").agg(
        pl.col("ts_ns").max().alias("last_ts_ns"),
        *[pl.col(k).first() for k in GPU_KEY],
        pl.col("_row").filter(latest).alias("_latest"),
    )
    latest_rows = per_gpu.select("_gpu", "_latest").explode("_latest").sort("_latest")
    candidates = latest_rows.get_column("_latest")
    ordered = _reading_order(frame, candidates)
    where = frame.select("source_file", "source_line")[ordered].with_columns(
        latest_rows.get_column("_gpu").gather(candidates.search_sorted(ordered))
    )
    last_read = where.group_by("_gpu").agg(pl.col("source_file").last(), pl.col("source_line").last())
    per_gpu = per_gpu.drop("_latest").join(last_read, on="_gpu", how="left")
    per_gpu = per_gpu.with_columns(
        pl.col("last_ts_ns").max().over("host").alias("host_last_ts_ns"),
        pl.len().over("host").alias("gpus"),
    )
    per_gpu = per_gpu.with_columns(
        (pl.col("last_ts_ns") == pl.col("host_last_ts_ns")).sum().over("host").alias("current")
    )
    gone = per_gpu.filter(
        (pl.col("gpus") >= 2) & (pl.col("current") >= 1) & (pl.col("last_ts_ns") < pl.col("host_last_ts_ns"))
    )
    return gone.select(_typed(VANISHED_SCHEMA)).sort(GPU_KEY, nulls_last=True)


def idle_outliers(tables: Tables) -> pl.DataFrame:
    """GPUs idle (≤ 5% utilisation) at the end of the capture while their host's other GPUs stay busy.

    Reads ``DCGM_FI_DEV_GPU_UTIL`` (percent), else ``DCGM_FI_PROF_GR_ENGINE_ACTIVE`` (ratio). At
    every reading time of a host, a GPU is *idle* when its value is at most 5% of full scale and
    the mean of the other GPUs is at least 50%. A row is returned per GPU whose trailing run of
    idle readings reaches the host's last reading: ``idle_samples`` long, starting at
    ``idle_from_ts_ns``; ``was_busy`` tells whether the GPU was busy earlier (a drop, not a GPU
    that never worked). Hosts with one GPU give nothing. The hang window is the caller's concern:
    the correlation stage compares ``idle_from_ts_ns`` with the stall time.
    """
    rows = gpu_rows(tables, UTIL_FIELDS, SIGNAL_COLUMNS).filter(pl.col("host").is_not_null())
    if rows.height == 0:
        return pl.DataFrame(schema=IDLE_SCHEMA)
    # One utilisation field per host: the preferred one where present.
    rank = {name: i for i, name in enumerate(UTIL_FIELDS)}
    rows = rows.with_columns(pl.col("field").replace_strict(rank, default=len(rank)).alias("pref"))
    rows = rows.filter(pl.col("pref") == pl.col("pref").min().over("host"))
    # Time axis: the reading time, else the scrape number (files without times keep their order).
    rows = rows.with_columns(
        pl.coalesce(pl.col("ts_ns"), pl.col("scrape").cast(pl.Int64)).alias("tick"),
        pl.when(pl.col("field") == "DCGM_FI_PROF_GR_ENGINE_ACTIVE")
        .then(pl.lit(1.0))
        .when(
            (pl.col("value").max().over("host") <= 1.0)
            & pl.col("metric").cast(pl.String).str.ends_with("_RATIO")
        )
        .then(pl.lit(1.0))
        .otherwise(pl.lit(100.0))
        .alias("scale"),
    )
    # Several files may carry the same GPU at the same tick: keep the last reading.
    rows = rows.with_columns(pl.col("ts_ns").is_not_null().alias("timed"))
    rows = rows.group_by([*GPU_KEY, "field", "tick"], maintain_order=True).agg(
        pl.col("value").last(),
        pl.col("scale").last(),
        pl.col("timed").last(),
        pl.col("source_file").last(),
        pl.col("source_line").last(),
    )
    rows = rows.with_columns(
        pl.col("value").sum().over("host", "tick").alias("tick_sum"),
        pl.len().over("host", "tick").alias("tick_n"),
    )
    rows = rows.with_columns(
        pl.when(pl.col("tick_n") > 1)
        .then((pl.col("tick_sum") - pl.col("value")) / (pl.col("tick_n") - 1))
        .otherwise(None)
        .alias("peer_mean"),
        (pl.col("tick_n") - 1).cast(pl.UInt32).alias("peers"),
    )
    rows = rows.with_columns(
        (
            (pl.col("value") <= IDLE_FRACTION * pl.col("scale"))
            & (pl.col("peer_mean") >= BUSY_FRACTION * pl.col("scale"))
        )
        .fill_null(False)
        .alias("idle"),
        (pl.col("value") >= BUSY_FRACTION * pl.col("scale")).alias("busy"),
        pl.col("tick").max().over("host").alias("host_last_tick"),
    ).sort([*GPU_KEY, "tick"], nulls_last=True)
    # Trailing idle run per GPU: readings after the last non-idle one.
    rows = rows.with_columns(
        pl.when(~pl.col("idle"))
        .then(pl.col("tick"))
        .otherwise(None)
        .max()
        .over(GPU_KEY)
        .alias("last_active_tick")
    )
    trailing = rows.filter(
        pl.col("idle")
        & (pl.col("last_active_tick").is_null() | (pl.col("tick") > pl.col("last_active_tick")))
    )
    if trailing.height == 0:
        return pl.DataFrame(schema=IDLE_SCHEMA)
    busy_before = rows.group_by(GPU_KEY).agg(pl.col("busy").any().alias("was_busy"))
    result = (
        trailing.group_by(GPU_KEY, maintain_order=True)
        .agg(
            pl.col("field").last(),
            pl.col("value").last(),
            pl.col("peer_mean").last(),
            pl.col("peers").last(),
            pl.len().cast(pl.UInt32).alias("idle_samples"),
            pl.col("tick").first().alias("first_tick"),
            pl.col("tick").last().alias("last_tick"),
            pl.col("host_last_tick").last(),
            pl.col("source_file").first(),
            pl.col("source_line").first(),
        )
        .filter(pl.col("last_tick") == pl.col("host_last_tick"))
        .join(busy_before, on=GPU_KEY, how="left", nulls_equal=True)
    )
    # Ticks are times only where the rows had times; scrape numbers are not times.
    timed = rows.group_by(GPU_KEY).agg(pl.col("timed").all())
    result = result.join(timed, on=GPU_KEY, how="left", nulls_equal=True).with_columns(
        pl.when(pl.col("timed")).then(pl.col("first_tick")).otherwise(None).alias("idle_from_ts_ns"),
        pl.when(pl.col("timed")).then(pl.col("last_tick")).otherwise(None).alias("last_ts_ns"),
    )
    return result.select(_typed(IDLE_SCHEMA)).sort(GPU_KEY, nulls_last=True)


def with_label(tables: Tables, frame: pl.DataFrame, alias: str, keys: tuple[str, ...]) -> pl.DataFrame:
    """``frame`` (with ``labels_id``) plus ``alias``: the first of the label ``keys`` its row carries.

    Labels are stored once per label set (``gpu_labels``); this joins the few wanted values onto
    the rows, never the whole map. Null where the row's label set has none of ``keys``.
    """
    labels = tables.df("gpu_labels")
    values = labels.select("labels_id", pl.coalesce([map_value("labels", k) for k in keys]).alias(alias))
    return frame.join(values, on="labels_id", how="left", maintain_order="left")


@dataclass(frozen=True)
class GpuMapping:
    """How a DCGM GPU maps to a rank: the identity row (or ``None``) and how it was matched."""

    identity: GpuIdentity | None
    matched_by: str | None
    assumption: str | None = None


def rank_for_gpu(
    tables: Tables, host: str | None, gpu_index: int | None, pci_bus_id: str | None, gpu_uuid: str | None
) -> GpuMapping:
    """The identity row of a DCGM GPU: by PCI address, else UUID, else host + NVML index.

    Matching by index is an assumption (DCGM's ``gpu`` label is the NVML index, a rank's GPU
    index may follow ``CUDA_VISIBLE_DEVICES``); it is returned in ``assumption``.
    """
    found = identity_for_pci(tables, host, pci_bus_id)
    if found is not None:
        return GpuMapping(found, "pci_bus_id")
    if not tables.has("identity"):
        return GpuMapping(None, None)
    rows = tables.df("identity")
    if gpu_uuid is not None:
        hit = rows.filter(pl.col("gpu_uuid") == gpu_uuid)
        if hit.height:
            return GpuMapping(_identity(hit.row(0, named=True)), "gpu_uuid")
    if host is not None and gpu_index is not None:
        hit = rows.filter(
            (pl.col("host") == host) & (pl.col("gpu_index") == gpu_index) & pl.col("rank").is_not_null()
        )
        if hit.height == 1:
            return GpuMapping(
                _identity(hit.row(0, named=True)),
                "gpu_index",
                f"DCGM gpu {gpu_index} on {host} taken as the rank's GPU index (NVML order assumed)",
            )
    return GpuMapping(None, None)


def _identity(row: dict[str, object]) -> GpuIdentity:
    def _int(value: object) -> int | None:
        return int(value) if isinstance(value, int) else None

    def _str(value: object) -> str | None:
        return str(value) if value is not None else None

    return GpuIdentity(
        host=_str(row.get("host")),
        rank=_int(row.get("rank")),
        local_rank=_int(row.get("local_rank")),
        gpu_index=_int(row.get("gpu_index")),
        pci_bus_id=_str(row.get("pci_bus_id")),
        gpu_uuid=_str(row.get("gpu_uuid")),
        sources=tuple(str(s) for s in (row.get("sources") or ())),  # type: ignore[attr-defined]
        assumptions=tuple(str(s) for s in (row.get("assumptions") or ())),  # type: ignore[attr-defined]
    )
