"""Detector ``ib-link-flap`` (being written)."""

from __future__ import annotations

from ..report import Verdict
from ..tables import Tables
from .base import Detector


def detect(tables: Tables) -> list[Verdict]:
    """Not yet implemented."""
    return []


DETECTOR = Detector(
    id="ib-link-flap",
    summary="(being written)",
    sources=("kernel_log",),
    tables=("kernel_events", "identity"),
    detect=detect,
    scope=__name__,
)
