"""Detector ``gpu-fell-off-bus`` (being written)."""

from __future__ import annotations

from ..report import Verdict
from ..tables import Tables
from .base import Detector


def detect(tables: Tables) -> list[Verdict]:
    """Not yet implemented."""
    return []


DETECTOR = Detector(
    id="gpu-fell-off-bus",
    summary="(being written)",
    sources=("kernel_log", "dcgm"),
    tables=("kernel_events", "gpu_metrics", "identity"),
    detect=detect,
    scope=__name__,
)
