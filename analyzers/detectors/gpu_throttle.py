"""Detector ``gpu-throttle`` (being written)."""

from __future__ import annotations

from ..report import Verdict
from ..tables import Tables
from .base import Detector


def detect(tables: Tables) -> list[Verdict]:
    """Not yet implemented."""
    return []


DETECTOR = Detector(
    id="gpu-throttle",
    summary="(being written)",
    sources=("dcgm",),
    tables=("gpu_metrics", "identity"),
    detect=detect,
    scope=__name__,
)
