"""DCGM parser: every real sample with its exact labels and values, sentinels, times, formats, sniffing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.helpers.incident import ingest_serial, write_incident
from tests.helpers.paths import SAMPLES
from tracecore.analyzers import dcgm_fields
from tracecore.analyzers.ingest import dcgm as dcgm_ingest
from tracecore.analyzers.ingest.base import NO_CLAIM, STRONG_CLAIM, FileContext, ParseOutput
from tracecore.analyzers.ingest.dcgm import DcgmParser, parse_time_text, time_from_name
from tracecore.analyzers.ingest.manifest import HostSpec, Manifest
from tracecore.analyzers.tables import conform

DCGM = SAMPLES / "dcgm"
PARSER = DcgmParser()
MTIME = 1_795_749_600_000_000_000  # 2026-11-27T03:20:00Z


def parse_bytes(
    data: bytes, rel: str, manifest: Manifest | None = None, host_hint: str | None = None
) -> tuple[list[dict[str, Any]], ParseOutput]:
    """Parse content as file ``rel``; rows as dicts (conformed to the schema), plus the ParseOutput."""
    ctx = FileContext(Path(rel), rel, data, host_hint, manifest or Manifest(), MTIME)
    out = PARSER.parse(ctx)
    if "gpu_metrics" not in out.tables:
        return [], out
    frame = pl.from_arrow(conform("gpu_metrics", out.tables["gpu_metrics"]))
    assert isinstance(frame, pl.DataFrame)
    assert frame.height == out.records
    # Labels are stored once per label set; every row's set is there exactly once.
    label_rows = conform("gpu_labels", out.tables["gpu_labels"]).to_pylist()
    labels = {row["labels_id"]: dict(row["labels"]) for row in label_rows}
    assert len(labels) == len(label_rows)
    rows = frame.to_dicts()
    assert {row["labels_id"] for row in rows} == set(labels)
    return [{**row, "labels": labels[row["labels_id"]]} for row in rows], out


def parse_sample(name: str, **kwargs: Any) -> tuple[list[dict[str, Any]], ParseOutput]:
    return parse_bytes((DCGM / name).read_bytes(), name, **kwargs)


def problems(out: ParseOutput) -> list[str]:
    return [p.problem for p in out.problems]


SAMPLE_FILES = sorted(p for p in DCGM.iterdir() if p.name != "SOURCES.md")


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_every_sample_is_claimed_and_never_stores_a_sentinel(path: Path) -> None:
    assert PARSER.sniff(path.read_bytes()[:4096], path.name) > NO_CLAIM
    rows, out = parse_bytes(path.read_bytes(), path.name)
    assert rows or out.problems, "a file without readings must say why"
    for row in rows:
        assert row["value"] == row["value"]  # no NaN
        assert row["value"] < dcgm_fields.FP64_BLANK
        assert row["source_file"] == path.name


def test_readme_sample_drops_the_not_supported_sentinel() -> None:
    rows, out = parse_sample("readme_quickstart_curl.prom")
    assert [(r["field"], r["field_id"], r["value"], r["source_line"]) for r in rows] == [
        ("DCGM_FI_DEV_SM_CLOCK", 100, 139.0, 8),
        ("DCGM_FI_DEV_MEM_CLOCK", 101, 405.0, 9),
    ]
    assert out.rejected == {"DCGM blank/not-supported sentinel": 1}
    first = rows[0]
    assert first["gpu_index"] == 0
    assert first["gpu_uuid"] == "GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52"
    assert first["labels"] == {"gpu": "0", "UUID": "GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52"}
    assert first["metric_type"] == "gauge"
    assert first["host"] is None
    assert (first["ts_ns"], first["ts_origin"]) == (MTIME, "mtime")
    assert any("modification time" in p for p in problems(out))


def test_v100_sample_hostname_label_and_six_decimal_floats() -> None:
    rows, out = parse_sample("issue250_v100_Hostname_label.prom")
    assert not out.rejected
    got = [(r["source_line"], r["gpu_index"], r["field"], r["value"], r["metric_type"]) for r in rows]
    assert got == [
        (1, 2, "DCGM_FI_DEV_POWER_MGMT_LIMIT", 300.0, None),
        (2, 3, "DCGM_FI_DEV_POWER_MGMT_LIMIT", 300.0, None),
        (5, 0, "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", 0.0, "counter"),
        (6, 1, "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", 0.0, "counter"),
        (7, 2, "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", 0.0, "counter"),
        (8, 3, "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", 0.0, "counter"),
        (11, 0, "DCGM_FI_DEV_GPU_UTIL", 0.0, "gauge"),
    ]
    assert {r["host"] for r in rows} == {"r6i3n0"}
    assert {r["model_name"] for r in rows} == {"Tesla V100-SXM2-32GB"}
    assert rows[0]["gpu_uuid"] == "GPU-a9079f15-493e-6c1c-c78c-73ec2b840cba"
    assert rows[0]["device"] == "nvidia2"
    assert rows[0]["pci_bus_id"] is None  # this exporter version had no pci_bus_id label
    assert rows[0]["field_id"] == 160


def test_mig_and_kubernetes_labels() -> None:
    rows, out = parse_sample("pr736_mig_k8s_pod_labels.prom")
    assert [(r["field"], r["field_id"], r["gpu_index"], r["value"]) for r in rows] == [
        ("DCGM_FI_DEV_DEC_UTIL", 207, 1, 46.0),
        ("DCGM_FI_DEV_ENC_UTIL", 206, 1, 9.0),
        ("DCGM_FI_DEV_FB_FREE", 251, 1, 11275.0),
        ("DCGM_FI_DEV_FB_FREE", 251, 2, 2207.0),
    ]
    whole, mig = rows[2], rows[3]
    assert whole["pci_bus_id"] == "0000:b1:00.0"
    assert whole["model_name"] == "NVIDIA RTX 2000 Ada Generation"
    assert whole["mig_instance"] is None and whole["pod"] is None
    assert (mig["pci_bus_id"], mig["gpu_uuid"]) == (
        "0000:ca:00.0",
        "GPU-63bc0b91-2265-1b94-831c-15c41fe92675",
    )
    assert (mig["mig_instance"], mig["mig_profile"]) == ("3", "1g.6gb")
    assert (mig["pod"], mig["namespace"], mig["container"]) == (
        "triton-server-f7cb5d77-95xcf",
        "default",
        "triton-server",
    )
    assert mig["labels"]["GPU_I_PROFILE"] == "1g.6gb"
    assert mig["labels"]["pci_bus_id"] == "00000000:CA:00.0"  # labels stay as read
    # The lower-case hostname is the exporter pod's name: kept, and said so.
    assert {r["host"] for r in rows} == {"dcgm-exporter-wwwjh"}
    assert any("looks like the dcgm-exporter pod" in p for p in problems(out))


def test_exporter_pod_hostname_maps_through_the_manifest() -> None:
    manifest = Manifest(hosts=(HostSpec(name="gpu-node-4", pod="dcgm-exporter-wwwjh"),))
    rows, out = parse_sample("pr736_mig_k8s_pod_labels.prom", manifest=manifest)
    assert {r["host"] for r in rows} == {"gpu-node-4"}
    assert not any("pod" in p for p in problems(out))


def test_exporter_pod_hostname_falls_back_to_the_path_host() -> None:
    rows, out = parse_sample("pr736_mig_k8s_pod_labels.prom", host_hint="node-9")
    assert {r["host"] for r in rows} == {"node-9"}
    assert any("'node-9', used instead" in p for p in problems(out))


def test_xid_window_count_keeps_its_labels() -> None:
    rows, _ = parse_sample("pr239_xid_errors_active.prom")
    assert len(rows) == 1
    row = rows[0]
    assert (row["field"], row["field_id"], row["metric"], row["value"]) == (
        "DCGM_EXP_XID_ERRORS_COUNT",
        None,
        "DCGM_FI_DEV_XID_ERRORS_ACTIVE",
        1.0,
    )
    assert row["metric_type"] == "gauge"  # from the family's TYPE line above the renamed sample
    assert row["labels"]["xid"] == "42"
    assert row["labels"]["window_size_in_ms"] == "300000"
    assert row["labels"]["DCGM_FI_DRIVER_VERSION"] == "545.29.02"
    assert (row["host"], row["model_name"]) == ("workstation", "NVIDIA T400 4GB")


def test_clock_events_count_per_event() -> None:
    rows, _ = parse_sample("pr261_clock_events_count.prom")
    assert [(r["labels"]["clock_event"], r["value"]) for r in rows] == [
        ("gpu_idle", 2.0),
        ("sw_thermal", 1.0),
        ("hw_thermal", 1.0),
    ]
    assert {r["field"] for r in rows} == {"DCGM_EXP_CLOCK_EVENTS_COUNT"}
    assert {r["host"] for r in rows} == {"home"}


def test_legacy_1x_names_map_to_the_field() -> None:
    rows, _ = parse_sample("legacy_1x_metric_line.prom")
    assert [
        (r["field"], r["field_id"], r["metric"], r["value"], r["gpu_index"], r["gpu_uuid"]) for r in rows
    ] == [
        (
            "DCGM_FI_DEV_POWER_USAGE",
            155,
            "dcgm_power_usage",
            24.196,
            3,
            "GPU-807436aXXXYYYZZZZZZZ0547d1624eae",
        )
    ]


def test_help_type_only_file_is_reported() -> None:
    rows, out = parse_sample("issue222_help_type_block.prom")
    assert rows == [] and out.records == 0
    assert problems(out) == [
        "holds only HELP/TYPE headers for 12 metric families (DCGM_FI_DEV_SM_CLOCK, DCGM_FI_DEV_MEM_CLOCK, "
        "DCGM_FI_DEV_MEMORY_TEMP, …) and no samples: every value was blank or the scrape was cut; no readings"
    ]


def test_query_result_row_without_value_is_reported() -> None:
    rows, out = parse_sample("dcgm235_xid_errors_promql_result.txt")
    assert rows == []
    assert out.rejected == {"series without a value": 1}
    assert out.problems[0].line == 1
    assert "carry labels but no value" in out.problems[0].problem


def test_range_query_matrix() -> None:
    rows, out = parse_sample("prometheus_query_range_matrix_example.json")
    assert not out.problems and not out.rejected
    got = [(r["source_line"], r["ts_ns"], r["value"], r["labels"]["job"]) for r in rows]
    assert got == [
        (1, 1_435_781_430_781_000_000, 1.0, "prometheus"),
        (1, 1_435_781_445_781_000_000, 1.0, "prometheus"),
        (1, 1_435_781_460_781_000_000, 1.0, "prometheus"),
        (2, 1_435_781_430_781_000_000, 0.0, "node"),
        (2, 1_435_781_445_781_000_000, 0.0, "node"),
        (2, 1_435_781_460_781_000_000, 1.0, "node"),
    ]
    assert {(r["field"], r["field_id"], r["ts_origin"]) for r in rows} == {("up", None, "sample")}
    assert rows[0]["labels"] == {"job": "prometheus", "instance": "localhost:9090"}
    assert {r["host"] for r in rows} == {None}  # localhost names no machine


def test_empty_vector_is_reported() -> None:
    rows, out = parse_sample("gpu-operator983_empty_vector.json")
    assert rows == []
    assert len(out.problems) == 1 and "vector result is empty" in out.problems[0].problem


def test_dmon_profiling_fields() -> None:
    rows, out = parse_sample("dcgm244_dmon_prof_fields.txt")
    # 10 entity rows x 8 columns = 80 values, 74 of them N/A.
    assert out.rejected == {"blank value (N/A)": 74}
    got = [
        (r["source_line"], r["gpu_index"], r["metric"], r["field"], r["field_id"], r["value"], r["scrape"])
        for r in rows
    ]
    assert got == [
        (12, 0, "GRACT", "DCGM_FI_PROF_GR_ENGINE_ACTIVE", 1001, 0.888, 1),
        (12, 0, "TENSO", "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", 1004, 0.178, 1),
        (12, 0, "FP16A", "DCGM_FI_PROF_PIPE_FP16_ACTIVE", 1008, 0.001, 1),
        (13, 1, "SMACT", "DCGM_FI_PROF_SM_ACTIVE", 1002, 0.777, 1),
        (13, 1, "FP64A", "DCGM_FI_PROF_PIPE_FP64_ACTIVE", 1006, 0.0, 1),
        (13, 1, "FP32A", "DCGM_FI_PROF_PIPE_FP32_ACTIVE", 1007, 0.046, 1),
    ]
    assert {(r["ts_ns"], r["ts_origin"]) for r in rows} == {(None, "none: dmon prints no time")}
    assert rows[0]["labels"] == {"entity_group": "GPU", "entity_id": "0"}
    assert rows[0]["host"] == "b76d14397"  # the shell prompt's host: no path host given
    assert any("prints no timestamps" in p for p in problems(out))


def test_dmon_time_from_the_manifest_and_delay() -> None:
    text = (
        "$ dcgmi dmon -e 203,150 -d 500\n#Entity   GPUTL  TMPTR\nID                C\n"
        "GPU 0     97     61\nGPU 1     N/A    60\nGPU 0     98     62\nGPU 1     0      60\n"
    )
    manifest = Manifest(capture_time_ns=2_000_000_000_000_000_000)
    rows, out = parse_bytes(text.encode(), "node-3/dmon.txt", manifest=manifest, host_hint="node-3")
    got = [(r["gpu_index"], r["field"], r["value"], r["ts_ns"], r["scrape"]) for r in rows]
    end = 2_000_000_000_000_000_000
    assert got == [
        (0, "DCGM_FI_DEV_GPU_UTIL", 97.0, end - 500_000_000, 0),
        (0, "DCGM_FI_DEV_GPU_TEMP", 61.0, end - 500_000_000, 0),
        (1, "DCGM_FI_DEV_GPU_TEMP", 60.0, end - 500_000_000, 0),
        (0, "DCGM_FI_DEV_GPU_UTIL", 98.0, end, 1),
        (0, "DCGM_FI_DEV_GPU_TEMP", 62.0, end, 1),
        (1, "DCGM_FI_DEV_GPU_UTIL", 0.0, end, 1),
        (1, "DCGM_FI_DEV_GPU_TEMP", 60.0, end, 1),
    ]
    assert {r["ts_origin"] for r in rows} == {"manifest+delay"}
    assert {r["host"] for r in rows} == {"node-3"}
    assert out.rejected == {"blank value (N/A)": 1}


def test_dmon_start_comment_and_repeated_header() -> None:
    text = (
        "# started at 2026-11-27T05:00:00Z\n#Entity   SMCLK\nID\nGPU 0     1980\n"
        "#Entity   SMCLK\nID\nGPU 0     1410\ndmon was stopped due to receiving a signal\n"
    )
    rows, out = parse_bytes(text.encode(), "dmon.log")
    start = 1_795_755_600_000_000_000
    assert [(r["value"], r["ts_ns"], r["ts_origin"]) for r in rows] == [
        (1980.0, start, "comment+delay"),
        (1410.0, start + 1_000_000_000, "comment+delay"),
    ]
    assert not out.problems


def test_dmon_old_layout_with_error_is_reported() -> None:
    rows, out = parse_sample("dcgm3_dmon_old_header_error.txt")
    assert rows == []
    assert [(p.line, p.problem) for p in out.problems] == [
        (
            4,
            "dcgmi dmon: Error setting watches. Result: The third-party Profiling module returned an unrecoverable error",
        )
    ]


def test_counters_csv_is_a_configuration_file() -> None:
    rows, out = parse_sample("dcgm-exporter_default-counters.csv")
    assert rows == [] and out.records == 0 and not out.rejected
    assert problems(out) == [
        "dcgm-exporter counters CSV: configuration (the list of exported fields), not readings; 26 fields "
        "enabled, 37 commented out; not exported with this list: clock-event reasons, power/thermal "
        "violation counters, ECC counters, NVLink error counters"
    ]


SCRAPES = """# scraped at 2026-11-27T05:40:00Z
# HELP DCGM_FI_DEV_GPU_UTIL_RATIO GPU utilization.
# TYPE DCGM_FI_DEV_GPU_UTIL_RATIO gauge
DCGM_FI_DEV_GPU_UTIL_RATIO{gpu="0",UUID="GPU-0",pci_bus_id="00000000:3B:00.0",hostname="node-1"} 97
DCGM_FI_DEV_XID_ERROR{gpu="0",UUID="GPU-0",pci_bus_id="00000000:3B:00.0",hostname="node-1",err_code="79",err_msg="GPU has fallen off the bus"} 79
DCGM_FI_DEV_FAN_SPEED{gpu="0",hostname="node-1"} 2147483647
DCGM_FI_DEV_POWER_USAGE{gpu="0",hostname="node-1"} 140737488355328.000000
DCGM_FI_DEV_GPU_TEMP{gpu="0",hostname="node-1"} NaN
DCGM_FI_DEV_SM_CLOCK{gpu="0",hostname="node-1"} banana
# scraped at 1795758015
DCGM_FI_DEV_GPU_UTIL_RATIO{gpu="0",UUID="GPU-0",pci_bus_id="00000000:3B:00.0",hostname="node-1"} 0
"""


def test_scrapes_in_one_file_new_names_and_every_sentinel() -> None:
    rows, out = parse_bytes(SCRAPES.encode(), "node-1/dcgm.prom")
    got = [
        (r["field"], r["field_id"], r["metric"], r["value"], r["ts_ns"], r["ts_origin"], r["scrape"])
        for r in rows
    ]
    assert got == [
        (
            "DCGM_FI_DEV_GPU_UTIL",
            203,
            "DCGM_FI_DEV_GPU_UTIL_RATIO",
            97.0,
            1_795_758_000_000_000_000,
            "comment",
            1,
        ),
        (
            "DCGM_FI_DEV_XID_ERRORS",
            230,
            "DCGM_FI_DEV_XID_ERROR",
            79.0,
            1_795_758_000_000_000_000,
            "comment",
            1,
        ),
        (
            "DCGM_FI_DEV_GPU_UTIL",
            203,
            "DCGM_FI_DEV_GPU_UTIL_RATIO",
            0.0,
            1_795_758_015_000_000_000,
            "comment",
            2,
        ),
    ]
    assert out.rejected == {"DCGM blank/not-supported sentinel": 2, "NaN value": 1, "unparseable value": 1}
    assert rows[1]["labels"]["err_code"] == "79"
    assert rows[0]["pci_bus_id"] == "0000:3b:00.0"
    assert [p.line for p in out.problems] == [9]


def test_sample_timestamps_and_time_from_the_file_name() -> None:
    text = 'DCGM_FI_DEV_SM_CLOCK{gpu="1"} 1980 1795758000123\nDCGM_FI_DEV_MEM_CLOCK{gpu="1"} 2619\n'
    rows, _ = parse_bytes(text.encode(), "scrapes/dcgm_node-2_1795758060.prom", host_hint="node-2")
    assert [(r["ts_ns"], r["ts_origin"], r["host"]) for r in rows] == [
        (1_795_758_000_123_000_000, "sample", "node-2"),
        (1_795_758_060_000_000_000, "file-name", "node-2"),
    ]
    assert time_from_name("metrics-2026-11-27T05-41-00Z.prom") == 1_795_758_060_000_000_000
    assert time_from_name("dcgm_20261127T054100.prom") == 1_795_758_060_000_000_000
    assert parse_time_text("2026-11-27 05:41:00") == 1_795_758_060_000_000_000
    assert parse_time_text("1795758060.5") == 1_795_758_060_500_000_000


def test_manifest_capture_time_before_mtime() -> None:
    rows, _ = parse_bytes(
        b'DCGM_FI_DEV_SM_CLOCK{gpu="0"} 1980\n', "x.prom", manifest=Manifest(capture_time_ns=42)
    )
    assert [(r["ts_ns"], r["ts_origin"]) for r in rows] == [(42, "manifest")]


def test_repeated_series_without_times_count_as_scrapes() -> None:
    text = 'DCGM_FI_DEV_SM_CLOCK{gpu="0"} 1980\nDCGM_FI_DEV_SM_CLOCK{gpu="0"} 1410\n'
    rows, out = parse_bytes(text.encode(), "x.prom", manifest=Manifest(capture_time_ns=42))
    assert [(r["value"], r["scrape"]) for r in rows] == [(1980.0, 0), (1410.0, 1)]
    assert any("2 scrapes without per-scrape times" in p for p in problems(out))


def test_vector_json_string_values_and_prometheus_error() -> None:
    document = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {
                    "metric": {"__name__": "DCGM_FI_DEV_ROW_REMAP_FAILED", "gpu": "5", "Hostname": "node-4"},
                    "value": [1795758000.5, "1"],
                },
                {
                    "metric": {"__name__": "DCGM_FI_DEV_GPU_TEMP", "gpu": "6", "Hostname": "node-4"},
                    "value": [1795758000.5, "+Inf"],
                },
            ],
        },
    }
    rows, out = parse_bytes(json.dumps(document).encode(), "q.json")
    assert [(r["field"], r["field_id"], r["gpu_index"], r["host"], r["value"], r["ts_ns"]) for r in rows] == [
        ("DCGM_FI_DEV_ROW_REMAP_FAILURE", 395, 5, "node-4", 1.0, 1_795_758_000_500_000_000)
    ]
    assert out.rejected == {"infinite value": 1}
    error = {"status": "error", "errorType": "bad_data", "error": "invalid parameter 'query'"}
    rows, out = parse_bytes(json.dumps(error).encode(), "q.json")
    assert rows == [] and "bad_data: invalid parameter 'query'" in out.problems[0].problem


def test_damaged_lines_keep_the_good_ones() -> None:
    text = 'DCGM_FI_DEV_SM_CLOCK{gpu="0"} 1980\n{{{ garbage\nDCGM_FI_DEV_SM_CLOCK{gpu="1"} 1975\n'
    rows, out = parse_bytes(text.encode(), "x.prom")
    assert [r["value"] for r in rows] == [1980.0, 1975.0]
    assert out.rejected == {"malformed line": 1}
    assert out.problems[0].line == 2


@pytest.mark.parametrize(
    "head",
    [
        b"[ 1234.567890] NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, GPU has fallen off the bus.\n",
        b"Nov 27 05:40:00 node-1 kernel: NVRM: Xid (PCI:0000:3b:00): 79\n",
        b"[rank3]:[E1127 05:40:00.000] [PG 0 Rank 3] Watchdog caught collective operation timeout\n",
        b"2026-11-27 05:40:00,000 INFO train.py:88 step 100 loss 2.31 DCGM_FI_DEV_GPU_UTIL logged\n",
        b"Process 4242: python train.py\nPython v3.11.7 (/usr/bin/python3)\n",
        b'{"version": "2.10", "entries": []}',
    ],
)
def test_sniff_leaves_other_sources_alone(head: bytes) -> None:
    assert PARSER.sniff(head, "node-1.log") == NO_CLAIM


def test_sniff_claims_each_format_by_content() -> None:
    assert PARSER.sniff(b'DCGM_FI_DEV_GPU_UTIL{gpu="0"} 1\n', "x.txt") == STRONG_CLAIM
    assert PARSER.sniff(b"#Entity   GPUTL\nID\nGPU 0  1\n", "x.txt") == STRONG_CLAIM
    assert (
        PARSER.sniff(b'{"status":"success","data":{"resultType":"matrix","result":[]}}', "x.json") > NO_CLAIM
    )


def test_ingest_engine_routes_samples_to_the_dcgm_source(tmp_path: Path) -> None:
    root = write_incident(
        tmp_path / "incident",
        {
            "node-1/dcgm/metrics.prom": (DCGM / "issue250_v100_Hostname_label.prom").read_text(),
            "node-1/dmon.txt": (DCGM / "dcgm244_dmon_prof_fields.txt").read_text(),
        },
    )
    result = ingest_serial(root)
    table = result.tables["gpu_metrics"]
    assert table.num_rows == 13
    assert sorted(set(table.column("source_file").to_pylist())) == [
        "node-1/dcgm/metrics.prom",
        "node-1/dmon.txt",
    ]


def test_large_range_query_fast_path_matches_the_standard_path() -> None:
    # Over 1 MB, the points are read by Polars' JSON reader; the result must be the same rows.
    result = []
    for gpu in range(4):
        labels = {
            "__name__": "DCGM_FI_DEV_SM_CLOCK",
            "gpu": str(gpu),
            "Hostname": "node-2",
            "UUID": f"GPU-{gpu}",
        }
        points = [[1_795_758_000 + 15 * i, "NaN" if i == 3 else str(1980 - i % 7)] for i in range(12_000)]
        result.append({"metric": labels, "values": points})
    result.append(
        {
            "metric": {"__name__": "DCGM_FI_DEV_GPU_UTIL", "gpu": "0", "Hostname": "node-2"},
            "value": [1_795_758_000.25, "97"],
        }
    )
    big = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}}).encode()
    assert len(big) > 1_000_000
    fast_rows, fast = parse_bytes(big, "big.json")
    standard = ParseOutput()
    ctx = FileContext(Path("big.json"), "big.json", big, None, Manifest(), MTIME)
    table = dcgm_ingest._parse_json(ctx, standard, big, fast=False)
    assert table is not None
    standard_frame = pl.from_arrow(conform("gpu_metrics", table["gpu_metrics"]))
    assert isinstance(standard_frame, pl.DataFrame)
    assert fast.records == 4 * 11_999 + 1 and fast.rejected == standard.rejected == {"NaN value": 4}
    assert [{k: v for k, v in r.items() if k != "labels"} for r in fast_rows] == standard_frame.to_dicts()
    assert fast_rows[-1]["ts_ns"] == 1_795_758_000_250_000_000 and fast_rows[-1]["field_id"] == 203
    assert fast_rows[1]["labels"] == {"gpu": "0", "Hostname": "node-2", "UUID": "GPU-0"}


def test_sniff_leaves_prose_about_dcgm_alone() -> None:
    # Documentation that quotes `dcgmi dmon` and `#Entity` inside sentences is not dmon output.
    assert PARSER.sniff((DCGM / "SOURCES.md").read_bytes()[:4096], "SOURCES.md") == NO_CLAIM
    assert PARSER.sniff(b"root@gpu01:/# dcgmi dmon -e 1004\n# Entity  TENSO\n", "x.txt") == STRONG_CLAIM
    fenced = b'Notes\n```\n# TYPE DCGM_FI_DEV_GPU_UTIL gauge\nDCGM_FI_DEV_GPU_UTIL{gpu="0"} 97\n```\n'
    assert PARSER.sniff(fenced, "notes.txt") == NO_CLAIM


def test_dmon_mig_children_take_their_parent_gpu() -> None:
    text = "#Entity    FBUSD\nID\nGPU 0      70000\nGPU-I 3    5120\nGPU 1      100\n"
    rows, _ = parse_bytes(text.encode(), "dmon.txt", host_hint="node-5")
    assert [(r["gpu_index"], r["mig_instance"], r["field_id"], r["value"]) for r in rows] == [
        (0, None, 252, 70000.0),
        (0, "3", 252, 5120.0),
        (1, None, 252, 100.0),
    ]


def test_nvlink_template_labels_and_crlf_lines() -> None:
    text = (
        "# scraped at 2026-11-27T05:40:00Z\r\n"
        "# TYPE DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL counter\r\n"
        'DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL{nvlink="3",gpu="1",gpu_uuid="GPU-1",'
        'pci_bus_id="00000000:2A:00.0",model_name="NVIDIA H100 80GB HBM3",hostname="node-1"} 12\r\n'
    )
    rows, out = parse_bytes(text.encode(), "nvlink.prom")
    assert not out.problems and not out.rejected
    (row,) = rows
    assert (row["field_id"], row["value"], row["metric_type"], row["ts_origin"]) == (
        409,
        12.0,
        "counter",
        "comment",
    )
    assert (row["gpu_uuid"], row["model_name"], row["pci_bus_id"], row["host"]) == (
        "GPU-1",
        "NVIDIA H100 80GB HBM3",
        "0000:2a:00.0",
        "node-1",
    )
    assert row["labels"]["nvlink"] == "3"


def test_large_matrix_csv_path_equals_the_json_reader() -> None:
    # > 1 MB compact range query with blank, NaN, sentinel, text values, an empty series and a
    # fractional time: the CSV reading of the points must give exactly what the JSON reader gives.
    result = []
    for gpu in range(8):
        values = [[1_795_766_400 + i * 15, str(1980 - i % 7)] for i in range(8000)]
        result.append(
            {
                "metric": {"__name__": "DCGM_FI_DEV_SM_CLOCK", "gpu": str(gpu), "Hostname": "node-1"},
                "values": values,
            }
        )
    result[0]["values"][3][1] = "NaN"
    result[0]["values"][4][1] = ""
    result[1]["values"][0][1] = "9223372036854775794"
    result[2]["values"] = []
    result[3]["values"][5][0] = 1_795_766_400.5
    result[4]["metric"]["note"] = 'a"],[b'
    result[5]["values"][7][1] = "abc"
    data = json.dumps(
        {"status": "success", "data": {"resultType": "matrix", "result": result}}, separators=(",", ":")
    ).encode()
    assert len(data) > 1_000_000
    ctx = FileContext(path=Path("m.json"), rel="m.json", data=data, host_hint=None, manifest=Manifest())
    fast, slow = ParseOutput(), ParseOutput()
    by_csv = dcgm_ingest._parse_matrix_csv(ctx, data, fast)
    by_json = dcgm_ingest._parse_json_fast(ctx, data, data.decode(), slow)
    assert by_csv is not False and by_csv is not None and by_json is not False and by_json is not None
    assert not isinstance(by_csv, bool) and not isinstance(by_json, bool)
    assert by_csv["gpu_metrics"].num_rows == 8 * 8000 - 8000 - 4 == 55996
    assert by_csv["gpu_metrics"].equals(by_json["gpu_metrics"])
    assert by_csv["gpu_labels"].equals(by_json["gpu_labels"])
    assert fast.rejected == slow.rejected
    assert [str(p) for p in fast.problems] == [str(p) for p in slow.problems]
    # Pretty-printed JSON is left to the JSON readers.
    spaced = json.dumps(json.loads(data)).encode()
    assert dcgm_ingest._parse_matrix_csv(ctx, spaced, ParseOutput()) is False


def test_plain_matrix_values_read_as_numbers_equal_the_json_reader() -> None:
    # Plain numbers skip classification (read as Float64 at once): same tables as the JSON reader.
    texts = ["1980", "-0.5", "12.25", "1e3", "+5", "0", "7.000"]
    result = [
        {
            "metric": {"__name__": "DCGM_FI_DEV_GPU_TEMP", "gpu": str(gpu), "Hostname": "node-3"},
            "values": [[1_795_766_400 + 15 * i, texts[(i + gpu) % len(texts)]] for i in range(9000)],
        }
        for gpu in range(8)
    ]
    result[2]["values"][4][0] = 1_795_766_400.25
    data = json.dumps(
        {"status": "success", "data": {"resultType": "matrix", "result": result}}, separators=(",", ":")
    ).encode()
    assert len(data) > 1_000_000
    ctx = FileContext(path=Path("p.json"), rel="p.json", data=data, host_hint=None, manifest=Manifest())
    by_csv = dcgm_ingest._parse_matrix_csv(ctx, data, ParseOutput())
    by_json = dcgm_ingest._parse_json_fast(ctx, data, data.decode(), ParseOutput())
    assert isinstance(by_csv, dict) and isinstance(by_json, dict)
    assert by_csv["gpu_metrics"].num_rows == 72_000
    assert by_csv["gpu_metrics"].equals(by_json["gpu_metrics"])
    assert by_csv["gpu_labels"].equals(by_json["gpu_labels"])
    values = by_csv["gpu_metrics"].column("value").to_pylist()
    assert values[:7] == [1980.0, -0.5, 12.25, 1000.0, 5.0, 0.0, 7.0]
    assert by_csv["gpu_metrics"].column("ts_ns")[2 * 9000 + 4].as_py() == 1_795_766_400_250_000_000
