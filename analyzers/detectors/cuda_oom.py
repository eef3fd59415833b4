"""Detector ``cuda-oom`` (being written)."""

from __future__ import annotations

from ..report import Verdict
from ..tables import Tables
from .base import Detector


def detect(tables: Tables) -> list[Verdict]:
    """Not yet implemented."""
    return []


DETECTOR = Detector(
    id="cuda-oom",
    summary="(being written)",
    sources=("app_log", "dcgm"),
    tables=("app_events", "gpu_metrics", "identity"),
    detect=detect,
    scope=__name__,
)
