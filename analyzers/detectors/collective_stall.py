"""Detector ``collective-stall`` (being written)."""

from __future__ import annotations

from ..report import Verdict
from ..tables import Tables
from .base import Detector


def detect(tables: Tables) -> list[Verdict]:
    """Not yet implemented."""
    return []


DETECTOR = Detector(
    id="collective-stall",
    summary="(being written)",
    sources=("flight_recorder",),
    tables=("fr_entries", "fr_groups", "fr_status", "identity"),
    detect=detect,
    scope=__name__,
)
