"""The parser contract: every source format implements :class:`SourceParser`.

A parser is chosen per file by content (``sniff`` on the first KiB), reads one file into Arrow
tables that fit the schemas in ``analyzers/tables/schemas.py``, and accounts for every record:
accepted rows, rejected records counted by reason, and problems with their position.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pyarrow as pa

from ..report import Problem
from ..selftel import SourceWire
from .manifest import Manifest

SNIFF_BYTES = 4096

# Sniff confidences: the highest claim wins; ties go to the parser listed first in the registry.
NO_CLAIM = 0
WEAK_CLAIM = 10
CLAIM = 50
STRONG_CLAIM = 90


@dataclass(frozen=True)
class FileContext:
    """Everything a parser may know about the file it reads.

    ``data`` is the whole (already decompressed) content. ``host_hint`` is the host the path
    suggests; parsers prefer a host named by the content itself.
    """

    path: Path
    rel: str
    data: bytes
    host_hint: str | None
    manifest: Manifest
    mtime_ns: int | None = None


@dataclass
class ParseOutput:
    """One file's result: tables by name plus the ledger of what was accepted and rejected."""

    tables: dict[str, pa.Table] = field(default_factory=dict)
    records: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)

    def reject(self, reason: str, count: int = 1) -> None:
        """Count ``count`` records rejected for ``reason``."""
        self.rejected[reason] += count


@dataclass
class FinalizeOutput:
    """Result of a parser's cross-file step (e.g. group inference across all ranks)."""

    tables: dict[str, pa.Table]
    problems: list[Problem] = field(default_factory=list)


def keep_pages() -> None:
    """``release_pages`` where nothing is mapped: nothing to hand back."""


class SourceParser:
    """Base class of every source parser. Subclasses set the class attributes and ``parse``."""

    source: ClassVar[str] = ""
    tables: ClassVar[tuple[str, ...]] = ()
    telemetry: ClassVar[SourceWire]
    # Tables ``derive`` makes (listed so a failed derivation can be accounted for).
    derived_tables: ClassVar[tuple[str, ...]] = ()
    # True where two byte-identical files are two observations (snapshots taken at different
    # times), so the duplicate-input check must keep both.
    repeats_are_observations: ClassVar[bool] = False

    def sniff(self, head: bytes, name: str) -> int:
        """How strongly this parser claims a file, from its first bytes and its name (0 = not mine)."""
        raise NotImplementedError

    def parse(self, ctx: FileContext) -> ParseOutput:
        """Read one file. Must never raise on bad content: report problems and rejections instead."""
        raise NotImplementedError

    def derive(self, name: str, table: pa.Table) -> dict[str, pa.Table]:
        """Tables computed from ``table``: the joined rows of table ``name`` of whole, consecutive files.

        Runs where files' tables are joined (in the ingest workers when parsing in parallel), so
        per-file work on millions of rows is done next to the parse instead of in one process
        after it. The results are concatenated in file order like parsed tables.
        """
        return {}

    def finalize(
        self, tables: dict[str, pa.Table], manifest: Manifest, release_pages: Callable[[], None] = keep_pages
    ) -> FinalizeOutput:
        """Cross-file step run once after all files of this source are parsed.

        ``release_pages`` hands back the memory-mapped pages of ``tables`` read so far (see
        ``Tables.release_pages``): a step that reads millions of rows part by part calls it
        after each part, so its memory stays that of one part.
        """
        return FinalizeOutput(tables)
