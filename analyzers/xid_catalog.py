"""NVIDIA Xid catalogue: what each code means, who is usually at fault and what NVIDIA recommends.

Meanings, mnemonics and resolution buckets follow NVIDIA's Xid catalogue
(https://docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html, snapshot of 2025-10-29 as
machine-extracted into leptonai/gpud ``catalog_generated.go``), cross-checked with NVIDIA/NVSentinel
``xiderrorsmapping.csv``. The ``cls`` column is tracecore's default attribution class; docs/xid-catalog.md
lists every entry with its source. Mappings move between catalogue versions: ``CATALOG_VERSION`` says
which one this table follows.
"""

from __future__ import annotations

from dataclasses import dataclass

CATALOG_VERSION = "nvidia-xid-catalog 2025-10-29"

# Default attribution classes.
APPLICATION = "application"
DRIVER = "driver"
MEMORY = "memory"
FABRIC = "fabric"
BUS = "bus"
FIRMWARE = "firmware"
CASCADE = "cascade"
CLASSES = (APPLICATION, DRIVER, MEMORY, FABRIC, BUS, FIRMWARE, CASCADE)

# NVIDIA resolution buckets, paraphrased for the report's action lines.
BUCKET_TEXT = {
    "IGNORE": "informational; no action needed on its own",
    "RESTART_APP": "restart the application; the GPU is fine",
    "RESET_GPU": "stop GPU processes and reset the GPU (nvidia-smi -r) or reboot the node",
    "RESTART_BM": "reboot the bare-metal node",
    "RESTART_VM": "reboot the virtual machine",
    "RESTART_FM": "restart the NVIDIA Fabric Manager",
    "CONTACT_SUPPORT": "hardware service: run field diagnostics and contact support (RMA candidate)",
    "CHECK_MECHANICALS": "check power cabling and seating",
    "CHECK_APP/CUDA": "check the application and CUDA version",
    "INVESTIGATE_SW": "likely software (driver/firmware): update and investigate",
    "INVESTIGATE_SW_USER": "likely software or user configuration",
    "INVESTIGATE_LINK_SI": "investigate link signal integrity (cables, reseat)",
    "CHECK_UVM": "check the unified-memory (UVM) driver state",
    "UPDATE_SWFW": "update driver and firmware",
    "WORKFLOW_XID_13": "repeated at the same GPC/TPC or across applications on one GPU: run field diagnostics; otherwise fix the application",
    "WORKFLOW_XID_31": "repeated on the same GPU across applications: run diagnostics; on different GPUs: application bug",
    "WORKFLOW_XID_45": "follow the Xid that caused it; alone: restart the Fabric Manager",
    "WORKFLOW_XID_48": "reset the GPU; a recurring double-bit error means RMA",
    "WORKFLOW_NVLINK_ERR": "decode the NVLink error registers; reset the GPU, reseat or replace on recurrence",
    "WORKFLOW_NVLINK5_ERR": "decode unit and error status (catalogue sheet 'XID 144-150 Decode'); follow the Xid 154 action",
    "XID_154": "do what the recovery action in the message says",
}


@dataclass(frozen=True)
class XidInfo:
    """One catalogue entry."""

    code: int
    mnemonic: str
    meaning: str
    cls: str
    immediate: str
    investigatory: str
    severity: str
    note: str = ""

    @property
    def action(self) -> str:
        """Human action line: NVIDIA's immediate bucket, explained."""
        text = BUCKET_TEXT.get(
            self.immediate, self.immediate or "no catalogue action yet; treat as a GPU fault"
        )
        return f"Xid {self.code} ({self.mnemonic}): {text}"


def _e(
    code: int,
    mnemonic: str,
    meaning: str,
    cls: str,
    immediate: str,
    investigatory: str,
    severity: str,
    note: str = "",
) -> XidInfo:
    return XidInfo(code, mnemonic, meaning, cls, immediate, investigatory, severity, note)


