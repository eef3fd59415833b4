"""DCGM corroboration signals: counter deltas, latest values, vanished series, idle outliers, rank mapping."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tests.helpers.tables import tables_from_rows
from tracecore.analyzers import dcgm_fields, dcgm_signals
from tracecore.analyzers.ingest.base import FileContext
from tracecore.analyzers.ingest.dcgm import DcgmParser
from tracecore.analyzers.ingest.manifest import Manifest
from tracecore.analyzers.tables import Tables, conform

T0 = 1_795_758_000  # 2026-11-27T05:40:00Z
PCI = ["18", "2A", "3B", "5D"]


def series(name: str, gpu: int, value: object, host: str = "node-1", extra: str = "") -> str:
    return (
        f'{name}{{gpu="{gpu}",UUID="GPU-{gpu}",pci_bus_id="00000000:{PCI[gpu]}:00.0",'
        f'Hostname="{host}"{extra}}} {value}'
    )


def scrapes(*blocks: dict[str, dict[int, object]], host: str = "node-1") -> str:
    """Exposition text: one ``# scraped at`` block per dict (field → gpu → value; None = absent)."""
    lines: list[str] = []
    for i, block in enumerate(blocks):
        lines.append(f"# scraped at {T0 + 15 * i}")
        for name, per_gpu in block.items():
            lines += [series(name, g, v, host) for g, v in per_gpu.items() if v is not None]
    return "\n".join(lines) + "\n"


def tables_of(*files: tuple[str, str], identity: dict[str, list[object]] | None = None) -> Tables:
    parser = DcgmParser()
    parts = []
    for rel, text in files:
        out = parser.parse(FileContext(Path(rel), rel, text.encode(), None, Manifest()))
        parts.append(conform("gpu_metrics", out.tables["gpu_metrics"]))
    import pyarrow as pa

    tables = {"gpu_metrics": pa.concat_tables(parts)}
    if identity is not None:
        tables["identity"] = conform("identity", identity)
    return Tables(tables)


def test_empty_tables_give_empty_frames_with_the_fixed_columns() -> None:
    empty = Tables({})
    assert dcgm_signals.counter_deltas(empty, ["DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"]).schema == pl.Schema(
        dcgm_signals.DELTA_SCHEMA
    )
    assert dcgm_signals.latest_values(empty, ["DCGM_FI_DEV_XID_ERRORS"]).schema == pl.Schema(
        dcgm_signals.LATEST_SCHEMA
    )
    assert dcgm_signals.vanished_series(empty).schema == pl.Schema(dcgm_signals.VANISHED_SCHEMA)
    assert dcgm_signals.idle_outliers(empty).schema == pl.Schema(dcgm_signals.IDLE_SCHEMA)


ECC = "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"
XID = "DCGM_FI_DEV_XID_ERRORS"
UTIL = "DCGM_FI_DEV_GPU_UTIL"

THREE = scrapes(
    {UTIL: {0: 99, 1: 98, 2: 97}, ECC: {0: 0, 1: 0, 2: 0}, XID: {0: 0, 1: 0, 2: 0}},
    {UTIL: {0: 99, 1: 0, 2: 97}, ECC: {0: 0, 1: 2, 2: 0}, XID: {0: 0, 1: 48, 2: 0}},
    {UTIL: {0: 99, 1: 0, 2: None}, ECC: {0: 0, 1: 3, 2: None}, XID: {0: 0, 1: 48, 2: None}},
)


def test_counter_deltas_per_gpu() -> None:
    frame = dcgm_signals.counter_deltas(tables_of(("node-1/dcgm.prom", THREE)), [ECC])
    assert frame.select("gpu_index", "pci_bus_id", "first_value", "last_value", "delta").rows() == [
        (0, "0000:18:00.0", 0.0, 0.0, 0.0),
        (1, "0000:2a:00.0", 0.0, 3.0, 3.0),
        (2, "0000:3b:00.0", 0.0, 0.0, 0.0),
    ]
    gpu1 = frame.row(1, named=True)
    assert (gpu1["first_ts_ns"], gpu1["last_ts_ns"]) == (T0 * 10**9, (T0 + 30) * 10**9)
    assert (gpu1["host"], gpu1["gpu_uuid"], gpu1["field"]) == ("node-1", "GPU-1", ECC)
    assert (gpu1["source_file"], gpu1["source_line"]) == ("node-1/dcgm.prom", 25)


