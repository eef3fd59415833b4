"""The explicit list of source parsers. Adding a format means adding its module here."""

from __future__ import annotations

from .app_log import AppLogParser
from .base import SourceParser
from .dcgm import DcgmParser
from .flight_recorder import FlightRecorderParser
from .kernel_log import KernelLogParser
from .pyspy import PySpyParser

PARSERS: tuple[SourceParser, ...] = (
    FlightRecorderParser(),
    PySpyParser(),
    DcgmParser(),
    KernelLogParser(),
    AppLogParser(),
)

_BY_SOURCE = {parser.source: parser for parser in PARSERS}


def parser_for(source: str) -> SourceParser:
    """The parser registered for ``source``."""
    return _BY_SOURCE[source]


def sources() -> list[str]:
    """Every registered source name."""
    return [parser.source for parser in PARSERS]