_ENTRIES = (
    _e(
        3,
        "ROBUST_CHANNEL_FIFO_ERROR_UNK_METHOD",
        "Unknown method (legacy drivers)",
        DRIVER,
        "CONTACT_SUPPORT",
        "",
        "error",
    ),
    _e(
        8,
        "ROBUST_CHANNEL_FIFO_ERROR_IDLE_TIMEOUT",
        "GPU stopped processing",
        DRIVER,
        "RESTART_APP",
        "CONTACT_SUPPORT",
        "error",
    ),
    _e(
        13,
        "ROBUST_CHANNEL_GR_EXCEPTION",
        "Graphics engine exception (SM warp/global exception, illegal address or instruction)",
        APPLICATION,
        "RESTART_APP",
        "WORKFLOW_XID_13",
        "error",
        "same GPU across processes or same GPC/TPC: hardware suspect",
    ),
    _e(
        31,
        "ROBUST_CHANNEL_FIFO_ERROR_MMU_ERR_FLT",
        "GPU memory page fault (MMU fault)",
        APPLICATION,
        "RESTART_APP",
        "WORKFLOW_XID_31",
        "error",
        "repeats on the same GPU across processes: hardware suspect",
    ),
    _e(
        32,
        "ROBUST_CHANNEL_PBDMA_ERROR",
        "Invalid or corrupted push buffer stream",
        APPLICATION,
        "RESTART_APP",
        "CHECK_APP/CUDA",
        "error",
    ),
    _e(
        38,
        "ROBUST_CHANNEL_FECS_ERR_WATCHDOG_TIMEOUT",
        "Driver firmware error (FECS watchdog timeout)",
        FIRMWARE,
        "IGNORE",
        "CONTACT_SUPPORT",
        "warning",
    ),
    _e(
        43,
        "ROBUST_CHANNEL_RESETCHANNEL_VERIF_ERROR",
        "GPU stopped processing (channel reset after a fault)",
        APPLICATION,
        "IGNORE",
        "CONTACT_SUPPORT",
        "warning",
        "follows Xid 13/31 of the same process; on a stalled rank it marks that rank",
    ),
    _e(
        44,
        "ROBUST_CHANNEL_GR_FAULT_DURING_CTXSW",
        "Graphics engine fault during context switch",
        DRIVER,
        "IGNORE",
        "CONTACT_SUPPORT",
        "warning",
    ),
    _e(
        45,
        "ROBUST_CHANNEL_PREEMPTIVE_REMOVAL",
        "Preemptive cleanup due to previous errors",
        CASCADE,
        "WORKFLOW_XID_45",
        "Solo: RESTART_FM; not solo: follow the other Xid",
        "warning",
        "never a root cause on its own",
    ),
    _e(
        46,
        "ROBUST_CHANNEL_GPU_TIMEOUT_ERROR",
        "GPU stopped processing",
        DRIVER,
        "RESET_GPU",
        "CONTACT_SUPPORT",
        "error",
    ),
    _e(
        48,
        "ROBUST_CHANNEL_GPU_ECC_DBE",
        "Double-bit ECC error",
        MEMORY,
        "WORKFLOW_XID_48",
        "WORKFLOW_XID_48",
        "critical",
    ),
    _e(
        56,
        "DISPLAY_CHANNEL_EXCEPTION",
        "Display channel exception (unused on data-centre GPUs)",
        DRIVER,
        "CONTACT_SUPPORT",
        "",
        "warning",
    ),
    _e(
        57,
        "FB_LINK_TRAINING_FAILURE_ERROR",
        "Frame-buffer link training failure (unused on recent GPUs)",
        MEMORY,
        "CONTACT_SUPPORT",
        "",
        "error",
    ),
    _e(
        58,
        "FB_MEMORY_ERROR",
        "Frame-buffer memory error (unused on recent GPUs)",
        MEMORY,
        "CONTACT_SUPPORT",
        "",
        "error",
    ),
    _e(
        61,
        "PMU_BREAKPOINT",
        "Internal micro-controller breakpoint (unused on A100 and newer)",
        FIRMWARE,
        "CONTACT_SUPPORT",
        "",
        "error",
    ),
    _e(
        62,
        "PMU_HALT_ERROR",
        "Internal micro-controller halt",
        FIRMWARE,
        "RESET_GPU",
        "CONTACT_SUPPORT",
        "critical",
        "not exported by the DCGM Xid field",
    ),
    _e(
        63,
        "INFOROM_DRAM_RETIREMENT_EVENT",
        "GPU memory row-remapping / page-retirement event recorded",
        MEMORY,
        "IGNORE",
        "IGNORE",
        "warning",
        "pending remap applies at the next GPU reset",
    ),
    _e(
        64,
        "INFOROM_DRAM_RETIREMENT_FAILURE",
        "GPU memory row-remapping failure",
        MEMORY,
        "RESET_GPU",
        "CONTACT_SUPPORT",
        "critical",
        "RMA criterion",
    ),
    _e(
        65,
        "ROBUST_CHANNEL_NVENC1_ERROR",
        "Video encoder exception (unused)",
        DRIVER,
        "CONTACT_SUPPORT",
        "",
        "warning",
    ),
    _e(
        68,
        "ROBUST_CHANNEL_NVDEC0_ERROR",
        "Video decoder (NVDEC0) exception",
        APPLICATION,
        "RESTART_APP",
        "CONTACT_SUPPORT",
        "error",
    ),
    _e(
        69,
        "ROBUST_CHANNEL_GR_CLASS_ERROR",
        "Graphics engine class error",
        APPLICATION,
        "RESTART_APP",
        "CHECK_APP/CUDA",
        "error",
    ),
    _e(
        73,
        "ROBUST_CHANNEL_NVENC2_ERROR",
        "Video encoder exception (unused)",
        DRIVER,
        "CONTACT_SUPPORT",
        "",
        "warning",
    ),
    _e(74, "NVLINK_ERROR", "NVLink error", FABRIC, "WORKFLOW_NVLINK_ERR", "CONTACT_SUPPORT", "critical"),
    _e(
        79,
        "ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS",
        "GPU has fallen off the bus",
        BUS,
        "RESTART_BM",
        "CONTACT_SUPPORT",
        "critical",
    ),
    _e(
        80,
        "PBDMA_PUSHBUFFER_CRC_MISMATCH",
        "Corrupted data sent to GPU",
        APPLICATION,
        "RESTART_APP",
        "CHECK_APP/CUDA",
        "error",
    ),
    _e(
        81,
        "ROBUST_CHANNEL_VGA_SUBSYSTEM_ERROR",
        "VGA subsystem error (unused)",
        DRIVER,
        "CONTACT_SUPPORT",
        "",
        "warning",
    ),
    _e(
        92,
        "EXCESSIVE_SBE_INTERRUPTS",
        "High single-bit ECC error rate",
        MEMORY,
        "IGNORE",
        "CONTACT_SUPPORT",
        "warning",
    ),
    _e(
        94,
        "ROBUST_CHANNEL_CONTAINED_ERROR",
        "Contained memory (ECC) error: only the offending process is affected",
        MEMORY,
        "RESTART_APP",
        "IGNORE (sympathetic)",
        "error",
    ),
    _e(
        95,
        "ROBUST_CHANNEL_UNCONTAINED_ERROR",
        "Uncontained memory (ECC) error: every process on the GPU is affected",
        MEMORY,
        "RESET_GPU",
        "IGNORE (sympathetic)",
        "critical",
    ),
    _e(
        109,
        "ROBUST_CHANNEL_CTXSW_TIMEOUT_ERROR",
        "Context switch timeout",
        FIRMWARE,
        "RESET_GPU",
        "CONTACT_SUPPORT",
        "critical",
    ),
    _e(110, "SEC_FAULT_ERROR", "Security fault error", FIRMWARE, "RESET_GPU", "INVESTIGATE_SW", "critical"),
    _e(
        119,
        "GSP_RPC_TIMEOUT",
        "GSP firmware RPC timeout",
        FIRMWARE,
        "RESET_GPU",
        "INVESTIGATE_SW",
        "critical",
    ),
    _e(120, "GSP_ERROR", "GSP firmware error", FIRMWARE, "RESET_GPU", "INVESTIGATE_SW", "critical"),
    _e(
        121,
        "C2C_ERROR",
        "Chip-to-chip (C2C, Grace-GPU) link error",
        FABRIC,
        "IGNORE",
        "CONTACT_SUPPORT",
        "warning",
    ),
    _e(
        122,
        "SPI_PMU_RPC_READ_FAIL",
        "SPI PMU RPC read failure (unused)",
        FIRMWARE,
        "CONTACT_SUPPORT",
        "",
        "error",
    ),
    _e(
        123,
        "SPI_PMU_RPC_WRITE_FAIL",
        "SPI PMU RPC write failure (unused)",
        FIRMWARE,
        "CONTACT_SUPPORT",
        "",
        "error",
    ),
    _e(
        136,
        "ALI_TRAINING_FAIL",
        "NVLink link training failed",
        FABRIC,
        "RESET_GPU",
        "INVESTIGATE_LINK_SI",
        "critical",
    ),
    _e(137, "NVLINK_PRIV_ERR", "NVLink privilege error", FABRIC, "IGNORE", "XID_137_FLOW", "warning"),
    _e(
        140,
        "UNRECOVERABLE_ECC_ERROR_ESCAPE",
        "ECC unrecovered error escaped containment",
        MEMORY,
        "RESET_GPU",
        "CONTACT_SUPPORT",
        "critical",
    ),
    _e(
        143,
        "GPU_INIT_ERROR",
        "GPU initialization error",
        FIRMWARE,
        "RESET_GPU",
        "CONTACT_SUPPORT",
        "critical",
    ),
    _e(
        144,
        "NVLINK_SAW_ERROR",
        "NVLink5 SAW unit error",
        FABRIC,
        "WORKFLOW_NVLINK5_ERR",
        "WORKFLOW_NVLINK5_ERR",
        "error",
    ),
    _e(
        145,
        "NVLINK_RLW_ERROR",
        "NVLink5 RLW unit error",
        FABRIC,
        "WORKFLOW_NVLINK5_ERR",
        "WORKFLOW_NVLINK5_ERR",
        "error",
    ),
    _e(
        146,
        "NVLINK_TLW_ERROR",
        "NVLink5 TLW unit error",
        FABRIC,
        "WORKFLOW_NVLINK5_ERR",
        "WORKFLOW_NVLINK5_ERR",
        "error",
    ),
    _e(
        147,
        "NVLINK_TREX_ERROR",
        "NVLink5 TREX unit error",
        FABRIC,
        "WORKFLOW_NVLINK5_ERR",
        "WORKFLOW_NVLINK5_ERR",
        "error",
    ),
    _e(
        148,
        "NVLINK_NVLPW_CTRL_ERROR",
        "NVLink5 NVLPW_CTRL unit error",
        FABRIC,
        "WORKFLOW_NVLINK5_ERR",
        "WORKFLOW_NVLINK5_ERR",
        "error",
    ),
    _e(
        149,
        "NVLINK_NETIR_ERROR",
        "NVLink5 NETIR unit error",
        FABRIC,
        "WORKFLOW_NVLINK5_ERR",
        "WORKFLOW_NVLINK5_ERR",
        "error",
    ),
    _e(
        150,
        "NVLINK_MSE_ERROR",
        "NVLink5 MSE unit error",
        FABRIC,
        "WORKFLOW_NVLINK5_ERR",
        "WORKFLOW_NVLINK5_ERR",
        "error",
    ),
    _e(
        151,
        "ROBUST_CHANNEL_KEY_ROTATION_ERROR",
        "Key rotation error (confidential computing)",
        FIRMWARE,
        "RESTART_VM",
        "CONTACT_SUPPORT",
        "error",
    ),
    _e(
        154,
        "GPU_RECOVERY_ACTION_CHANGED",
        "GPU recovery action changed",
        CASCADE,
        "XID_154",
        "N/A: informational about another Xid",
        "warning",
        "look for the Xid just before it",
    ),
    _e(
        155,
        "NVLINK_SW_DEFINED_ERROR",
        "NVLink software-defined error",
        FABRIC,
        "RESET_GPU",
        "INVESTIGATE_SW_USER",
        "error",
    ),
    _e(
        156,
        "RESOURCE_RETIREMENT_EVENT",
        "Resource retirement event",
        MEMORY,
        "RESET_GPU",
        "IGNORE",
        "warning",
    ),
    _e(
        157,
        "RESOURCE_RETIREMENT_FAILURE",
        "Resource retirement failure",
        MEMORY,
        "IGNORE",
        "CONTACT_SUPPORT",
        "error",
    ),
    _e(158, "GPU_FATAL_TIMEOUT", "GPU fatal timeout", FIRMWARE, "RESET_GPU", "CONTACT_SUPPORT", "critical"),
    _e(
        159,
        "ROBUST_CHANNEL_CHI_NON_DATA_ERROR",
        "CHI non-data error",
        DRIVER,
        "CHECK_UVM",
        "SYMPATHETIC_REPORT_SOLO",
        "error",
    ),
    _e(
        160,
        "CHANNEL_RETIREMENT_EVENT",
        "Channel retirement event",
        DRIVER,
        "IGNORE",
        "INVESTIGATE_SW",
        "warning",
        "NVSentinel's mapping says RESTART_BM",
    ),
    _e(
        161,
        "CHANNEL_RETIREMENT_FAILURE",
        "Channel retirement failure",
        DRIVER,
        "IGNORE",
        "INVESTIGATE_SW",
        "error",
    ),
    _e(162, "PSHC_REENGAGED", "Power-smoothing circuitry re-engaged", FIRMWARE, "", "", "info"),
    _e(163, "PSHC_DISENGAGED", "Power-smoothing circuitry disengaged", FIRMWARE, "", "", "warning"),
    _e(
        164,
        "PSHC_LOW_LIFETIME",
        "Power-smoothing circuitry low lifetime reached",
        FIRMWARE,
        "",
        "",
        "warning",
    ),
    _e(165, "PSHC_ZERO_LIFETIME", "Power-smoothing circuitry lifetime exhausted", FIRMWARE, "", "", "error"),
    _e(
        166,
        "NVLINK_SECURE_CRYPTO_ERR",
        "Confidential-computing traffic before the link was configured for encryption",
        FABRIC,
        "",
        "",
        "error",
    ),
    _e(167, "PCIE_FATAL_TIMEOUT", "PCIe fatal timeout", BUS, "", "", "critical"),
    _e(
        168,
        "REDUCED_GPU_MEMORY_CAPACITY",
        "Errors found in the write-protected region: reduced memory capacity",
        MEMORY,
        "",
        "",
        "error",
    ),
    _e(169, "SEC2_HALT_ERROR", "Internal micro-controller (SEC2) halt", FIRMWARE, "", "", "critical"),
    _e(
        170,
        "NVLINK_SECURE_OTHER",
        "NVLink interrupt seen in confidential-computing mode",
        FABRIC,
        "",
        "",
        "error",
    ),
)

