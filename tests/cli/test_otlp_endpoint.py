"""OTLP against a real endpoint on 127.0.0.1: a small OTLP/HTTP receiver in this module decodes
what tracecore sends with the official ``opentelemetry-proto`` messages. Also a closed port and an
endpoint that never answers: the run ends in time with the normal result, one line on stderr.
"""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.cli.test_selftel_cli import documented
from tests.helpers.cli import run_cli
from tests.helpers.selftel import reported_reasons, telemetry_incident
from tracecore.analyzers import selftel as st
from tracecore.analyzers.detectors.registry import DETECTORS
from tracecore.analyzers.report import Culprit, GpuRef, IngestSummary, Report, Role, Severity, Verdict

SECRET = "s3cr3t-token-value"
TRACECORE = str(Path(sys.executable).with_name("tracecore"))


@dataclass
class Received:
    """Requests the receiver decoded."""

    metrics: list[ExportMetricsServiceRequest] = field(default_factory=list)
    logs: list[ExportLogsServiceRequest] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _receiver_handler(received: Received) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            encoding = self.headers.get("Content-Encoding", "")
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            response: Any
            with received.lock:
                received.headers.append({k.lower(): v for k, v in self.headers.items()})
                if self.path == "/v1/metrics":
                    received.metrics.append(ExportMetricsServiceRequest.FromString(body))
                    response = ExportMetricsServiceResponse()
                elif self.path == "/v1/logs":
                    received.logs.append(ExportLogsServiceRequest.FromString(body))
                    response = ExportLogsServiceResponse()
                else:
                    self.send_error(404)
                    return
            payload = response.SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[tuple[str, Received]]:
    received = Received()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _receiver_handler(received))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return telemetry_incident(tmp_path_factory.mktemp("otlp") / "incident")


