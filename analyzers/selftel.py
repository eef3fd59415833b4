"""tracecore's own telemetry: the one module that imports OpenTelemetry.

Components (parsers, detectors, exporters) declare only their wire names (a :class:`SourceWire`,
:class:`DetectorWire` or :class:`ExporterWire` in their own module: component id, instrumentation
scope, instrument names, small enums) and receive a thin handle from :class:`SelfTel`. Every
instrument, the degraded-state machinery, the fallbacks and the exporters live here.

Rules kept in this module:

- OpenTelemetry is imported lazily, only when telemetry or verdict export is switched on, so a run
  without ``--selftel``/``--export`` loads no OpenTelemetry code and opens no socket.
- The global providers are never set; providers are passed to the components.
- Telemetry never changes verdicts or exit codes: a missing provider or a failed instrument
  registration gives a no-op handle (counted once on ``tracecore.selftel.init_errors``), and export
  failures are reported once on stderr.
- The end of a run calls ``force_flush()`` then ``shutdown()`` (``shutdown()`` alone does not export
  with a manual reader), bounded by a timeout.

The instrument catalogue is :data:`INSTRUMENTS`; ``docs/selftel.md`` documents it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter, MeterProvider
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.resources import Resource

    from .report import Report, Verdict

SCOPE = __name__

# --- Attribute keys (docs/attributes.md lists every one) -------------------------------------------

ATTR_COMPONENT_ID = "tracecore.component.id"
ATTR_COMPONENT_KIND = "tracecore.component.kind"
ATTR_RESULT = "tracecore.result"
ATTR_REASON = "tracecore.reason"
ATTR_ERROR_TYPE = "error.type"
ATTR_PATTERN_ID = "tracecore.pattern.id"
ATTR_SEVERITY = "tracecore.verdict.severity"
ATTR_CONFIDENCE = "tracecore.verdict.confidence"
ATTR_ROLE = "tracecore.verdict.role"
# Verdict log records only.
ATTR_VERDICT_ID = "tracecore.verdict.id"
ATTR_VERDICT_KEY = "tracecore.verdict.key"
ATTR_ROOT_CAUSE = "tracecore.verdict.root_cause"
ATTR_INCIDENT_PATH = "tracecore.incident.path"
ATTR_CULPRIT_RANKS = "tracecore.culprit.ranks"
ATTR_CULPRIT_HOSTS = "tracecore.culprit.hosts"
ATTR_CULPRIT_PIDS = "tracecore.culprit.pids"
ATTR_CULPRIT_GPU_PCI = "tracecore.culprit.gpu.pci_bus_ids"
ATTR_CULPRIT_GPU_UUIDS = "tracecore.culprit.gpu.uuids"
ATTR_CULPRIT_GPU_INDEXES = "tracecore.culprit.gpu.indexes"
ATTR_CULPRIT_LINKS = "tracecore.culprit.links"
ATTR_WINDOW_START = "tracecore.verdict.window_start_ns"
ATTR_WINDOW_END = "tracecore.verdict.window_end_ns"
# Semantic-convention keys, set on a verdict record only when the culprit names exactly one.
ATTR_HOST_NAME = "host.name"
ATTR_PROCESS_PID = "process.pid"
ATTR_HW_ID = "hw.id"
ATTR_HW_TYPE = "hw.type"
ATTR_K8S_POD = "k8s.pod.name"
ATTR_K8S_NAMESPACE = "k8s.namespace.name"

VERDICT_EVENT_NAME = "tracecore.verdict"

# Durations run from a millisecond (a detector on a small table) to minutes (a large FR dump);
# boundaries in seconds.
DURATION_BUCKETS_S: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)

# Exporter budget: each OTLP request gives up after this long; the whole end-of-run flush after
# CLOSE_TIMEOUT_S, whatever the endpoint does.
EXPORT_TIMEOUT_S = 2.0
CLOSE_TIMEOUT_S = 5.0

OTHER_REASON = "other"


# --- Instrument catalogue ----------------------------------------------------------------------


@dataclass(frozen=True)
class InstrumentSpec:
    """One instrument: default name, kind, unit, attribute keys and meaning."""

    name: str
    kind: str  # counter | histogram | observable_gauge | observable_counter
    unit: str
    attributes: tuple[str, ...]
    description: str


_SRC = (ATTR_COMPONENT_ID,)
SOURCE_FILES = InstrumentSpec(
    "tracecore.source.files",
    "counter",
    "{file}",
    (ATTR_COMPONENT_ID, ATTR_RESULT),
    "Files handed to the source's parser, by result (parsed, failed).",
)
SOURCE_RECORDS = InstrumentSpec(
    "tracecore.source.records", "counter", "{record}", _SRC, "Records accepted into the source's tables."
)
SOURCE_REJECTED = InstrumentSpec(
    "tracecore.source.rejected",
    "counter",
    "{record}",
    (ATTR_COMPONENT_ID, ATTR_REASON),
    "Records rejected by the parser, by reason.",
)
SOURCE_BYTES = InstrumentSpec(
    "tracecore.source.bytes", "counter", "By", _SRC, "Bytes read (after decompression)."
)
SOURCE_PARSE_DURATION = InstrumentSpec(
    "tracecore.source.parse.duration", "histogram", "s", _SRC, "Time to read and parse one file."
)
SOURCE_DEGRADED = InstrumentSpec(
    "tracecore.source.degraded",
    "observable_gauge",
    "1",
    _SRC,
    "1 while the source is degraded (its latest file had rejected records or failed), else 0.",
)
SOURCE_DEGRADED_TIME = InstrumentSpec(
    "tracecore.source.degraded.time",
    "observable_counter",
    "s",
    _SRC,
    "Wall time the source has spent degraded (from the first rejection until a clean file or the end).",
)
SOURCE_LAST_ACTIVITY = InstrumentSpec(
    "tracecore.source.last_activity",
    "observable_gauge",
    "s",
    _SRC,
    "Unix time (seconds) of the source's last recorded activity.",
)
DETECTOR_EVALUATIONS = InstrumentSpec(
    "tracecore.detector.evaluations",
    "counter",
    "{evaluation}",
    (ATTR_COMPONENT_ID, ATTR_RESULT),
    "Detector evaluations, by result (verdicts, clean, error).",
)
DETECTOR_DURATION = InstrumentSpec(
    "tracecore.detector.duration",
    "histogram",
    "s",
    (ATTR_COMPONENT_ID, ATTR_RESULT),
    "Time of one detector evaluation.",
)
DETECTOR_VERDICTS = InstrumentSpec(
    "tracecore.detector.verdicts",
    "counter",
    "{verdict}",
    (ATTR_COMPONENT_ID, ATTR_PATTERN_ID, ATTR_SEVERITY, ATTR_CONFIDENCE, ATTR_ROLE),
    "Verdicts in the final report, by pattern, severity, confidence and role.",
)
EXPORTER_CALLS = InstrumentSpec(
    "tracecore.exporter.calls",
    "counter",
    "{call}",
    (ATTR_COMPONENT_ID, ATTR_RESULT),
    "Output calls (rich, json, markdown, otlp), by result (ok, error).",
)
EXPORTER_DURATION = InstrumentSpec(
    "tracecore.exporter.duration",
    "histogram",
    "s",
    (ATTR_COMPONENT_ID, ATTR_RESULT),
    "Time of one output call.",
)
INIT_ERRORS = InstrumentSpec(
    "tracecore.selftel.init_errors",
    "counter",
    "{error}",
    (ATTR_COMPONENT_ID, ATTR_COMPONENT_KIND, ATTR_ERROR_TYPE),
    "Components whose telemetry could not be set up (they run with a no-op handle); once per component.",
)

INSTRUMENTS: tuple[InstrumentSpec, ...] = (
    SOURCE_FILES,
    SOURCE_RECORDS,
    SOURCE_REJECTED,
    SOURCE_BYTES,
    SOURCE_PARSE_DURATION,
    SOURCE_DEGRADED,
    SOURCE_DEGRADED_TIME,
    SOURCE_LAST_ACTIVITY,
    DETECTOR_EVALUATIONS,
    DETECTOR_DURATION,
    DETECTOR_VERDICTS,
    EXPORTER_CALLS,
    EXPORTER_DURATION,
    INIT_ERRORS,
)


# --- Wires: the names a component declares in its own module ---------------------------------


@dataclass(frozen=True)
class SourceWire:
    """Wire names of one source parser: component id, instrumentation scope, rejection reasons.

    ``reasons`` is the parser's enum of rejection reasons; when non-empty, a reason outside it is
    recorded as ``other`` on the metric (the ingest ledger keeps the exact string). The instrument
    names default to the shared catalogue.
    """

    component_id: str
    scope: str
    reasons: tuple[str, ...] = ()
    files: str = SOURCE_FILES.name
    records: str = SOURCE_RECORDS.name
    rejected: str = SOURCE_REJECTED.name
    bytes_read: str = SOURCE_BYTES.name
    parse_duration: str = SOURCE_PARSE_DURATION.name
    degraded: str = SOURCE_DEGRADED.name
    degraded_time: str = SOURCE_DEGRADED_TIME.name
    last_activity: str = SOURCE_LAST_ACTIVITY.name

    @property
    def instrument_names(self) -> tuple[str, ...]:
        """Every instrument name this source registers."""
        return (
            self.files,
            self.records,
            self.rejected,
            self.bytes_read,
            self.parse_duration,
            self.degraded,
            self.degraded_time,
            self.last_activity,
        )


@dataclass(frozen=True)
class DetectorWire:
    """Wire names of one detector: its pattern id, module path as scope, instrument names."""

    component_id: str
    scope: str
    evaluations: str = DETECTOR_EVALUATIONS.name
    duration: str = DETECTOR_DURATION.name
    verdicts: str = DETECTOR_VERDICTS.name

    @property
    def instrument_names(self) -> tuple[str, ...]:
        """Every instrument name this detector registers."""
        return (self.evaluations, self.duration, self.verdicts)


@dataclass(frozen=True)
class ExporterWire:
    """Wire names of one output (renderer or OTLP verdict export)."""

    component_id: str
    scope: str
    calls: str = EXPORTER_CALLS.name
    duration: str = EXPORTER_DURATION.name

    @property
    def instrument_names(self) -> tuple[str, ...]:
        """Every instrument name this output registers."""
        return (self.calls, self.duration)


OTLP_EXPORT_WIRE = ExporterWire(component_id="otlp", scope=__name__)


# --- Degraded state: one implementation for every source -------------------------------------


class DegradedState:
    """Healthy/degraded state of one source, safe to update and observe from several threads.

    A source turns degraded when a file fails or has rejected records, and healthy again when a
    later file is accepted cleanly; time spent degraded accumulates (monotonic clock).
    """

    def __init__(
        self, monotonic: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time
    ) -> None:
        self._lock = threading.Lock()
        self._monotonic = monotonic
        self._wall = wall
        self._since: float | None = None
        self._accumulated = 0.0
        self._last_activity: float | None = None
        self._failed_file = False
        self.transitions = 0

    def file_failed(self) -> None:
        """A file could not be parsed: degraded now, and the file's record count cannot clear it."""
        with self._lock:
            self._failed_file = True
        self.observe(bad=True, clean=False)

    def file_records(self, accepted: int, rejected: int) -> None:
        """One file's outcome: rejections (or an earlier failure of the file) degrade, clean records heal."""
        with self._lock:
            failed, self._failed_file = self._failed_file, False
        self.observe(bad=rejected > 0 or failed, clean=accepted > 0)

    def touch(self) -> None:
        """Note activity (any recorded event)."""
        with self._lock:
            self._last_activity = self._wall()

    def observe(self, *, bad: bool, clean: bool) -> None:
        """Move to degraded on ``bad`` input, back to healthy on ``clean`` input, else stay."""
        with self._lock:
            self._last_activity = self._wall()
            now = self._monotonic()
            if bad and self._since is None:
                self._since = now
                self.transitions += 1
            elif clean and not bad and self._since is not None:
                self._accumulated += now - self._since
                self._since = None
                self.transitions += 1

    @property
    def degraded(self) -> bool:
        """Whether the source is degraded now."""
        with self._lock:
            return self._since is not None

    def degraded_seconds(self) -> float:
        """Total time degraded so far, including the current spell."""
        with self._lock:
            current = self._monotonic() - self._since if self._since is not None else 0.0
            return self._accumulated + current

    def last_activity(self) -> float | None:
        """Unix time of the last activity, or None before any."""
        with self._lock:
            return self._last_activity


