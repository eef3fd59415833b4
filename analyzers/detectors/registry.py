"""The explicit detector catalogue. Adding a detector means adding its module here."""

from __future__ import annotations

from . import (
    collective_hang,
    collective_mismatch,
    collective_stall,
    collective_timeout,
    config_drift,
    cuda_oom,
    gil_contention,
    gpu_app_fault,
    gpu_fell_off_bus,
    gpu_firmware_hang,
    gpu_memory_ecc,
    gpu_row_remap,
    gpu_throttle,
    host_oom_kill,
    ib_link_flap,
    input_stall,
    nccl_transport_error,
    nvlink_fault,
    pcie_aer,
    process_crash,
    rendezvous_failure,
    slow_rank,
    stack_outlier,
    storage_stall,
    watchdog_timeout,
)
from .base import Detector

DETECTORS: tuple[Detector, ...] = tuple(
    sorted(
        (
            collective_hang.DETECTOR,
            collective_mismatch.DETECTOR,
            collective_stall.DETECTOR,
            collective_timeout.DETECTOR,
            config_drift.DETECTOR,
            cuda_oom.DETECTOR,
            gil_contention.DETECTOR,
            gpu_app_fault.DETECTOR,
            gpu_fell_off_bus.DETECTOR,
            gpu_firmware_hang.DETECTOR,
            gpu_memory_ecc.DETECTOR,
            gpu_row_remap.DETECTOR,
            gpu_throttle.DETECTOR,
            host_oom_kill.DETECTOR,
            ib_link_flap.DETECTOR,
            input_stall.DETECTOR,
            nccl_transport_error.DETECTOR,
            nvlink_fault.DETECTOR,
            pcie_aer.DETECTOR,
            process_crash.DETECTOR,
            rendezvous_failure.DETECTOR,
            slow_rank.DETECTOR,
            stack_outlier.DETECTOR,
            storage_stall.DETECTOR,
            watchdog_timeout.DETECTOR,
        ),
        key=lambda d: d.id,
    )
)

_BY_ID = {detector.id: detector for detector in DETECTORS}
if len(_BY_ID) != len(DETECTORS):  # pragma: no cover - guarded by tests too
    raise RuntimeError("duplicate detector id in the registry")


def get(detector_id: str) -> Detector:
    """The detector with this id; ``KeyError`` when unknown."""
    return _BY_ID[detector_id]


def ids() -> list[str]:
    """All detector ids, sorted."""
    return sorted(_BY_ID)