def test_latest_values_accept_the_46_spelling() -> None:
    frame = dcgm_signals.latest_values(tables_of(("node-1/dcgm.prom", THREE)), ["DCGM_FI_DEV_XID_ERROR"])
    assert frame.select("gpu_index", "field", "value", "ts_ns").rows() == [
        (0, XID, 0.0, (T0 + 30) * 10**9),
        (1, XID, 48.0, (T0 + 30) * 10**9),
        (2, XID, 0.0, (T0 + 15) * 10**9),
    ]


def test_vanished_series_names_the_gpu_that_stopped() -> None:
    frame = dcgm_signals.vanished_series(tables_of(("node-1/dcgm.prom", THREE)))
    assert frame.rows() == [
        ("node-1", 2, "0000:3b:00.0", "GPU-2", (T0 + 15) * 10**9, (T0 + 30) * 10**9, "node-1/dcgm.prom", 20)
    ]


def test_single_gpu_host_and_a_steady_host_vanish_nothing() -> None:
    steady = scrapes({UTIL: {0: 99, 1: 98}}, {UTIL: {0: 99, 1: 98}})
    lonely = scrapes({UTIL: {0: 99}}, {UTIL: {0: 99}}, host="node-2")
    assert dcgm_signals.vanished_series(tables_of(("a.prom", steady), ("b.prom", lonely))).height == 0


def test_idle_outlier_after_a_drop() -> None:
    frame = dcgm_signals.idle_outliers(tables_of(("node-1/dcgm.prom", THREE)))
    assert frame.height == 1
    row = frame.row(0, named=True)
    assert (
        row["gpu_index"],
        row["field"],
        row["value"],
        row["peers"],
        row["idle_samples"],
        row["was_busy"],
    ) == (
        1,
        UTIL,
        0.0,
        1,
        2,
        True,
    )
    assert row["peer_mean"] == 99.0
    assert (row["idle_from_ts_ns"], row["last_ts_ns"]) == ((T0 + 15) * 10**9, (T0 + 30) * 10**9)


def test_idle_outliers_need_busy_peers_and_read_ratios() -> None:
    all_idle = scrapes({UTIL: {0: 0, 1: 0, 2: 0}})
    assert dcgm_signals.idle_outliers(tables_of(("a.prom", all_idle))).height == 0
    recovered = scrapes({UTIL: {0: 99, 1: 0, 2: 97}}, {UTIL: {0: 99, 1: 95, 2: 97}})
    assert dcgm_signals.idle_outliers(tables_of(("b.prom", recovered))).height == 0
    ratio = scrapes({"DCGM_FI_PROF_GR_ENGINE_ACTIVE": {0: "0.910", 1: "0.002", 2: "0.880"}})
    frame = dcgm_signals.idle_outliers(tables_of(("c.prom", ratio)))
    assert frame.select("gpu_index", "field", "was_busy").rows() == [
        (1, "DCGM_FI_PROF_GR_ENGINE_ACTIVE", False)
    ]


def test_mig_instances_and_unidentified_series_are_left_out() -> None:
    text = (
        'DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-0",GPU_I_ID="1",GPU_I_PROFILE="1g.10gb",Hostname="n"} 5\n'
        'DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-0",Hostname="n"} 70000\n'
        'up{job="dcgm"} 1\n'
    )
    frame = dcgm_signals.latest_values(tables_of(("n/x.prom", text)), ["DCGM_FI_DEV_FB_USED", "up"])
    assert frame.select("gpu_index", "value").rows() == [(0, 70000.0)]


def identity(**columns: list[object]) -> dict[str, list[object]]:
    return columns