# --- Handles: no-op bases (the API) and live implementations ---------------------------------


class SourceHandle:
    """Per-source recorder handed to the ingest engine (this base records nothing)."""

    def file_read(self, result: str) -> None:
        """Count one file by result (parsed, failed, skipped)."""

    def records(self, accepted: int, rejected: Mapping[str, int]) -> None:
        """Count accepted records and rejected ones by reason."""

    def bytes_read(self, count: int) -> None:
        """Count bytes read."""

    def parse_latency(self, seconds: float) -> None:
        """Record one file's parse time."""


class DetectorHandle:
    """Per-detector recorder (this base records nothing)."""

    def evaluated(self, result: str, seconds: float) -> None:
        """Count one evaluation by result (verdicts, clean, error) with its latency."""

    def verdict(self, pattern: str, severity: str, confidence: str, role: str) -> None:
        """Count one verdict."""


class ExporterHandle:
    """Per-output recorder (this base records nothing)."""

    def called(self, result: str, seconds: float) -> None:
        """Count one call by result with its latency."""


def _meter(provider: MeterProvider, scope: str) -> Meter:
    from tracecore import __version__

    return provider.get_meter(scope, __version__)


class _LiveSource(SourceHandle):
    def __init__(self, wire: SourceWire, meter: Meter) -> None:
        from opentelemetry.metrics import CallbackOptions, Observation

        self._wire = wire
        self._attrs = {ATTR_COMPONENT_ID: wire.component_id}
        self.state = DegradedState()
        self._files = meter.create_counter(wire.files, SOURCE_FILES.unit, SOURCE_FILES.description)
        self._records = meter.create_counter(wire.records, SOURCE_RECORDS.unit, SOURCE_RECORDS.description)
        self._rejected = meter.create_counter(
            wire.rejected, SOURCE_REJECTED.unit, SOURCE_REJECTED.description
        )
        self._bytes = meter.create_counter(wire.bytes_read, SOURCE_BYTES.unit, SOURCE_BYTES.description)
        self._latency = meter.create_histogram(
            wire.parse_duration,
            SOURCE_PARSE_DURATION.unit,
            SOURCE_PARSE_DURATION.description,
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS_S),
        )
        attrs = dict(self._attrs)
        state = self.state

        def degraded(_: CallbackOptions) -> Iterable[Observation]:
            yield Observation(1 if state.degraded else 0, attrs)

        def degraded_time(_: CallbackOptions) -> Iterable[Observation]:
            yield Observation(state.degraded_seconds(), attrs)

        def last_activity(_: CallbackOptions) -> Iterable[Observation]:
            seen = state.last_activity()
            if seen is not None:
                yield Observation(seen, attrs)

        meter.create_observable_gauge(
            wire.degraded, [degraded], SOURCE_DEGRADED.unit, SOURCE_DEGRADED.description
        )
        meter.create_observable_counter(
            wire.degraded_time, [degraded_time], SOURCE_DEGRADED_TIME.unit, SOURCE_DEGRADED_TIME.description
        )
        meter.create_observable_gauge(
            wire.last_activity, [last_activity], SOURCE_LAST_ACTIVITY.unit, SOURCE_LAST_ACTIVITY.description
        )

    def file_read(self, result: str) -> None:
        self._files.add(1, {**self._attrs, ATTR_RESULT: result})
        if result == "failed":
            self.state.file_failed()
        else:
            self.state.touch()

    def records(self, accepted: int, rejected: Mapping[str, int]) -> None:
        if accepted:
            self._records.add(accepted, self._attrs)
        total_rejected = 0
        for reason, count in rejected.items():
            if count <= 0:
                continue
            total_rejected += count
            known = not self._wire.reasons or reason in self._wire.reasons
            self._rejected.add(count, {**self._attrs, ATTR_REASON: reason if known else OTHER_REASON})
        self.state.file_records(accepted, total_rejected)

    def bytes_read(self, count: int) -> None:
        if count:
            self._bytes.add(count, self._attrs)
        self.state.touch()

    def parse_latency(self, seconds: float) -> None:
        self._latency.record(max(0.0, seconds), self._attrs)
        self.state.touch()


