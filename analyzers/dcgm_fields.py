"""DCGM field table: numeric id ↔ names (pre-4.6 and DCGM 4.6), unit, value type, dmon short name.

Field ids are stable across DCGM releases; names are not. DCGM 4.6 renamed most fields under its
"Field Naming Standard" (``DCGM_FI_DEV_GPU_UTIL`` → ``DCGM_FI_DEV_GPU_UTIL_RATIO``,
``DCGM_FI_DEV_XID_ERRORS`` → ``DCGM_FI_DEV_XID_ERROR``, …) and kept the old spellings as
deprecated aliases; dcgm-exporter still ships the old names. tracecore stores the *canonical* name,
which is the pre-4.6 spelling, plus the numeric id, so detectors can match either export.

Sources: DCGM 4.6 ``testing/python3/dcgm_fields.py`` / ``dcgmlib/dcgm_fields.h`` (ids, new names),
``dcgmlib/src/dcgm_fields.cpp`` (dmon short names), dcgm-exporter ``etc/default-counters.csv``
(exporter names, units in the help text) and ``etc/1.x-compatibility-metrics.csv`` (1.x names).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# DCGM's "no data" encodings (dcgm_structs.h): every value at or above the base is blank,
# not-found, not-supported, not-permissioned or similar — never a reading.
INT64_BLANK = 0x7FFFFFFFFFFFFFF0  # 9223372036854775792
INT32_BLANK = 0x7FFFFFF0  # 2147483632
FP64_BLANK = 140737488355328.0  # 2**47


@dataclass(frozen=True)
class FieldSpec:
    """One DCGM field.

    ``name`` is the canonical (pre-4.6) spelling stored in ``gpu_metrics.field``; ``new_name`` the
    DCGM 4.6 spelling when it differs; ``aliases`` other spellings seen in exports (older names,
    dcgm-exporter 1.x metric names). ``kind`` is DCGM's value type (int64, int32, double), which
    decides which blank sentinel applies. ``counter`` marks cumulative fields (deltas are meaningful).
    """

    field_id: int
    name: str
    new_name: str | None
    unit: str
    kind: str
    counter: bool = False
    dmon: str | None = None
    aliases: tuple[str, ...] = ()


_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(1, "DCGM_FI_DRIVER_VERSION", "DCGM_FI_SYSTEM_DRIVER_VERSION", "", "string"),
    FieldSpec(100, "DCGM_FI_DEV_SM_CLOCK", None, "MHz", "int64", dmon="SMCLK", aliases=("dcgm_sm_clock",)),
    FieldSpec(
        101, "DCGM_FI_DEV_MEM_CLOCK", None, "MHz", "int64", dmon="MMCLK", aliases=("dcgm_memory_clock",)
    ),
    FieldSpec(110, "DCGM_FI_DEV_APP_SM_CLOCK", None, "MHz", "int64", dmon="SACLK"),
    FieldSpec(111, "DCGM_FI_DEV_APP_MEM_CLOCK", None, "MHz", "int64", dmon="MACLK"),
    FieldSpec(
        112,
        "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
        "DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
        "bitmask",
        "int64",
        dmon="DVCCTR",
        aliases=("dcgm_clock_throttle_reasons",),
    ),
    FieldSpec(113, "DCGM_FI_DEV_MAX_SM_CLOCK", None, "MHz", "int64", dmon="SMMAX"),
    FieldSpec(114, "DCGM_FI_DEV_MAX_MEM_CLOCK", None, "MHz", "int64", dmon="MMMAX"),
    FieldSpec(
        140,
        "DCGM_FI_DEV_MEMORY_TEMP",
        "DCGM_FI_DEV_MEMORY_TEMP_CELSIUS",
        "C",
        "int64",
        dmon="MMTMP",
        aliases=("dcgm_memory_temp",),
    ),
    FieldSpec(
        150,
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_GPU_TEMP_CELSIUS",
        "C",
        "int64",
        dmon="TMPTR",
        aliases=("dcgm_gpu_temp",),
    ),
    FieldSpec(
        155,
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_BOARD_POWER_WATTS",
        "W",
        "double",
        dmon="POWER",
        aliases=("dcgm_power_usage",),
    ),
    FieldSpec(
        156,
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        None,
        "mJ",
        "int64",
        counter=True,
        dmon="TOTEC",
        aliases=("dcgm_total_energy_consumption",),
    ),
    FieldSpec(
        158, "DCGM_FI_DEV_SLOWDOWN_TEMP", "DCGM_FI_DEV_GPU_TEMP_SLOWDOWN_CELSIUS", "C", "int64", dmon="SDTMP"
    ),
    FieldSpec(
        159, "DCGM_FI_DEV_SHUTDOWN_TEMP", "DCGM_FI_DEV_GPU_TEMP_SHUTDOWN_CELSIUS", "C", "int64", dmon="SHTMP"
    ),
    FieldSpec(
        160, "DCGM_FI_DEV_POWER_MGMT_LIMIT", "DCGM_FI_DEV_BOARD_POWER_LIMIT_REQUESTED_WATTS", "W", "double"
    ),
    FieldSpec(190, "DCGM_FI_DEV_PSTATE", "DCGM_FI_DEV_GPU_PSTATE", "", "int32"),
    FieldSpec(191, "DCGM_FI_DEV_FAN_SPEED", None, "%", "int32"),
    FieldSpec(200, "DCGM_FI_DEV_PCIE_TX_THROUGHPUT", None, "KB", "int64", counter=True),
    FieldSpec(201, "DCGM_FI_DEV_PCIE_RX_THROUGHPUT", None, "KB", "int64", counter=True),
    FieldSpec(
        202,
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
        "DCGM_FI_DEV_PCIE_REPLAY_TOTAL",
        "count",
        "int64",
        counter=True,
        aliases=("dcgm_pcie_replay_counter",),
    ),
    FieldSpec(
        203,
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_GPU_UTIL_RATIO",
        "%",
        "int64",
        dmon="GPUTL",
        aliases=("dcgm_gpu_utilization",),
    ),
    FieldSpec(
        204,
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        None,
        "%",
        "int64",
        dmon="MCUTL",
        aliases=("dcgm_mem_copy_utilization",),
    ),
    FieldSpec(
        206, "DCGM_FI_DEV_ENC_UTIL", None, "%", "int64", dmon="ECUTL", aliases=("dcgm_enc_utilization",)
    ),
    FieldSpec(
        207, "DCGM_FI_DEV_DEC_UTIL", None, "%", "int64", dmon="DCUTL", aliases=("dcgm_dec_utilization",)
    ),
    FieldSpec(
        230,
        "DCGM_FI_DEV_XID_ERRORS",
        "DCGM_FI_DEV_XID_ERROR",
        "last xid",
        "int64",
        dmon="XIDER",
        aliases=("dcgm_xid_errors",),
    ),
    FieldSpec(235, "DCGM_FI_DEV_PCIE_MAX_LINK_GEN", None, "gen", "int32"),
    FieldSpec(236, "DCGM_FI_DEV_PCIE_MAX_LINK_WIDTH", None, "lanes", "int32"),
    FieldSpec(237, "DCGM_FI_DEV_PCIE_LINK_GEN", None, "gen", "int32"),
    FieldSpec(238, "DCGM_FI_DEV_PCIE_LINK_WIDTH", None, "lanes", "int32"),
    FieldSpec(
        240,
        "DCGM_FI_DEV_POWER_VIOLATION",
        None,
        "us",
        "int64",
        counter=True,
        dmon="PVIOL",
        aliases=("dcgm_power_violation",),
    ),
    FieldSpec(
        241,
        "DCGM_FI_DEV_THERMAL_VIOLATION",
        None,
        "us",
        "int64",
        counter=True,
        dmon="TVIOL",
        aliases=("dcgm_thermal_violation",),
    ),
    FieldSpec(
        242,
        "DCGM_FI_DEV_SYNC_BOOST_VIOLATION",
        None,
        "us",
        "int64",
        counter=True,
        aliases=("dcgm_sync_boost_violation",),
    ),
    FieldSpec(
        243,
        "DCGM_FI_DEV_BOARD_LIMIT_VIOLATION",
        None,
        "us",
        "int64",
        counter=True,
        aliases=("dcgm_board_limit_violation",),
    ),
    FieldSpec(
        244,
        "DCGM_FI_DEV_LOW_UTIL_VIOLATION",
        None,
        "us",
        "int64",
        counter=True,
        aliases=("dcgm_low_util_violation",),
    ),
    FieldSpec(
        245,
        "DCGM_FI_DEV_RELIABILITY_VIOLATION",
        None,
        "us",
        "int64",
        counter=True,
        aliases=("dcgm_reliability_violation",),
    ),
    FieldSpec(250, "DCGM_FI_DEV_FB_TOTAL", None, "MiB", "int64", dmon="FBTTL"),
    FieldSpec(251, "DCGM_FI_DEV_FB_FREE", None, "MiB", "int64", dmon="FBFRE", aliases=("dcgm_fb_free",)),
    FieldSpec(252, "DCGM_FI_DEV_FB_USED", None, "MiB", "int64", dmon="FBUSD", aliases=("dcgm_fb_used",)),
    FieldSpec(253, "DCGM_FI_DEV_FB_RESERVED", None, "MiB", "int64", dmon="FBRSV"),
    FieldSpec(
        310,
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
        None,
        "count",
        "int64",
        counter=True,
        dmon="ESVTL",
        aliases=("dcgm_ecc_sbe_volatile_total",),
    ),
    FieldSpec(
        311,
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        None,
        "count",
        "int64",
        counter=True,
        dmon="EDVTL",
        aliases=("dcgm_ecc_dbe_volatile_total",),
    ),
    FieldSpec(
        312,
        "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL",
        None,
        "count",
        "int64",
        counter=True,
        dmon="ESATL",
        aliases=("dcgm_ecc_sbe_aggregate_total",),
    ),
    FieldSpec(
        313,
        "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
        None,
        "count",
        "int64",
        counter=True,
        dmon="EDATL",
        aliases=("dcgm_ecc_dbe_aggregate_total",),
    ),
    FieldSpec(
        390,
        "DCGM_FI_DEV_RETIRED_SBE",
        "DCGM_FI_DEV_PAGE_RETIRED_SBE_TOTAL",
        "pages",
        "int64",
        counter=True,
        aliases=("dcgm_retired_pages_sbe",),
    ),
    FieldSpec(
        391,
        "DCGM_FI_DEV_RETIRED_DBE",
        "DCGM_FI_DEV_PAGE_RETIRED_DBE_TOTAL",
        "pages",
        "int64",
        counter=True,
        aliases=("dcgm_retired_pages_dbe",),
    ),
    FieldSpec(
        392,
        "DCGM_FI_DEV_RETIRED_PENDING",
        "DCGM_FI_DEV_PAGE_RETIRED_PENDING",
        "pages",
        "int64",
        aliases=("dcgm_retired_pages_pending",),
    ),
    FieldSpec(
        393,
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
        "DCGM_FI_DEV_ROW_REMAP_UNCORRECTABLE_TOTAL",
        "rows",
        "int64",
        counter=True,
    ),
    FieldSpec(
        394,
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
        "DCGM_FI_DEV_ROW_REMAP_CORRECTABLE_TOTAL",
        "rows",
        "int64",
        counter=True,
    ),
    FieldSpec(395, "DCGM_FI_DEV_ROW_REMAP_FAILURE", "DCGM_FI_DEV_ROW_REMAP_FAILED", "flag", "int64"),
    FieldSpec(396, "DCGM_FI_DEV_ROW_REMAP_PENDING", None, "flag", "int64"),
    FieldSpec(
        409,
        "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
        "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_TOTAL",
        "count",
        "int64",
        counter=True,
        aliases=("dcgm_nvlink_flit_crc_error_count_total",),
    ),
    FieldSpec(
        419,
        "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL",
        "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_TOTAL",
        "count",
        "int64",
        counter=True,
        aliases=("dcgm_nvlink_data_crc_error_count_total",),
    ),
    FieldSpec(
        429,
        "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
        "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_TOTAL",
        "count",
        "int64",
        counter=True,
        aliases=("dcgm_nvlink_replay_error_count_total",),
    ),
    FieldSpec(
        439,
        "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
        "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_TOTAL",
        "count",
        "int64",
        counter=True,
        aliases=("dcgm_nvlink_recovery_error_count_total",),
    ),
    FieldSpec(
        449,
        "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
        "DCGM_FI_DEV_NVLINK_THROUGHPUT_TOTAL",
        "count",
        "int64",
        counter=True,
        aliases=("dcgm_nvlink_bandwidth_total",),
    ),
    FieldSpec(525, "DCGM_FI_DEV_VGPU_LICENSE_STATUS", None, "", "int64"),
    FieldSpec(
        1001,
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
        "DCGM_FI_PROF_GR_ENGINE_UTIL_RATIO",
        "ratio",
        "double",
        dmon="GRACT",
    ),
    FieldSpec(1002, "DCGM_FI_PROF_SM_ACTIVE", "DCGM_FI_PROF_SM_UTIL_RATIO", "ratio", "double", dmon="SMACT"),
    FieldSpec(
        1003, "DCGM_FI_PROF_SM_OCCUPANCY", "DCGM_FI_PROF_SM_OCCUPANCY_RATIO", "ratio", "double", dmon="SMOCC"
    ),
    FieldSpec(
        1004,
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
        "DCGM_FI_PROF_TENSOR_UTIL_RATIO",
        "ratio",
        "double",
        dmon="TENSO",
    ),
    FieldSpec(
        1005, "DCGM_FI_PROF_DRAM_ACTIVE", "DCGM_FI_PROF_DRAM_UTIL_RATIO", "ratio", "double", dmon="DRAMA"
    ),
    FieldSpec(
        1006, "DCGM_FI_PROF_PIPE_FP64_ACTIVE", "DCGM_FI_PROF_FP64_UTIL_RATIO", "ratio", "double", dmon="FP64A"
    ),
    FieldSpec(
        1007, "DCGM_FI_PROF_PIPE_FP32_ACTIVE", "DCGM_FI_PROF_FP32_UTIL_RATIO", "ratio", "double", dmon="FP32A"
    ),
    FieldSpec(
        1008, "DCGM_FI_PROF_PIPE_FP16_ACTIVE", "DCGM_FI_PROF_FP16_UTIL_RATIO", "ratio", "double", dmon="FP16A"
    ),
    FieldSpec(1009, "DCGM_FI_PROF_PCIE_TX_BYTES", None, "B/s", "int64", dmon="PCITX"),
    FieldSpec(1010, "DCGM_FI_PROF_PCIE_RX_BYTES", None, "B/s", "int64", dmon="PCIRX"),
    FieldSpec(1011, "DCGM_FI_PROF_NVLINK_TX_BYTES", None, "B/s", "int64", dmon="NVLTX"),
    FieldSpec(1012, "DCGM_FI_PROF_NVLINK_RX_BYTES", None, "B/s", "int64", dmon="NVLRX"),
    FieldSpec(1523, "DCGM_FI_DEV_GPU_RECOVERY_ACTION", None, "enum", "int32"),
)

BY_ID: dict[int, FieldSpec] = {spec.field_id: spec for spec in _FIELDS}
BY_NAME: dict[str, FieldSpec] = {}
for _spec in _FIELDS:
    for _name in (_spec.name, _spec.new_name, *_spec.aliases):
        if _name:
            BY_NAME[_name] = _spec
BY_DMON: dict[str, FieldSpec] = {spec.dmon: spec for spec in _FIELDS if spec.dmon}

# Synthetic dcgm-exporter metrics (no DCGM field id). The XID window counter was pasted once with the
# sample named ``DCGM_FI_DEV_XID_ERRORS_ACTIVE`` under a ``DCGM_EXP_XID_ERRORS_COUNT`` HELP line.
EXPORTER_METRICS: dict[str, str] = {
    "DCGM_EXP_CLOCK_EVENTS_COUNT": "DCGM_EXP_CLOCK_EVENTS_COUNT",
    "DCGM_FI_EXP_CLOCK_THROTTLE_REASONS_COUNT": "DCGM_EXP_CLOCK_EVENTS_COUNT",
    "DCGM_EXP_XID_ERRORS_COUNT": "DCGM_EXP_XID_ERRORS_COUNT",
    "DCGM_FI_DEV_XID_ERRORS_ACTIVE": "DCGM_EXP_XID_ERRORS_COUNT",
    "DCGM_EXP_GPU_HEALTH_STATUS": "DCGM_EXP_GPU_HEALTH_STATUS",
    "DCGM_EXP_P2P_STATUS": "DCGM_EXP_P2P_STATUS",
}

# Clock-event (throttle) reason bits of field 112 (DCGM_CLOCKS_EVENT_REASON_* in dcgm_fields.h).
CLOCK_EVENT_BITS: dict[str, int] = {
    "GPU_IDLE": 0x1,
    "CLOCKS_SETTING": 0x2,
    "SW_POWER_CAP": 0x4,
    "HW_SLOWDOWN": 0x8,
    "SYNC_BOOST": 0x10,
    "SW_THERMAL": 0x20,
    "HW_THERMAL": 0x40,
    "HW_POWER_BRAKE": 0x80,
    "DISPLAY_CLOCKS": 0x100,
}
# Bits that slow a busy GPU down for a hardware, thermal or power reason (GPU_IDLE, application
# clock settings, sync boost and display clocks are normal operation).
SLOWDOWN_BITS: dict[str, int] = {
    name: bit
    for name, bit in CLOCK_EVENT_BITS.items()
    if name in ("SW_POWER_CAP", "HW_SLOWDOWN", "SW_THERMAL", "HW_THERMAL", "HW_POWER_BRAKE")
}

_LEGACY = re.compile(r"^dcgm_([a-z0-9_]+)$")


def lookup(name: str) -> FieldSpec | None:
    """The field a metric or field name stands for, by any known spelling (old, 4.6, 1.x)."""
    spec = BY_NAME.get(name)
    if spec is not None:
        return spec
    match = _LEGACY.match(name)
    if match:  # 1.x lower-case names mostly drop the DCGM_FI_DEV_ prefix
        return BY_NAME.get("DCGM_FI_DEV_" + match.group(1).upper())
    return None


def canonical(name: str) -> tuple[str, int | None]:
    """(canonical field name, field id) for a metric name; unknown names come back unchanged."""
    spec = lookup(name)
    if spec is not None:
        return spec.name, spec.field_id
    return EXPORTER_METRICS.get(name, name), None


def decode_clock_events(mask: int) -> list[str]:
    """Names of the documented clock-event reason bits set in ``mask`` (field 112)."""
    return [name for name, bit in CLOCK_EVENT_BITS.items() if mask & bit]


def is_blank(value: float, kind: str | None, integral: bool) -> bool:
    """True when ``value`` is one of DCGM's blank / not-supported sentinels for a field of ``kind``.

    Int64 sentinels apply to every integer reading; the int32 window only to int32 fields; the
    double sentinel (2**47 and above) to double fields and to non-integer readings of unknown fields.
    """
    if value >= INT64_BLANK:
        return True
    if kind == "int32" and integral and value >= INT32_BLANK:
        return True
    return (kind == "double" or (kind is None and not integral)) and value >= FP64_BLANK