def test_rank_for_gpu_by_pci_uuid_then_index() -> None:
    ident = identity(
        rank=[4, 5, 6],
        host=["node-1", "node-1", "node-1"],
        gpu_index=[0, 1, 2],
        pci_bus_id=["0000:18:00.0", None, None],
        gpu_uuid=[None, "GPU-1", None],
    )
    tables = tables_of(("node-1/dcgm.prom", THREE), identity=ident)
    by_pci = dcgm_signals.rank_for_gpu(tables, "node-1", 0, "0000:18:00.0", "GPU-0")
    assert by_pci.identity is not None and (by_pci.identity.rank, by_pci.matched_by) == (4, "pci_bus_id")
    by_uuid = dcgm_signals.rank_for_gpu(tables, "node-1", 1, "0000:2a:00.0", "GPU-1")
    assert by_uuid.identity is not None and (by_uuid.identity.rank, by_uuid.matched_by) == (5, "gpu_uuid")
    by_index = dcgm_signals.rank_for_gpu(tables, "node-1", 2, "0000:3b:00.0", "GPU-2")
    assert by_index.identity is not None and (by_index.identity.rank, by_index.matched_by) == (6, "gpu_index")
    assert by_index.assumption == "DCGM gpu 2 on node-1 taken as the rank's GPU index (NVML order assumed)"
    none = dcgm_signals.rank_for_gpu(tables, "node-9", 3, None, None)
    assert (none.identity, none.matched_by) == (None, None)


def test_field_table_names_old_and_new() -> None:
    assert dcgm_fields.canonical("DCGM_FI_DEV_GPU_UTIL_RATIO") == ("DCGM_FI_DEV_GPU_UTIL", 203)
    assert dcgm_fields.canonical("DCGM_FI_DEV_CLOCKS_EVENT_REASONS") == (
        "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
        112,
    )
    assert dcgm_fields.canonical("DCGM_FI_DEV_ROW_REMAP_UNCORRECTABLE_TOTAL") == (
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
        393,
    )
    assert dcgm_fields.canonical("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_TOTAL") == (
        "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
        409,
    )
    assert dcgm_fields.canonical("dcgm_ecc_dbe_volatile_total") == ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", 311)
    assert dcgm_fields.canonical("node_load1") == ("node_load1", None)
    assert dcgm_fields.BY_DMON["TENSO"].field_id == 1004
    assert dcgm_fields.decode_clock_events(0x1FF) == [
        "GPU_IDLE",
        "CLOCKS_SETTING",
        "SW_POWER_CAP",
        "HW_SLOWDOWN",
        "SYNC_BOOST",
        "SW_THERMAL",
        "HW_THERMAL",
        "HW_POWER_BRAKE",
        "DISPLAY_CLOCKS",
    ]
    assert dcgm_fields.is_blank(9223372036854775794.0, "int64", True)
    assert dcgm_fields.is_blank(2147483632.0, "int32", True)
    assert not dcgm_fields.is_blank(2147483632.0, "int64", True)
    assert dcgm_fields.is_blank(140737488355328.0, "double", False)
    assert not dcgm_fields.is_blank(652.25, "double", False)


def _naive_order(tables: Tables) -> pl.DataFrame:
    """The reading order by definition: filter, then a stable sort on the order keys."""
    frame = tables.df("gpu_metrics")
    keep = (
        pl.any_horizontal(
            pl.col("gpu_index").is_not_null(),
            pl.col("pci_bus_id").is_not_null(),
            pl.col("gpu_uuid").is_not_null(),
        )
        & pl.col("mig_instance").is_null()
        & pl.col("value").is_not_null()
    )
    return frame.filter(keep).sort(
        ["ts_ns", "source_file", "scrape", "source_line"], nulls_last=False, maintain_order=True
    )