class _LiveDetector(DetectorHandle):
    def __init__(self, wire: DetectorWire, meter: Meter) -> None:
        self._attrs = {ATTR_COMPONENT_ID: wire.component_id}
        self._evaluations = meter.create_counter(
            wire.evaluations, DETECTOR_EVALUATIONS.unit, DETECTOR_EVALUATIONS.description
        )
        self._latency = meter.create_histogram(
            wire.duration,
            DETECTOR_DURATION.unit,
            DETECTOR_DURATION.description,
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS_S),
        )
        self._verdicts = meter.create_counter(
            wire.verdicts, DETECTOR_VERDICTS.unit, DETECTOR_VERDICTS.description
        )

    def evaluated(self, result: str, seconds: float) -> None:
        attrs = {**self._attrs, ATTR_RESULT: result}
        self._evaluations.add(1, attrs)
        self._latency.record(max(0.0, seconds), attrs)

    def verdict(self, pattern: str, severity: str, confidence: str, role: str) -> None:
        self._verdicts.add(
            1,
            {
                **self._attrs,
                ATTR_PATTERN_ID: pattern,
                ATTR_SEVERITY: severity,
                ATTR_CONFIDENCE: confidence,
                ATTR_ROLE: role,
            },
        )


class _LiveExporter(ExporterHandle):
    def __init__(self, wire: ExporterWire, meter: Meter) -> None:
        self._attrs = {ATTR_COMPONENT_ID: wire.component_id}
        self._calls = meter.create_counter(wire.calls, EXPORTER_CALLS.unit, EXPORTER_CALLS.description)
        self._latency = meter.create_histogram(
            wire.duration,
            EXPORTER_DURATION.unit,
            EXPORTER_DURATION.description,
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS_S),
        )

    def called(self, result: str, seconds: float) -> None:
        attrs = {**self._attrs, ATTR_RESULT: result}
        self._calls.add(1, attrs)
        self._latency.record(max(0.0, seconds), attrs)