def decode(value: AnyValue) -> Any:
    """A protobuf AnyValue as a Python value (arrays as tuples)."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(decode(v) for v in value.array_value.values)
    return getattr(value, kind) if kind else None


def attributes(kvs: Any) -> dict[str, Any]:
    """Repeated KeyValue as a dict."""
    return {kv.key: decode(kv.value) for kv in kvs}


def metric_points(requests: list[ExportMetricsServiceRequest]) -> list[dict[str, Any]]:
    """One row per data point: name, scope, attributes, value (count for histograms), resource."""
    rows = []
    for request in requests:
        for resource_metrics in request.resource_metrics:
            resource = attributes(resource_metrics.resource.attributes)
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    kind = metric.WhichOneof("data")
                    for point in getattr(metric, kind).data_points:
                        if kind == "histogram":
                            number: float = point.count
                        else:
                            number = (
                                point.as_int if point.WhichOneof("value") == "as_int" else point.as_double
                            )
                        rows.append(
                            {
                                "name": metric.name,
                                "unit": metric.unit,
                                "kind": kind,
                                "scope": scope_metrics.scope.name,
                                "attributes": attributes(point.attributes),
                                "value": number,
                                "bounds": tuple(point.explicit_bounds) if kind == "histogram" else None,
                                "resource": resource,
                            }
                        )
    return rows


def log_records(requests: list[ExportLogsServiceRequest]) -> list[dict[str, Any]]:
    """One row per log record with its scope and resource."""
    rows = []
    for request in requests:
        for resource_logs in request.resource_logs:
            resource = attributes(resource_logs.resource.attributes)
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    rows.append(
                        {
                            "scope": scope_logs.scope.name,
                            "body": decode(record.body),
                            "severity_number": record.severity_number,
                            "severity_text": record.severity_text,
                            "event_name": record.event_name,
                            "time_unix_nano": record.time_unix_nano,
                            "attributes": attributes(record.attributes),
                            "resource": resource,
                        }
                    )
    return rows


def _sum(rows: list[dict[str, Any]], name: str, attrs: dict[str, Any]) -> float:
    found = [
        r for r in rows if r["name"] == name and all(r["attributes"].get(k) == v for k, v in attrs.items())
    ]
    assert found, f"no {name} {attrs}; have: {sorted({r['name'] for r in rows})}"
    return sum(r["value"] for r in found)


def test_metrics_and_verdict_logs_arrive(incident: Path, receiver: tuple[str, Received]) -> None:
    endpoint, received = receiver
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_HEADERS": f"x-api-key={SECRET}",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=ci",
    }
    plain = run_cli(["analyze", str(incident), "--format", "json"])
    result = run_cli(
        ["analyze", str(incident), "--format", "json", "--selftel", "otlp", "--export", "otlp", "--debug"],
        env=env,
    )
    assert result.exit_code == plain.exit_code, result.stderr
    report = json.loads(result.stdout)
    assert report == json.loads(plain.stdout)
    assert SECRET not in result.stdout and SECRET not in result.stderr
    assert "self-telemetry" not in result.stderr, result.stderr

    assert len(received.metrics) == 1
    assert all(h.get("x-api-key") == SECRET for h in received.headers)
    assert {h["content-type"] for h in received.headers} == {"application/x-protobuf"}
    rows = metric_points(received.metrics)
    resource = rows[0]["resource"]
    assert resource["service.name"] == "tracecore"
    assert resource["deployment.environment.name"] == "ci"
    assert resource["service.version"]
    for source in report["ingest"]["sources"]:
        if source["files"] + source["files_failed"] == 0:
            continue
        component = {st.ATTR_COMPONENT_ID: source["source"]}
        assert _sum(rows, "tracecore.source.files", component) == source["files"] + source["files_failed"]
        assert _sum(rows, "tracecore.source.bytes", component) == source["bytes"]
        if source["records"]:
            assert _sum(rows, "tracecore.source.records", component) == source["records"]
        for reason, count in reported_reasons(source["source"], source["rejected_by_reason"]).items():
            assert _sum(rows, "tracecore.source.rejected", {**component, st.ATTR_REASON: reason}) == count
    for detector in DETECTORS:
        component = {st.ATTR_COMPONENT_ID: detector.id}
        assert _sum(rows, "tracecore.detector.evaluations", component) == 1
        (latency,) = [
            r
            for r in rows
            if r["name"] == "tracecore.detector.duration"
            and r["attributes"][st.ATTR_COMPONENT_ID] == detector.id
        ]
        assert latency["value"] == 1 and latency["kind"] == "histogram" and latency["unit"] == "s"
        assert latency["bounds"] == st.DURATION_BUCKETS_S
        assert latency["scope"] == detector.scope
    assert _sum(rows, "tracecore.exporter.calls", {st.ATTR_COMPONENT_ID: "json", st.ATTR_RESULT: "ok"}) == 1
    assert _sum(rows, "tracecore.exporter.calls", {st.ATTR_COMPONENT_ID: "otlp", st.ATTR_RESULT: "ok"}) == 1

    logs = log_records(received.logs)
    assert len(logs) == len(report["verdicts"])
    by_id = {log["attributes"]["tracecore.verdict.id"]: log for log in logs}
    for verdict in report["verdicts"]:
        log = by_id[verdict["id"]]
        assert log["body"] == verdict["title"]
        assert log["severity_text"] == verdict["severity"]
        assert log["attributes"]["tracecore.pattern.id"] == verdict["pattern"]
        assert log["attributes"]["tracecore.verdict.root_cause"] == (verdict["id"] == report["root_cause"])
        assert log["resource"]["service.name"] == "tracecore"

    # everything that crossed the wire is documented
    names = {r["name"] for r in rows}
    keys = {k for r in rows for k in r["attributes"]} | {k for log in logs for k in log["attributes"]}
    assert sorted(names - documented("selftel.md")) == []
    assert sorted(keys - documented("attributes.md")) == []


def test_verdict_records_decode_with_every_field(
    receiver: tuple[str, Received], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, received = receiver
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", f"{endpoint}/v1/logs")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "verdict-router")
    verdicts = [
        Verdict(
            pattern="gpu-fell-off-bus",
            title="GPU 3 on node-1 fell off the bus",
            severity=Severity.CRITICAL,
            key="host=node-1 pci=0000:3b:00.0",
            culprit=Culprit(
                ranks=[11], hosts=["node-1"], gpus=[GpuRef("node-1", 3, "0000:3b:00.0", None)], pids=[901]
            ),
            role=Role.ROOT,
            window_start_ns=1_795_766_400_000_000_000,
            window_end_ns=1_795_766_401_000_000_000,
            id="v1",
        ),
        Verdict(
            pattern="collective-hang",
            title="All ranks stuck",
            severity=Severity.ERROR,
            role=Role.SYMPTOM,
            id="v2",
        ),
    ]
    report = Report(
        tool_version="0", incident_path="inc/7", ingest=IngestSummary(), verdicts=verdicts, root_cause="v1"
    )
    tel = st.from_cli("none", export_verdicts=True)
    assert tel.meter_provider is None and tel.logger_provider is not None
    tel.export_verdicts(report)
    tel.close()
    logs = log_records(received.logs)
    assert received.metrics == []
    assert [log["body"] for log in logs] == ["GPU 3 on node-1 fell off the bus", "All ranks stuck"]
    first, second = logs
    assert first["severity_number"] == 21 and second["severity_number"] == 17
    assert first["event_name"] == "tracecore.verdict"
    assert first["scope"] == "tracecore.analyzers.selftel"
    assert first["time_unix_nano"] == 1_795_766_400_000_000_000
    assert first["resource"]["service.name"] == "verdict-router"
    assert first["attributes"] == {
        "tracecore.pattern.id": "gpu-fell-off-bus",
        "tracecore.verdict.id": "v1",
        "tracecore.verdict.key": "host=node-1 pci=0000:3b:00.0",
        "tracecore.verdict.severity": "critical",
        "tracecore.verdict.confidence": "partial",
        "tracecore.verdict.role": "root",
        "tracecore.verdict.root_cause": True,
        "tracecore.incident.path": "inc/7",
        "tracecore.culprit.ranks": (11,),
        "tracecore.culprit.hosts": ("node-1",),
        "tracecore.culprit.pids": (901,),
        "tracecore.culprit.gpu.pci_bus_ids": ("0000:3b:00.0",),
        "tracecore.culprit.gpu.indexes": (3,),
        "tracecore.verdict.window_start_ns": 1_795_766_400_000_000_000,
        "tracecore.verdict.window_end_ns": 1_795_766_401_000_000_000,
        "host.name": "node-1",
        "process.pid": 901,
        "hw.id": "0000:3b:00.0",
        "hw.type": "gpu",
    }
    assert second["attributes"]["tracecore.verdict.root_cause"] is False


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A port that accepts connections (kernel backlog) but never reads or answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()


def _run(incident: Path, endpoint: str | None) -> subprocess.CompletedProcess[str]:
    """``tracecore analyze --format json`` in a fresh process; with OTLP to ``endpoint`` unless None."""
    env = {"PATH": "/usr/bin:/bin"}
    args = [TRACECORE, "analyze", str(incident), "--format", "json", "--debug", "-j", "1"]
    if endpoint is not None:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
        env["OTEL_EXPORTER_OTLP_HEADERS"] = f"authorization=Bearer {SECRET}"
        args += ["--selftel", "otlp", "--export", "otlp"]
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,  # the run must end on its own well before this
        check=False,
    )


@pytest.fixture(scope="module")
def plain_run(incident: Path) -> subprocess.CompletedProcess[str]:
    """The same run without telemetry, for comparison."""
    return _run(incident, None)


@pytest.mark.parametrize("kind", ["closed-port", "never-answers"])
def test_unreachable_endpoint_keeps_result_and_reports_once(
    incident: Path, kind: str, silent_endpoint: str, plain_run: subprocess.CompletedProcess[str]
) -> None:
    plain = plain_run
    endpoint = f"http://127.0.0.1:{_closed_port()}" if kind == "closed-port" else silent_endpoint
    result = _run(incident, endpoint)
    assert result.returncode == plain.returncode, result.stderr
    assert json.loads(result.stdout) == json.loads(plain.stdout)
    lines = [line for line in result.stderr.splitlines() if "self-telemetry" in line]
    assert len(lines) == 1, result.stderr
    assert "failed" in lines[0] and endpoint in lines[0]
    assert "verdicts and exit code are unaffected" in lines[0]
    assert SECRET not in result.stderr
    # nothing else from the OpenTelemetry SDK leaks onto stderr
    assert "Traceback" not in result.stderr and "opentelemetry" not in result.stderr.lower()
