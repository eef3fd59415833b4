"""Detector ``storage-stall`` (being written)."""

from __future__ import annotations

from ..report import Verdict
from ..tables import Tables
from .base import Detector


def detect(tables: Tables) -> list[Verdict]:
    """Not yet implemented."""
    return []


DETECTOR = Detector(
    id="storage-stall",
    summary="(being written)",
    sources=("pyspy", "kernel_log"),
    tables=("stacks", "kernel_events", "identity"),
    detect=detect,
    scope=__name__,
)
