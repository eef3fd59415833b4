"""Self-telemetry test helpers: in-memory providers, collect-and-find, and a failing provider.

Every test that checks tracecore's telemetry uses these (no test builds its own reader):

- :func:`in_memory_selftel` gives a :class:`SelfTel` over a ``MeterProvider`` with an
  ``InMemoryMetricReader`` and a ``LoggerProvider`` with an in-memory log exporter;
- :func:`collect` flattens the reader into :class:`Point` rows; :func:`find`, :func:`value`,
  :func:`scope_of`, :func:`names_dump` search them;
- :class:`FailingMeterProvider` wraps a provider and fails instrument registration for names with
  a given prefix, to test the no-op fallback.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.metrics import Meter, MeterProvider
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.resources import Resource

from tracecore.analyzers.selftel import SelfTel
from tracecore.analyzers.synth import SynthSpec, write_incident

from .paths import SAMPLES


@dataclass(frozen=True)
class Point:
    """One data point: metric name, its scope, unit, attributes and value.

    ``value`` is the sum/gauge value, or for a histogram its count (``sum`` and ``buckets`` hold
    the rest).
    """

    name: str
    scope: str
    unit: str
    attributes: Mapping[str, Any]
    value: float
    sum: float | None = None
    bucket_bounds: tuple[float, ...] = ()


@dataclass
class InMemoryTelemetry:
    """A SelfTel wired to in-memory providers, with accessors for what they received."""

    selftel: SelfTel
    meter_provider: SdkMeterProvider
    reader: InMemoryMetricReader
    logger_provider: LoggerProvider
    log_exporter: InMemoryLogRecordExporter

    def points(self) -> list[Point]:
        """Collect now (cumulative) and flatten."""
        return collect(self.reader)

    def logs(self) -> list[ReadableLogRecord]:
        """Log records emitted so far (verdict export)."""
        self.logger_provider.force_flush()
        return list(self.log_exporter.get_finished_logs())


def in_memory_selftel(
    *,
    export_verdicts: bool = True,
    wrap: Any = None,
    resource: Mapping[str, str] | None = None,
) -> InMemoryTelemetry:
    """A :class:`SelfTel` over in-memory providers; ``wrap`` (e.g. a FailingMeterProvider factory) wraps the meter provider."""
    reader = InMemoryMetricReader()
    res = Resource.create(dict(resource or {"service.name": "tracecore-test"}))
    meter_provider = SdkMeterProvider(metric_readers=[reader], resource=res, shutdown_on_exit=False)
    log_exporter = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider(resource=res, shutdown_on_exit=False)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    provider: Any = wrap(meter_provider) if wrap is not None else meter_provider
    selftel = SelfTel(provider, logger_provider if export_verdicts else None)
    return InMemoryTelemetry(selftel, meter_provider, reader, logger_provider, log_exporter)


def collect(reader: InMemoryMetricReader) -> list[Point]:
    """Every data point the reader holds now, flattened."""
    data = reader.get_metrics_data()
    rows: list[Point] = []
    if data is None:
        return rows
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    attrs = dict(point.attributes or {})
                    if isinstance(point, HistogramDataPoint):
                        rows.append(
                            Point(
                                metric.name,
                                scope_metrics.scope.name,
                                metric.unit or "",
                                attrs,
                                float(point.count),
                                float(point.sum),
                                tuple(point.explicit_bounds),
                            )
                        )
                    elif isinstance(point, NumberDataPoint):
                        rows.append(
                            Point(
                                metric.name,
                                scope_metrics.scope.name,
                                metric.unit or "",
                                attrs,
                                float(point.value),
                            )
                        )
    return rows


def matches(point: Point, attrs: Mapping[str, Any]) -> bool:
    """Whether ``point`` carries every key/value of ``attrs``."""
    return all(point.attributes.get(k) == v for k, v in attrs.items())


def find(points: Iterable[Point], name: str, attrs: Mapping[str, Any] | None = None) -> list[Point]:
    """Points of metric ``name`` whose attributes include ``attrs``."""
    return [p for p in points if p.name == name and matches(p, attrs or {})]


def value(points: Sequence[Point], name: str, attrs: Mapping[str, Any] | None = None) -> float:
    """Sum of the values of the matching points; fails with a names dump when none match."""
    found = find(points, name, attrs)
    assert found, f"no point {name} {dict(attrs or {})}; have:\n{names_dump(points)}"
    return sum(p.value for p in found)


def scope_of(points: Sequence[Point], name: str, attrs: Mapping[str, Any] | None = None) -> set[str]:
    """Instrumentation scopes under which metric ``name`` (with ``attrs``) was recorded."""
    return {p.scope for p in find(points, name, attrs)}


def names_dump(points: Iterable[Point]) -> str:
    """One line per point (scope, name, attributes, value) for assertion messages."""
    return "\n".join(
        f"{p.scope} {p.name} {dict(sorted(p.attributes.items()))} = {p.value:g}"
        for p in sorted(points, key=lambda p: (p.scope, p.name, sorted(p.attributes.items())))
    )


class _FailingMeter:
    """Delegates to a real meter but raises on registration of names starting with ``prefix``."""

    def __init__(self, inner: Meter, prefix: str | tuple[str, ...]) -> None:
        self._inner = inner
        self._prefix = prefix

    def __getattr__(self, attr: str) -> Any:
        target = getattr(self._inner, attr)
        if not attr.startswith("create_"):
            return target

        def create(name: str, *args: Any, **kwargs: Any) -> Any:
            if name.startswith(self._prefix):
                raise RuntimeError(f"registration refused for {name}")
            return target(name, *args, **kwargs)

        return create


class FailingMeterProvider(MeterProvider):
    """A meter provider whose meters refuse instruments named with ``prefix`` (tests the fallback)."""

    def __init__(self, inner: SdkMeterProvider, prefix: str | tuple[str, ...]) -> None:
        self.inner = inner
        self.prefix = prefix

    def get_meter(
        self,
        name: str,
        version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> Meter:
        return _FailingMeter(self.inner.get_meter(name, version, schema_url, attributes), self.prefix)  # type: ignore[return-value]

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Delegate to the wrapped provider."""
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000) -> None:
        """Delegate to the wrapped provider."""
        self.inner.shutdown(timeout_millis)


