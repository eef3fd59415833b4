"""Detector ``config-drift`` (being written)."""

from __future__ import annotations

from ..report import Verdict
from ..tables import Tables
from .base import Detector


def detect(tables: Tables) -> list[Verdict]:
    """Not yet implemented."""
    return []


DETECTOR = Detector(
    id="config-drift",
    summary="(being written)",
    sources=("app_log", "dcgm", "flight_recorder"),
    tables=("app_events", "gpu_metrics", "fr_entries", "fr_groups", "fr_status", "identity"),
    detect=detect,
    scope=__name__,
)
