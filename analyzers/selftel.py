"""tracecore's own telemetry: the one module that imports OpenTelemetry.

Components (parsers, detectors, exporters) declare only their wire names (a :class:`SourceWire`,
:class:`DetectorWire` or :class:`ExporterWire` in their own module) and receive a thin handle
from :class:`SelfTel`. All wiring lives here.

(Foundation version: handles record nothing yet; the OTLP/stdout wiring is built on this API.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SourceWire:
    """Wire names of one source parser: component id, instrumentation scope, rejection reasons."""

    component_id: str
    scope: str
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class DetectorWire:
    """Wire names of one detector."""

    component_id: str
    scope: str


@dataclass(frozen=True)
class ExporterWire:
    """Wire names of one output (renderer or OTLP verdict export)."""

    component_id: str
    scope: str


class SourceHandle:
    """Per-source recorder handed to the ingest engine."""

    def file_read(self, result: str) -> None:
        """Count one file by result (parsed, failed, skipped)."""

    def records(self, accepted: int, rejected: Mapping[str, int]) -> None:
        """Count accepted records and rejected ones by reason."""

    def bytes_read(self, count: int) -> None:
        """Count bytes read."""

    def parse_latency(self, seconds: float) -> None:
        """Record one file's parse time."""


class DetectorHandle:
    """Per-detector recorder."""

    def evaluated(self, result: str, seconds: float) -> None:
        """Count one evaluation by result (verdicts, clean, error) with its latency."""

    def verdict(self, pattern: str, severity: str, confidence: str, role: str) -> None:
        """Count one verdict."""


class ExporterHandle:
    """Per-output recorder."""

    def called(self, result: str, seconds: float) -> None:
        """Count one call by result with its latency."""


@dataclass
class SelfTel:
    """Factory of component handles; the no-op instance records nothing."""

    enabled: bool = False
    _handles: dict[str, object] = field(default_factory=dict)

    def source(self, wire: SourceWire) -> SourceHandle:
        """Handle for a source parser."""
        return SourceHandle()

    def detector(self, wire: DetectorWire) -> DetectorHandle:
        """Handle for a detector."""
        return DetectorHandle()

    def exporter(self, wire: ExporterWire) -> ExporterHandle:
        """Handle for an output."""
        return ExporterHandle()

    def export_verdicts(self, report: object) -> None:
        """Send each verdict as an OpenTelemetry log record when ``--export otlp`` asked for it."""

    def close(self, timeout_s: float = 5.0) -> None:
        """Flush then shut down providers, bounded by ``timeout_s``."""


NOOP = SelfTel()


def from_cli(
    mode: str,
    *,
    selftel_file: str | None = None,
    export_verdicts: bool = False,
    result_on_stdout: bool = True,
) -> SelfTel:
    """Build the self-telemetry for one CLI run (``--selftel none|stdout|otlp``)."""
    return NOOP