InitErrorSink = Callable[[str, str, str], None]


def _bind(
    kind: str,
    component_id: str,
    scope: str,
    provider: MeterProvider | None,
    on_error: InitErrorSink | None,
    build: Callable[[Meter], Any],
    noop: Any,
) -> Any:
    """The one fallback path: a live handle, or the no-op handle with the failure reported once."""
    if provider is None:
        if on_error is not None:
            on_error(component_id, kind, "no_provider")
        return noop
    try:
        return build(_meter(provider, scope))
    except Exception as exc:  # telemetry must never stop the run
        if on_error is not None:
            on_error(component_id, kind, f"registration_failed:{type(exc).__name__}")
        return noop


def source_telemetry(
    wire: SourceWire, provider: MeterProvider | None, on_error: InitErrorSink | None = None
) -> SourceHandle:
    """Handle of one source from its wire (id, scope, names) and a provider (None → no-op)."""
    handle: SourceHandle = _bind(
        "source",
        wire.component_id,
        wire.scope,
        provider,
        on_error,
        lambda m: _LiveSource(wire, m),
        SourceHandle(),
    )
    return handle


def detector_telemetry(
    wire: DetectorWire, provider: MeterProvider | None, on_error: InitErrorSink | None = None
) -> DetectorHandle:
    """Handle of one detector from its wire and a provider (None → no-op)."""
    handle: DetectorHandle = _bind(
        "detector",
        wire.component_id,
        wire.scope,
        provider,
        on_error,
        lambda m: _LiveDetector(wire, m),
        DetectorHandle(),
    )
    return handle


def exporter_telemetry(
    wire: ExporterWire, provider: MeterProvider | None, on_error: InitErrorSink | None = None
) -> ExporterHandle:
    """Handle of one output from its wire and a provider (None → no-op)."""
    handle: ExporterHandle = _bind(
        "exporter",
        wire.component_id,
        wire.scope,
        provider,
        on_error,
        lambda m: _LiveExporter(wire, m),
        ExporterHandle(),
    )
    return handle


# --- Export failure reporting -----------------------------------------------------------------


class ExportWatch:
    """Collects export failures (from the exporters and the SDK's own log lines); reports them once."""

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        self._lock = threading.Lock()
        self.failures: dict[str, str] = {}
        self.sdk_messages: list[str] = []
        self._secrets = [s for s in secrets if s]
        self.reported = False

    def failed(self, signal: str, reason: str) -> None:
        """Note that ``signal`` (metrics, logs) could not be exported."""
        with self._lock:
            self.failures.setdefault(signal, reason)

    def sdk_message(self, message: str) -> None:
        """Keep a warning/error the OpenTelemetry SDK logged (instead of printing it)."""
        with self._lock:
            if len(self.sdk_messages) < 20:
                self.sdk_messages.append(message)

    def scrub(self, text: str) -> str:
        """Remove header values (credentials) from ``text``."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return " ".join(text.split())

    def summary(self, destinations: Mapping[str, str]) -> str | None:
        """The one stderr line describing every failure, or None when all went through."""
        with self._lock:
            if not self.failures:
                return None
            signals = " and ".join(
                f"{signal} to {destinations[signal]}" if destinations.get(signal) else signal
                for signal in sorted(self.failures)
            )
            reasons = [r for r in self.failures.values() if r]
            candidates = [*reasons, *self.sdk_messages]
            reason = next((r for r in map(_matched_reason, candidates) if r), None)
            if reason is None:
                reason = short_reason(candidates[0] if candidates else "")
        text = f"tracecore: self-telemetry: export of {signals} failed: {reason} (verdicts and exit code are unaffected)"
        return self.scrub(text)[:600]


_REASON_PATTERNS = (
    (re.compile(r"\[Errno -?\d+\] ([^'\")]+)"), None),
    (re.compile(r"(Read timed out|Connect(?:ion)? timed out|timed out)", re.IGNORECASE), None),
    (re.compile(r"code: (\d{3})"), "HTTP status {0}"),
    (re.compile(r"(due to timeout)"), f"no answer within {EXPORT_TIMEOUT_S:g} s"),
)


def _matched_reason(message: str) -> str | None:
    for pattern, template in _REASON_PATTERNS:
        found = pattern.search(message)
        if found:
            return template.format(found.group(1)) if template else found.group(1).strip().rstrip(".").lower()
    return None


def short_reason(message: str) -> str:
    """A short cause from an exporter's error message (``connection refused``, ``HTTP status 404``)."""
    return _matched_reason(message) or " ".join(message.split())[:200] or "unknown error"


