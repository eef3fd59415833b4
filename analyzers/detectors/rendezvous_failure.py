"""Detector ``rendezvous-failure`` (being written)."""

from __future__ import annotations

from ..report import Verdict
from ..tables import Tables
from .base import Detector


def detect(tables: Tables) -> list[Verdict]:
    """Not yet implemented."""
    return []


DETECTOR = Detector(
    id="rendezvous-failure",
    summary="(being written)",
    sources=("app_log",),
    tables=("app_events", "identity"),
    detect=detect,
    scope=__name__,
)
