"""Placeholder parser for the pyspy source (being written)."""

from __future__ import annotations

from ..selftel import SourceWire
from .base import NO_CLAIM, FileContext, ParseOutput, SourceParser


class PySpyParser(SourceParser):
    """Not yet implemented: claims no file."""

    source = "pyspy"
    tables = ("stacks",)
    telemetry = SourceWire(component_id="pyspy", scope=__name__)

    def sniff(self, head: bytes, name: str) -> int:
        """Claims nothing yet."""
        return NO_CLAIM

    def parse(self, ctx: FileContext) -> ParseOutput:
        """Reads nothing yet."""
        return ParseOutput()