def test_gpu_rows_order_matches_a_full_sort_in_and_out_of_file_order() -> None:
    # Rows in file/scrape/line order (one stable sort by time suffices) and rows that are not
    # (files listed out of order, a null time, a MIG row, a row without GPU identity).
    base = {"host": "node-0", "field": "DCGM_FI_DEV_GPU_TEMP", "metric": "DCGM_FI_DEV_GPU_TEMP"}
    ordered = [
        {
            **base,
            "source_file": "a.prom",
            "source_line": 1,
            "scrape": 0,
            "gpu_index": 0,
            "ts_ns": 20,
            "value": 1.0,
        },
        {
            **base,
            "source_file": "a.prom",
            "source_line": 2,
            "scrape": 0,
            "gpu_index": 1,
            "ts_ns": 10,
            "value": 2.0,
        },
        {
            **base,
            "source_file": "a.prom",
            "source_line": 3,
            "scrape": 1,
            "gpu_index": 0,
            "ts_ns": 10,
            "value": 3.0,
        },
        {
            **base,
            "source_file": "b.prom",
            "source_line": 1,
            "scrape": 0,
            "gpu_index": 0,
            "ts_ns": None,
            "value": 4.0,
        },
        {
            **base,
            "source_file": "b.prom",
            "source_line": 2,
            "scrape": 0,
            "gpu_index": 1,
            "ts_ns": 20,
            "value": 5.0,
        },
    ]
    shuffled = [ordered[3], ordered[4], *ordered[:3]]
    shuffled += [
        {
            **base,
            "source_file": "a.prom",
            "source_line": 9,
            "gpu_index": 0,
            "mig_instance": "1",
            "ts_ns": 5,
            "value": 6.0,
        },
        {
            "host": "node-0",
            "field": "up",
            "metric": "up",
            "source_file": "a.prom",
            "source_line": 8,
            "ts_ns": 5,
            "value": 1.0,
        },
    ]
    for rows in (ordered, shuffled):
        tables = tables_from_rows(gpu_metrics=rows)
        got = dcgm_signals.gpu_rows(tables)
        expected = _naive_order(tables)
        assert got.get_column("value").to_list() == expected.get_column("value").to_list()
        assert got.get_column("value").to_list() == [4.0, 2.0, 3.0, 1.0, 5.0]
        narrow = dcgm_signals.gpu_rows(tables, ["DCGM_FI_DEV_GPU_TEMP"], ["gpu_index", "value"])
        assert narrow.columns == ["gpu_index", "value"]
        assert narrow.get_column("value").to_list() == [4.0, 2.0, 3.0, 1.0, 5.0]
        by_file = dcgm_signals.gpu_rows_file_order(tables, ["DCGM_FI_DEV_GPU_TEMP"], ["ts_ns", "value"])
        # Same rows; among equal times the reading order (file, scrape, line).
        expected_pairs = sorted(
            zip(expected["ts_ns"].to_list(), expected["value"].to_list(), strict=True), key=str
        )
        assert sorted(by_file.rows(), key=str) == expected_pairs
        tens = by_file.filter(pl.col("ts_ns") == 10).get_column("value").to_list()
        assert tens == [2.0, 3.0]


def test_composite_key_is_equal_exactly_where_the_columns_are() -> None:
    # Categorical, integer and null values; narrow ranges are packed, wide ones (ns times) made
    # dense, and other types fall back to group numbers: every way, equal keys = equal rows.
    frame = pl.DataFrame(
        {
            "host": pl.Series(["a", "b", None, "a", "b", "a", None], dtype=pl.Categorical),
            "gpu": pl.Series([0, 1, 0, None, 1, 0, None], dtype=pl.Int32),
            "ts": [1_795_758_000_000_000_000, 5, 5, -(2**62), 5, 1_795_758_000_000_000_000, -(2**62)],
            "name": ["x", "y", "x", None, "y", "x", None],
        }
    )
    for columns in (["host", "gpu"], ["host", "gpu", "ts"], ["gpu", "name"], ["ts"]):
        key = dcgm_signals.composite_key(frame, columns)
        assert key.dtype == pl.Int64 and key.len() == frame.height
        rows = frame.select(columns).rows()
        for i in range(frame.height):
            for j in range(frame.height):
                assert (key[i] == key[j]) == (rows[i] == rows[j]), (columns, i, j)
    # Packed keys rise with the first column, then the next (nulls first).
    packed = dcgm_signals.composite_key(frame, ["gpu", "host"]).to_list()
    order = sorted(range(frame.height), key=lambda i: packed[i])
    assert [frame["gpu"][i] for i in order] == [None, None, 0, 0, 0, 1, 1]