CATALOG: dict[int, XidInfo] = {entry.code: entry for entry in _ENTRIES}


def lookup(code: int | None) -> XidInfo | None:
    """The catalogue entry for ``code``, or ``None`` when unknown."""
    return CATALOG.get(code) if code is not None else None


def severity_of(code: int | None) -> str:
    """Default severity of an Xid; unknown codes are treated as a GPU fault (error)."""
    entry = lookup(code)
    return entry.severity if entry else "error"


def class_of(code: int | None) -> str:
    """Default attribution class of an Xid; unknown codes count as driver faults."""
    entry = lookup(code)
    return entry.cls if entry else DRIVER


def action_of(code: int | None) -> str:
    """NVIDIA's recommended action for an Xid, as one line."""
    entry = lookup(code)
    if entry is None:
        return (
            f"Xid {code}: not in the catalogue ({CATALOG_VERSION}); treat as a GPU fault and contact support"
        )
    return entry.action


# Xid 154 names the recovery action NVML reports (nvmlDeviceGpuRecoveryAction_t).
RECOVERY_ACTIONS = {
    0: "none",
    1: "GPU reset required",
    2: "node reboot required",
    3: "drain peer-to-peer",
    4: "drain and reset",
    5: "recover IMEX domain",
    6: "bus reset",
    7: "system reboot",
}
