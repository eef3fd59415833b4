"""Placeholder parser for the flight_recorder source (being written)."""

from __future__ import annotations

from ..selftel import SourceWire
from .base import NO_CLAIM, FileContext, ParseOutput, SourceParser


class FlightRecorderParser(SourceParser):
    """Not yet implemented: claims no file."""

    source = "flight_recorder"
    tables = ("fr_entries", "fr_groups", "fr_status")
    telemetry = SourceWire(component_id="flight_recorder", scope=__name__)

    def sniff(self, head: bytes, name: str) -> int:
        """Claims nothing yet."""
        return NO_CLAIM

    def parse(self, ctx: FileContext) -> ParseOutput:
        """Reads nothing yet."""
        return ParseOutput()
