"""Detector ``gpu-firmware-hang`` (being written)."""

from __future__ import annotations

from ..report import Verdict
from ..tables import Tables
from .base import Detector


def detect(tables: Tables) -> list[Verdict]:
    """Not yet implemented."""
    return []


DETECTOR = Detector(
    id="gpu-firmware-hang",
    summary="(being written)",
    sources=("kernel_log",),
    tables=("kernel_events", "identity"),
    detect=detect,
    scope=__name__,
)