def failing_on(prefix: str | tuple[str, ...]) -> Any:
    """A ``wrap`` argument for :func:`in_memory_selftel` that fails registration of names starting with ``prefix`` (or any of several)."""
    return lambda provider: FailingMeterProvider(provider, prefix)


def telemetry_incident(root: Path) -> Path:
    """A small incident with data for several sources, some of it damaged (for rejections).

    Flight-recorder dumps, kernel logs and DCGM scrapes come from the deterministic synthesiser
    (with an Xid 79 on one GPU); py-spy dumps are the real captures in ``fixtures/samples/pyspy``,
    plus two truncated copies that the parser must partly reject.
    """
    spec = SynthSpec(ranks=8, hosts=2, entries=40, fmt="json", fault="xid79", kernel_lines=40, dcgm_scrapes=2)
    write_incident(spec, root)
    pyspy = root / "pyspy"
    pyspy.mkdir(parents=True, exist_ok=True)
    dumps = SAMPLES / "pyspy" / "dump"
    for name in ("rank0.dump.txt", "rank1.dump.json"):
        (pyspy / name).write_bytes((dumps / name).read_bytes())
    (pyspy / "rank2.trunc.dump.txt").write_bytes((dumps / "rank0.dump.txt").read_bytes()[:600])
    (pyspy / "rank3.trunc.dump.json").write_bytes((dumps / "rank1.dump.json").read_bytes()[:300])
    return root


def global_providers_are_unset() -> bool:
    """Whether the OpenTelemetry global meter and logger providers are still the API's defaults."""
    from opentelemetry import _logs, metrics

    return not isinstance(metrics.get_meter_provider(), SdkMeterProvider) and not isinstance(
        _logs.get_logger_provider(), LoggerProvider
    )


def reported_reasons(source: str, by_reason: Mapping[str, int]) -> dict[str, int]:
    """The ledger's rejections by reason as the metric reports them: reasons outside the parser's
    declared enum (its wire ``reasons``) fold into ``other``."""
    from tracecore.analyzers.ingest.registry import parser_for
    from tracecore.analyzers.selftel import OTHER_REASON

    declared = parser_for(source).telemetry.reasons
    folded: dict[str, int] = {}
    for reason, count in by_reason.items():
        key = reason if not declared or reason in declared else OTHER_REASON
        folded[key] = folded.get(key, 0) + count
    return folded