class _SdkLogCapture(logging.Handler):
    """Swallows the SDK's own log lines during a run so a failure is reported once, by us."""

    def __init__(self, watch: ExportWatch) -> None:
        super().__init__(logging.WARNING)
        self._watch = watch

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # a log handler must not raise
            self._watch.sdk_message(record.getMessage())


def _watched_metric_exporter(inner: Any, watch: ExportWatch) -> Any:
    from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

    class WatchedMetricExporter(MetricExporter):
        def __init__(self) -> None:
            super().__init__(
                preferred_temporality=getattr(inner, "_preferred_temporality", None),
                preferred_aggregation=getattr(inner, "_preferred_aggregation", None),
            )

        def export(
            self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any
        ) -> MetricExportResult:
            try:
                result: MetricExportResult = inner.export(
                    metrics_data, timeout_millis=timeout_millis, **kwargs
                )
            except Exception as exc:
                watch.failed("metrics", f"{type(exc).__name__}: {exc}")
                return MetricExportResult.FAILURE
            if result is not MetricExportResult.SUCCESS:
                watch.failed("metrics", "")
            return result

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return bool(inner.force_flush(timeout_millis=timeout_millis))

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            inner.shutdown(timeout_millis=timeout_millis)

    return WatchedMetricExporter()


def _watched_log_exporter(inner: Any, watch: ExportWatch) -> Any:
    from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

    class WatchedLogExporter(LogRecordExporter):
        def export(self, batch: Any) -> LogRecordExportResult:
            try:
                result: LogRecordExportResult = inner.export(batch)
            except Exception as exc:
                watch.failed("logs", f"{type(exc).__name__}: {exc}")
                return LogRecordExportResult.FAILURE
            if result is not LogRecordExportResult.SUCCESS:
                watch.failed("logs", "")
            return result

        def shutdown(self) -> None:
            inner.shutdown()

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            return bool(inner.force_flush(timeout_millis))

    return WatchedLogExporter()


def _run_bounded(fn: Callable[[], object], timeout_s: float) -> bool:
    """Run ``fn`` in a daemon thread; True when it finished within ``timeout_s`` without raising."""
    done = threading.Event()
    ok: list[bool] = []

    def target() -> None:
        try:
            fn()
            ok.append(True)
        except Exception:  # telemetry must never stop the run
            ok.append(False)
        finally:
            done.set()

    threading.Thread(target=target, name="tracecore-selftel-flush", daemon=True).start()
    return done.wait(max(0.0, timeout_s)) and all(ok)


# --- The factory handed to the pipeline -------------------------------------------------------

_SEVERITY_NUMBER = {"critical": "FATAL", "error": "ERROR", "warning": "WARN", "info": "INFO"}


