"""Placeholder parser for the kernel_log source (being written)."""

from __future__ import annotations

from ..selftel import SourceWire
from .base import NO_CLAIM, FileContext, ParseOutput, SourceParser


class KernelLogParser(SourceParser):
    """Not yet implemented: claims no file."""

    source = "kernel_log"
    tables = ("kernel_events",)
    telemetry = SourceWire(component_id="kernel_log", scope=__name__)

    def sniff(self, head: bytes, name: str) -> int:
        """Claims nothing yet."""
        return NO_CLAIM

    def parse(self, ctx: FileContext) -> ParseOutput:
        """Reads nothing yet."""
        return ParseOutput()