class SelfTel:
    """Factory of component handles plus the end-of-run flush; ``SelfTel()`` records nothing.

    ``meter_provider`` receives the metrics; ``logger_provider`` (only with ``--export otlp``)
    receives one log record per verdict. Handles are cached per component, so asking twice for the
    same wire registers its instruments once.
    """

    def __init__(
        self,
        meter_provider: MeterProvider | None = None,
        logger_provider: LoggerProvider | None = None,
        *,
        watch: ExportWatch | None = None,
        destinations: Mapping[str, str] | None = None,
        stream: IO[str] | None = None,
        notices: Sequence[str] = (),
        capture_sdk_logs: bool = False,
    ) -> None:
        self.meter_provider = meter_provider
        self.logger_provider = logger_provider
        self.enabled = meter_provider is not None or logger_provider is not None
        self.watch = watch or ExportWatch()
        self.destinations = dict(destinations or {})
        self._stream = stream
        self._handles: dict[tuple[str, str, str], object] = {}
        self._lock = threading.Lock()
        self._init_errors: Any = None
        self._init_counted: set[tuple[str, str]] = set()
        self._closed = False
        self._capture: _SdkLogCapture | None = None
        self._otel_logger_state: tuple[bool, list[logging.Handler]] | None = None
        self.notices: list[str] = list(notices)
        self._logs_flushed = False
        self._deadline: float | None = None
        if meter_provider is not None:
            try:
                self._init_errors = _meter(meter_provider, SCOPE).create_counter(
                    INIT_ERRORS.name, INIT_ERRORS.unit, INIT_ERRORS.description
                )
            except Exception:  # nothing left to count on; components still fall back to no-op
                self._init_errors = None
        if self.enabled and capture_sdk_logs:
            self._capture_sdk_logs()

    # handles ---------------------------------------------------------------------------------

    def _init_error(self, component_id: str, kind: str, reason: str) -> None:
        with self._lock:
            if (kind, component_id) in self._init_counted:
                return
            self._init_counted.add((kind, component_id))
        if self._init_errors is not None:
            with contextlib.suppress(Exception):
                self._init_errors.add(
                    1, {ATTR_COMPONENT_ID: component_id, ATTR_COMPONENT_KIND: kind, ATTR_ERROR_TYPE: reason}
                )

    def _cached(self, key: tuple[str, str, str], build: Callable[[], object]) -> Any:
        with self._lock:
            found = self._handles.get(key)
        if found is not None:
            return found
        handle = build()
        with self._lock:
            return self._handles.setdefault(key, handle)

    def source(self, wire: SourceWire) -> SourceHandle:
        """Handle for a source parser."""
        if self.meter_provider is None:
            return _NOOP_SOURCE
        handle: SourceHandle = self._cached(
            ("source", wire.component_id, wire.scope),
            lambda: source_telemetry(wire, self.meter_provider, self._init_error),
        )
        return handle

    def detector(self, wire: DetectorWire) -> DetectorHandle:
        """Handle for a detector."""
        if self.meter_provider is None:
            return _NOOP_DETECTOR
        handle: DetectorHandle = self._cached(
            ("detector", wire.component_id, wire.scope),
            lambda: detector_telemetry(wire, self.meter_provider, self._init_error),
        )
        return handle

    def exporter(self, wire: ExporterWire) -> ExporterHandle:
        """Handle for an output."""
        if self.meter_provider is None:
            return _NOOP_EXPORTER
        handle: ExporterHandle = self._cached(
            ("exporter", wire.component_id, wire.scope),
            lambda: exporter_telemetry(wire, self.meter_provider, self._init_error),
        )
        return handle

    # verdict export --------------------------------------------------------------------------

    def export_verdicts(self, report: Report, timeout_s: float = EXPORT_TIMEOUT_S + 0.5) -> None:
        """Send each verdict as an OpenTelemetry log record when ``--export otlp`` asked for it."""
        if self.logger_provider is None:
            return
        handle = self.exporter(OTLP_EXPORT_WIRE)
        # verdict export and the end-of-run flush share one budget
        timeout_s = max(0.1, min(timeout_s, self._budget(CLOSE_TIMEOUT_S) - time.monotonic()))
        started = time.perf_counter()
        result = "error"
        try:
            from tracecore import __version__

            logger = self.logger_provider.get_logger(SCOPE, __version__)
            for verdict in report.verdicts:
                self._emit_verdict(logger, report, verdict)
            flushed = _run_bounded(lambda: self._flush_logs(timeout_s), timeout_s)
            self._logs_flushed = True
            result = "ok" if flushed and "logs" not in self.watch.failures else "error"
            if not flushed:
                self.watch.failed("logs", f"no answer within {timeout_s:g} s")
        except Exception as exc:  # telemetry must never change the result
            self.watch.failed("logs", f"{type(exc).__name__}: {exc}")
        finally:
            handle.called(result, time.perf_counter() - started)

    def _budget(self, timeout_s: float) -> float:
        """Monotonic deadline of all end-of-run exporting: started once, only ever shortened."""
        candidate = time.monotonic() + timeout_s
        self._deadline = candidate if self._deadline is None else min(self._deadline, candidate)
        return self._deadline

    def _flush_logs(self, timeout_s: float) -> None:
        assert self.logger_provider is not None
        if not self.logger_provider.force_flush(int(timeout_s * 1000)):
            self.watch.failed("logs", "")

    def _emit_verdict(self, logger: Any, report: Report, verdict: Verdict) -> None:
        from opentelemetry._logs import SeverityNumber

        severity = str(verdict.severity.value)
        logger.emit(
            timestamp=verdict.window_start_ns,
            observed_timestamp=time.time_ns(),
            severity_number=SeverityNumber[_SEVERITY_NUMBER.get(severity, "INFO")],
            severity_text=severity,
            body=verdict.title,
            attributes=verdict_attributes(report, verdict),
            event_name=VERDICT_EVENT_NAME,
        )

    # end of run ------------------------------------------------------------------------------

    def _capture_sdk_logs(self) -> None:
        otel_logger = logging.getLogger("opentelemetry")
        self._otel_logger_state = (otel_logger.propagate, list(otel_logger.handlers))
        self._capture = _SdkLogCapture(self.watch)
        otel_logger.addHandler(self._capture)
        otel_logger.propagate = False

    def _release_sdk_logs(self) -> None:
        if self._capture is None or self._otel_logger_state is None:
            return
        otel_logger = logging.getLogger("opentelemetry")
        otel_logger.removeHandler(self._capture)
        otel_logger.propagate = self._otel_logger_state[0]
        self._capture = None

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Flush then shut down the providers, bounded by ``timeout_s``; report failures once on stderr."""
        if self._closed:
            return
        self._closed = True
        deadline = self._budget(timeout_s)
        finished = True
        if self.logger_provider is not None:
            provider = self.logger_provider
            remaining = max(0.1, min(EXPORT_TIMEOUT_S + 0.5, deadline - time.monotonic()))
            if not self._logs_flushed:
                finished &= _run_bounded(lambda: self._flush_logs(remaining), remaining)
            finished &= _run_bounded(provider.shutdown, max(0.1, deadline - time.monotonic()))
        if self.meter_provider is not None:
            meters = self.meter_provider
            remaining_ms = max(100, int((deadline - time.monotonic()) * 1000))

            def flush_then_shutdown() -> None:
                # shutdown() alone does not export with a manual reader: flush first.
                if not meters.force_flush(remaining_ms):  # type: ignore[attr-defined]
                    self.watch.failed("metrics", "")
                meters.shutdown(remaining_ms)  # type: ignore[attr-defined]

            if not _run_bounded(flush_then_shutdown, max(0.1, deadline - time.monotonic())):
                finished = False
                self.watch.failed("metrics", f"no answer within {timeout_s:g} s")
        if self._stream is not None and self._stream not in (sys.stderr, sys.stdout):
            with contextlib.suppress(OSError):
                self._stream.close()
        if finished:
            # a flush thread still running could log later; keep its lines captured then
            self._release_sdk_logs()
        self.report_problems()

    def report_problems(self) -> None:
        """Write the export-failure line (once) to stderr."""
        if self.watch.reported:
            return
        line = self.watch.summary(self.destinations)
        if line is None:
            return
        self.watch.reported = True
        try:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


_NOOP_SOURCE = SourceHandle()
_NOOP_DETECTOR = DetectorHandle()
_NOOP_EXPORTER = ExporterHandle()

NOOP = SelfTel()


# --- Verdict attributes -----------------------------------------------------------------------


def verdict_attributes(report: Report, verdict: Verdict) -> dict[str, Any]:
    """Log-record attributes of one verdict (semconv keys where one exists, ``tracecore.*`` else)."""
    attrs: dict[str, Any] = {
        ATTR_PATTERN_ID: verdict.pattern,
        ATTR_VERDICT_ID: verdict.id,
        ATTR_SEVERITY: str(verdict.severity.value),
        ATTR_CONFIDENCE: str(verdict.confidence.value),
        ATTR_ROLE: str(verdict.role.value),
        ATTR_ROOT_CAUSE: bool(report.root_cause) and report.root_cause == verdict.id,
        ATTR_INCIDENT_PATH: report.incident_path,
    }
    if verdict.key:
        attrs[ATTR_VERDICT_KEY] = verdict.key
    culprit = verdict.culprit
    if culprit.ranks:
        attrs[ATTR_CULPRIT_RANKS] = [int(r) for r in culprit.ranks]
    if culprit.hosts:
        attrs[ATTR_CULPRIT_HOSTS] = [str(h) for h in culprit.hosts]
        if len(culprit.hosts) == 1:
            attrs[ATTR_HOST_NAME] = str(culprit.hosts[0])
    if culprit.pids:
        attrs[ATTR_CULPRIT_PIDS] = [int(p) for p in culprit.pids]
        if len(culprit.pids) == 1:
            attrs[ATTR_PROCESS_PID] = int(culprit.pids[0])
    if culprit.links:
        attrs[ATTR_CULPRIT_LINKS] = [str(link) for link in culprit.links]
    pcis = [g.pci_bus_id for g in culprit.gpus if g.pci_bus_id]
    uuids = [g.uuid for g in culprit.gpus if g.uuid]
    indexes = [int(g.index) for g in culprit.gpus if g.index is not None]
    if pcis:
        attrs[ATTR_CULPRIT_GPU_PCI] = pcis
    if uuids:
        attrs[ATTR_CULPRIT_GPU_UUIDS] = uuids
    if indexes:
        attrs[ATTR_CULPRIT_GPU_INDEXES] = indexes
    if len(culprit.gpus) == 1:
        gpu = culprit.gpus[0]
        ident = gpu.uuid or gpu.pci_bus_id
        if ident:
            attrs[ATTR_HW_ID] = ident
            attrs[ATTR_HW_TYPE] = "gpu"
    if verdict.window_start_ns is not None:
        attrs[ATTR_WINDOW_START] = int(verdict.window_start_ns)
    if verdict.window_end_ns is not None:
        attrs[ATTR_WINDOW_END] = int(verdict.window_end_ns)
    details = verdict.details or {}
    pod = details.get("k8s_pod") or details.get("pod")
    namespace = details.get("k8s_namespace") or details.get("namespace")
    if isinstance(pod, str) and pod:
        attrs[ATTR_K8S_POD] = pod
    if isinstance(namespace, str) and namespace:
        attrs[ATTR_K8S_NAMESPACE] = namespace
    return attrs


# --- Building providers from the CLI and the environment --------------------------------------


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def _truthy(value: str) -> bool:
    return value.lower() in ("true", "1", "yes", "on")


def display_endpoint(url: str) -> str:
    """``url`` without credentials, query or fragment, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(invalid endpoint)"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def otlp_endpoint(signal: str) -> str:
    """Resolved OTLP/HTTP endpoint for ``metrics`` or ``logs`` (signal variable, then base + path)."""
    specific = _env(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    if specific:
        return specific
    base = _env("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4318"
    return f"{base.rstrip('/')}/v1/{signal}"


def destination(signal: str) -> str:
    """Where ``signal`` goes under the configured protocol, for messages (no credentials)."""
    if _protocol(signal) == "grpc":
        url = _env(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT") or _env("OTEL_EXPORTER_OTLP_ENDPOINT")
        return display_endpoint(url or "http://localhost:4317")
    return display_endpoint(otlp_endpoint(signal))


def _header_values() -> list[str]:
    values: list[str] = []
    for name in (
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
    ):
        for item in _env(name).split(","):
            if "=" in item:
                value = item.split("=", 1)[1].strip()
                if len(value) >= 3:
                    values.append(value)
    return values


def build_resource() -> Resource:
    """Resource from OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME; ``service.name`` defaults to tracecore."""
    from opentelemetry.sdk.resources import Resource

    from tracecore import __version__

    detected = Resource.create({})
    named = bool(_env("OTEL_SERVICE_NAME")) or "service.name=" in _env("OTEL_RESOURCE_ATTRIBUTES").replace(
        " ", ""
    )
    defaults = {"service.version": __version__}
    if not named:
        defaults["service.name"] = "tracecore"
    # values from the environment win over ours
    extra = {k: v for k, v in defaults.items() if k == "service.name" or k not in detected.attributes}
    return detected.merge(Resource(extra))


def _protocol(signal: str) -> str:
    return (
        _env(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
        or _env("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).lower()


def grpc_available() -> bool:
    """Whether the optional OTLP/gRPC exporter package is installed."""
    import importlib.util

    try:
        return importlib.util.find_spec("opentelemetry.exporter.otlp.proto.grpc") is not None
    except (ImportError, ValueError):
        return False


def _otlp_exporters(signal: str, notices: list[str]) -> Any:
    """The OTLP exporter class for ``signal`` per OTEL_EXPORTER_OTLP_PROTOCOL, or None with a notice."""
    protocol = _protocol(signal)
    if protocol == "http/protobuf":
        if signal == "metrics":
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            return OTLPMetricExporter(endpoint=otlp_endpoint(signal), timeout=EXPORT_TIMEOUT_S)
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        return OTLPLogExporter(endpoint=otlp_endpoint(signal), timeout=EXPORT_TIMEOUT_S)
    if protocol == "grpc":
        try:
            if signal == "metrics":
                from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                    OTLPMetricExporter as GrpcMetricExporter,
                )

                return GrpcMetricExporter(timeout=EXPORT_TIMEOUT_S)
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
                OTLPLogExporter as GrpcLogExporter,
            )

            return GrpcLogExporter(timeout=EXPORT_TIMEOUT_S)
        except ImportError:
            notices.append(
                "tracecore: self-telemetry: OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the optional package "
                "opentelemetry-exporter-otlp-proto-grpc (pip install opentelemetry-exporter-otlp-proto-grpc); "
                f"OTLP {signal} export is off for this run"
            )
            return None
    notices.append(
        f"tracecore: self-telemetry: OTLP protocol {protocol!r} is not supported (use http/protobuf or grpc); "
        f"OTLP {signal} export is off for this run"
    )
    return None


def from_cli(
    mode: str,
    *,
    selftel_file: str | None = None,
    export_verdicts: bool = False,
    result_on_stdout: bool = True,
) -> SelfTel:
    """Build the self-telemetry for one CLI run (``--selftel none|stdout|otlp``, ``--export otlp``).

    ``stdout`` telemetry is written to ``selftel_file`` when given, else to stderr when the result
    goes to stdout, else to stdout. Configuration problems become one notice line on stderr and
    switch the affected part off; they never fail the run.
    """
    if mode == "none" and not export_verdicts:
        return NOOP
    notices: list[str] = []
    if _truthy(_env("OTEL_SDK_DISABLED")):
        _write_notices(
            ["tracecore: self-telemetry: OTEL_SDK_DISABLED is set; telemetry and --export otlp are off"]
        )
        return NOOP
    try:
        return _build(mode, selftel_file, export_verdicts, result_on_stdout, notices)
    except Exception as exc:  # a broken telemetry setup must not stop the analysis
        notices.append(
            f"tracecore: self-telemetry: could not start ({type(exc).__name__}); it is off for this run"
        )
        _write_notices(notices)
        return NOOP


def _write_notices(notices: Iterable[str]) -> None:
    for notice in notices:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(notice + "\n")


def _build(
    mode: str, selftel_file: str | None, export_verdicts: bool, result_on_stdout: bool, notices: list[str]
) -> SelfTel:
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader

    watch = ExportWatch(_header_values())
    resource = build_resource()
    meter_provider = None
    stream: IO[str] | None = None
    destinations: dict[str, str] = {}
    if mode == "stdout":
        if selftel_file:
            try:
                stream = open(selftel_file, "w", encoding="utf-8")  # noqa: SIM115 - closed in SelfTel.close
            except OSError as exc:
                notices.append(
                    f"tracecore: self-telemetry: cannot write {selftel_file}: {exc.strerror}; it is off"
                )
        else:
            stream = sys.stderr if result_on_stdout else sys.stdout
        if stream is not None:
            console = ConsoleMetricExporter(
                out=stream, formatter=lambda data: data.to_json(indent=None) + "\n"
            )
            metric_exporter: Any = _watched_metric_exporter(console, watch)
            destinations["metrics"] = selftel_file or ("stderr" if stream is sys.stderr else "stdout")
        else:
            metric_exporter = None
    elif mode == "otlp":
        otlp = _otlp_exporters("metrics", notices)
        metric_exporter = _watched_metric_exporter(otlp, watch) if otlp is not None else None
        if otlp is not None:
            destinations["metrics"] = destination("metrics")
    else:
        metric_exporter = None
    if metric_exporter is not None:
        # no ticker thread: one export at force_flush() in close()
        reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=math.inf)
        meter_provider = SdkMeterProvider(metric_readers=[reader], resource=resource, shutdown_on_exit=False)
    logger_provider = None
    if export_verdicts:
        log_exporter = _otlp_exporters("logs", notices)
        if log_exporter is not None:
            from opentelemetry.sdk._logs import LoggerProvider as SdkLoggerProvider
            from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

            logger_provider = SdkLoggerProvider(resource=resource, shutdown_on_exit=False)
            logger_provider.add_log_record_processor(
                BatchLogRecordProcessor(
                    _watched_log_exporter(log_exporter, watch),
                    schedule_delay_millis=60_000,
                    export_timeout_millis=int(EXPORT_TIMEOUT_S * 1000),
                )
            )
            destinations["logs"] = destination("logs")
    _write_notices(notices)
    return SelfTel(
        meter_provider,
        logger_provider,
        watch=watch,
        destinations=destinations,
        stream=stream,
        notices=notices,
        capture_sdk_logs=True,
    )
