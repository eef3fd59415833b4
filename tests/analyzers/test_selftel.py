"""Self-telemetry: handles, degraded state, fallback, verdict log records, provider set-up."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.helpers.incident import ingest_serial
from tests.helpers.selftel import (
    failing_on,
    find,
    global_providers_are_unset,
    in_memory_selftel,
    names_dump,
    scope_of,
    telemetry_incident,
    value,
)
from tracecore.analyzers import selftel as st
from tracecore.analyzers.detectors.base import Detector
from tracecore.analyzers.detectors.registry import DETECTORS
from tracecore.analyzers.pipeline import analyze_ingested
from tracecore.analyzers.report import (
    Affected,
    Confidence,
    Culprit,
    GpuRef,
    IngestSummary,
    Report,
    Role,
    Severity,
    Verdict,
)
from tracecore.analyzers.tables import Tables

WIRE = st.SourceWire(
    component_id="pyspy", scope="tracecore.analyzers.ingest.pyspy", reasons=("bad-json", "truncated")
)
DWIRE = st.DetectorWire(component_id="xid-fatal", scope="tracecore.analyzers.detectors.xid_fatal")
EWIRE = st.ExporterWire(component_id="json", scope="tracecore.cli.render.json_view")
ID = st.ATTR_COMPONENT_ID


def test_source_handle_counts_files_records_rejections_bytes_and_latency() -> None:
    tel = in_memory_selftel()
    handle = tel.selftel.source(WIRE)
    handle.file_read("parsed")
    handle.records(10, {"bad-json": 2})
    handle.bytes_read(4096)
    handle.parse_latency(0.02)
    handle.file_read("failed")
    handle.records(0, {"truncated": 1, "made-up": 3})
    handle.bytes_read(100)
    handle.parse_latency(3.0)
    points = tel.points()
    dump = names_dump(points)
    assert value(points, "tracecore.source.files", {ID: "pyspy", st.ATTR_RESULT: "parsed"}) == 1, dump
    assert value(points, "tracecore.source.files", {ID: "pyspy", st.ATTR_RESULT: "failed"}) == 1, dump
    assert value(points, "tracecore.source.records", {ID: "pyspy"}) == 10, dump
    assert value(points, "tracecore.source.rejected", {st.ATTR_REASON: "bad-json"}) == 2, dump
    assert value(points, "tracecore.source.rejected", {st.ATTR_REASON: "truncated"}) == 1, dump
    # reasons outside the parser's declared enum are folded so the attribute stays bounded
    assert value(points, "tracecore.source.rejected", {st.ATTR_REASON: "other"}) == 3, dump
    assert find(points, "tracecore.source.rejected", {st.ATTR_REASON: "made-up"}) == []
    assert value(points, "tracecore.source.bytes", {ID: "pyspy"}) == 4196, dump
    (latency,) = find(points, "tracecore.source.parse.duration", {ID: "pyspy"})
    assert latency.value == 2 and latency.sum == pytest.approx(3.02)
    assert latency.bucket_bounds == st.DURATION_BUCKETS_S
    assert latency.unit == "s"
    assert scope_of(points, "tracecore.source.records") == {"tracecore.analyzers.ingest.pyspy"}
    # the last file failed: degraded now
    assert value(points, "tracecore.source.degraded", {ID: "pyspy"}) == 1, dump
    assert find(points, "tracecore.source.last_activity", {ID: "pyspy"}), dump


def test_degraded_state_flips_accumulates_and_recovers() -> None:
    now = [100.0]
    state = st.DegradedState(monotonic=lambda: now[0], wall=lambda: 1_700_000_000.0 + now[0])
    assert not state.degraded and state.degraded_seconds() == 0.0 and state.last_activity() is None
    state.observe(bad=False, clean=True)
    assert not state.degraded
    now[0] = 110.0
    state.observe(bad=True, clean=True)  # a file with rejections is bad even if it also had records
    assert state.degraded and state.transitions == 1
    now[0] = 115.0
    assert state.degraded_seconds() == 5.0
    state.observe(bad=False, clean=False)  # nothing accepted, nothing rejected: no change
    assert state.degraded
    now[0] = 117.0
    state.observe(bad=False, clean=True)
    assert not state.degraded and state.transitions == 2
    now[0] = 200.0
    assert state.degraded_seconds() == 7.0
    assert state.last_activity() == 1_700_000_117.0


def test_failed_file_stays_degraded_until_a_clean_file() -> None:
    state = st.DegradedState()
    state.file_failed()
    state.file_records(0, 0)  # the failed file's own (empty) outcome does not heal it
    assert state.degraded
    state.file_records(12, 0)
    assert not state.degraded
    state.file_records(3, 1)
    assert state.degraded and state.transitions == 3


def test_degraded_state_is_consistent_under_threads() -> None:
    state = st.DegradedState()
    barrier = threading.Barrier(8)

    def worker(index: int) -> None:
        barrier.wait()
        for step in range(500):
            bad = (index + step) % 2 == 0
            state.observe(bad=bad, clean=not bad)
            state.degraded_seconds()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # every transition alternates healthy/degraded, so parity tells the state
    assert state.degraded == (state.transitions % 2 == 1)
    assert state.degraded_seconds() >= 0.0


def test_source_recovers_after_a_clean_file_in_the_gauge() -> None:
    tel = in_memory_selftel()
    handle = tel.selftel.source(WIRE)
    handle.file_read("parsed")
    handle.records(5, {"bad-json": 1})
    handle.file_read("parsed")
    handle.records(7, {})
    points = tel.points()
    assert value(points, "tracecore.source.degraded", {ID: "pyspy"}) == 0, names_dump(points)
    assert value(points, "tracecore.source.degraded.time", {ID: "pyspy"}) >= 0.0


def test_detector_and_exporter_handles() -> None:
    tel = in_memory_selftel()
    detector = tel.selftel.detector(DWIRE)
    detector.evaluated("verdicts", 0.004)
    detector.evaluated("clean", 0.001)
    detector.verdict("xid-fatal", "critical", "full", "root")
    exporter = tel.selftel.exporter(EWIRE)
    exporter.called("ok", 0.01)
    points = tel.points()
    dump = names_dump(points)
    assert (
        value(points, "tracecore.detector.evaluations", {ID: "xid-fatal", st.ATTR_RESULT: "verdicts"}) == 1
    ), dump
    assert value(points, "tracecore.detector.evaluations", {ID: "xid-fatal", st.ATTR_RESULT: "clean"}) == 1, (
        dump
    )
    assert value(points, "tracecore.detector.duration", {ID: "xid-fatal"}) == 2, dump
    verdicts = {
        st.ATTR_PATTERN_ID: "xid-fatal",
        st.ATTR_SEVERITY: "critical",
        st.ATTR_CONFIDENCE: "full",
        st.ATTR_ROLE: "root",
    }
    assert value(points, "tracecore.detector.verdicts", verdicts) == 1, dump
    assert scope_of(points, "tracecore.detector.verdicts") == {"tracecore.analyzers.detectors.xid_fatal"}
    assert value(points, "tracecore.exporter.calls", {ID: "json", st.ATTR_RESULT: "ok"}) == 1, dump
    assert scope_of(points, "tracecore.exporter.duration") == {"tracecore.cli.render.json_view"}


def test_handles_are_cached_per_component() -> None:
    tel = in_memory_selftel()
    first = tel.selftel.detector(DWIRE)
    assert tel.selftel.detector(DWIRE) is first
    first.evaluated("clean", 0.001)
    tel.selftel.detector(DWIRE).evaluated("clean", 0.001)
    points = tel.points()
    assert len(find(points, "tracecore.detector.evaluations")) == 1
    assert value(points, "tracecore.detector.evaluations", {ID: "xid-fatal"}) == 2


def test_wire_instrument_names_are_used() -> None:
    tel = in_memory_selftel()
    wire = st.ExporterWire(component_id="custom", scope="tests.custom", calls="tests.custom.calls")
    tel.selftel.exporter(wire).called("ok", 0.5)
    points = tel.points()
    assert value(points, "tests.custom.calls", {ID: "custom"}) == 1, names_dump(points)
    assert find(points, "tracecore.exporter.calls") == []


def test_failed_registration_gives_noop_handle_counted_once() -> None:
    tel = in_memory_selftel(wrap=failing_on("tracecore.source."))
    handle = tel.selftel.source(WIRE)
    assert type(handle) is st.SourceHandle
    handle.file_read("parsed")
    handle.records(3, {"bad-json": 1})
    again = tel.selftel.source(WIRE)
    again.records(1, {})
    tel.selftel.source(st.SourceWire(component_id="dcgm", scope="tracecore.analyzers.ingest.dcgm"))
    tel.selftel.detector(DWIRE).evaluated("clean", 0.001)  # other kinds still work
    points = tel.points()
    dump = names_dump(points)
    assert [p for p in points if p.name.startswith("tracecore.source.")] == [], dump
    errors = find(points, "tracecore.selftel.init_errors")
    by_component = {p.attributes[ID]: p for p in errors}
    assert set(by_component) == {"pyspy", "dcgm"}, dump
    pyspy = by_component["pyspy"]
    assert pyspy.value == 1
    assert pyspy.attributes[st.ATTR_COMPONENT_KIND] == "source"
    assert pyspy.attributes[st.ATTR_ERROR_TYPE] == "registration_failed:RuntimeError"
    assert pyspy.scope == "tracecore.analyzers.selftel"
    assert value(points, "tracecore.detector.evaluations", {ID: "xid-fatal"}) == 1, dump


def test_missing_provider_gives_noop_handle_and_reports_it() -> None:
    calls: list[tuple[str, str, str]] = []
    handle = st.detector_telemetry(DWIRE, None, lambda *args: calls.append(args))
    assert type(handle) is st.DetectorHandle
    handle.evaluated("clean", 0.1)
    assert calls == [("xid-fatal", "detector", "no_provider")]


def test_noop_records_nothing_and_is_the_none_mode() -> None:
    assert st.from_cli("none") is st.NOOP
    assert not st.NOOP.enabled
    assert type(st.NOOP.source(WIRE)) is st.SourceHandle
    st.NOOP.export_verdicts(_report([]))
    st.NOOP.close()


def test_failing_telemetry_does_not_change_the_report(tmp_path: Path) -> None:
    root = telemetry_incident(tmp_path / "incident")
    plain = analyze_ingested(ingest_serial(root), raise_errors=True)
    tel = in_memory_selftel(wrap=failing_on(("tracecore.source.", "tracecore.detector.")))
    from tracecore.analyzers.ingest.engine import ingest

    broken = analyze_ingested(
        ingest(root, jobs=1, selftel=tel.selftel), selftel=tel.selftel, raise_errors=True
    )
    assert broken.to_dict() == plain.to_dict()
    points = tel.points()
    kinds = {p.attributes[st.ATTR_COMPONENT_KIND] for p in find(points, "tracecore.selftel.init_errors")}
    assert kinds == {"source", "detector"}, names_dump(points)
    detectors = {
        p.attributes[ID]
        for p in find(points, "tracecore.selftel.init_errors", {st.ATTR_COMPONENT_KIND: "detector"})
    }
    assert detectors == {d.id for d in DETECTORS}


def _probe(tables: Tables) -> list[Verdict]:
    """Test detector: one verdict on a GPU of node-1.

    What it detects: nothing real. Signals: none. Rule: always. Known false positives: all.
    """
    return [
        Verdict(
            pattern="selftel-probe",
            title="Probe verdict on node-1",
            severity=Severity.ERROR,
            key="host=node-1",
            confidence=Confidence.FULL,
            culprit=Culprit(
                ranks=[5],
                hosts=["node-1"],
                gpus=[GpuRef(host="node-1", index=1, pci_bus_id="0000:33:00.0", uuid="GPU-abc")],
                pids=[4242],
            ),
            window_start_ns=1_795_766_400_000_000_000,
            details={"pod": "trainer-5", "namespace": "ml"},
        )
    ]


PROBE = Detector(
    id="selftel-probe",
    summary="probe",
    sources=(),
    tables=(),
    detect=_probe,
    scope="tests.analyzers.test_selftel",
)


def test_pipeline_records_every_detector_and_the_verdicts(tmp_path: Path) -> None:
    root = telemetry_incident(tmp_path / "incident")
    tel = in_memory_selftel()
    report = analyze_ingested(ingest_serial(root), selftel=tel.selftel, detectors=[*DETECTORS, PROBE])
    points = tel.points()
    dump = names_dump(points)
    for detector in [*DETECTORS, PROBE]:
        assert value(points, "tracecore.detector.evaluations", {ID: detector.id}) == 1, dump
        assert value(points, "tracecore.detector.duration", {ID: detector.id}) == 1, dump
        assert scope_of(points, "tracecore.detector.evaluations", {ID: detector.id}) == {detector.scope}
    probe = report.verdicts[[v.pattern for v in report.verdicts].index("selftel-probe")]
    # counted with the values the final report holds (after correlation)
    attrs = {
        ID: "selftel-probe",
        st.ATTR_PATTERN_ID: "selftel-probe",
        st.ATTR_SEVERITY: "error",
        st.ATTR_CONFIDENCE: probe.confidence.value,
        st.ATTR_ROLE: probe.role.value,
    }
    (point,) = find(points, "tracecore.detector.verdicts", attrs)
    assert point.value == 1 and point.attributes == attrs
    assert sum(p.value for p in find(points, "tracecore.detector.verdicts")) == len(report.verdicts)


def _report(verdicts: list[Verdict], root: str | None = None) -> Report:
    return Report(
        tool_version="0",
        incident_path="/data/incident-7",
        ingest=IngestSummary(),
        verdicts=verdicts,
        root_cause=root,
    )


def test_verdicts_become_log_records_with_mapped_severity_and_attributes() -> None:
    root = _probe(Tables({}))[0]
    root.id, root.role = "v1", Role.ROOT
    other = Verdict(
        pattern="gpu-throttle",
        title="GPUs throttled",
        severity=Severity.WARNING,
        culprit=Culprit(hosts=["node-0", "node-1"]),
        affected=Affected(ranks=[0, 1]),
        id="v2",
    )
    tel = in_memory_selftel()
    tel.selftel.export_verdicts(_report([root, other], root="v1"))
    logs = tel.logs()
    assert len(logs) == 2
    first, second = (log.log_record for log in logs)
    assert first.body == "Probe verdict on node-1"
    assert first.severity_text == "error" and first.severity_number is not None
    assert first.severity_number.name == "ERROR"
    assert first.timestamp == 1_795_766_400_000_000_000
    assert first.event_name == "tracecore.verdict"
    assert dict(first.attributes or {}) == {
        "tracecore.pattern.id": "selftel-probe",
        "tracecore.verdict.id": "v1",
        "tracecore.verdict.key": "host=node-1",
        "tracecore.verdict.severity": "error",
        "tracecore.verdict.confidence": "full",
        "tracecore.verdict.role": "root",
        "tracecore.verdict.root_cause": True,
        "tracecore.incident.path": "/data/incident-7",
        "tracecore.culprit.ranks": (5,),
        "tracecore.culprit.hosts": ("node-1",),
        "tracecore.culprit.pids": (4242,),
        "tracecore.culprit.gpu.pci_bus_ids": ("0000:33:00.0",),
        "tracecore.culprit.gpu.uuids": ("GPU-abc",),
        "tracecore.culprit.gpu.indexes": (1,),
        "tracecore.verdict.window_start_ns": 1_795_766_400_000_000_000,
        "host.name": "node-1",
        "process.pid": 4242,
        "hw.id": "GPU-abc",
        "hw.type": "gpu",
        "k8s.pod.name": "trainer-5",
        "k8s.namespace.name": "ml",
    }
    assert second.severity_number is not None and second.severity_number.name == "WARN"
    attrs = dict(second.attributes or {})
    assert attrs["tracecore.verdict.root_cause"] is False
    assert attrs["tracecore.culprit.hosts"] == ("node-0", "node-1")
    assert "host.name" not in attrs  # two hosts: no single semconv host
    points = tel.points()
    assert value(points, "tracecore.exporter.calls", {ID: "otlp", st.ATTR_RESULT: "ok"}) == 1, names_dump(
        points
    )


@pytest.mark.parametrize(
    ("severity", "number"),
    [("critical", "FATAL"), ("error", "ERROR"), ("warning", "WARN"), ("info", "INFO")],
    ids=["critical", "error", "warning", "info"],
)
def test_severity_mapping(severity: str, number: str) -> None:
    tel = in_memory_selftel()
    tel.selftel.export_verdicts(
        _report([Verdict(pattern="p", title="t", severity=Severity(severity), id="v1")])
    )
    (log,) = tel.logs()
    assert log.log_record.severity_number is not None
    assert log.log_record.severity_number.name == number


def test_stdout_mode_resource_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    monkeypatch.setenv("OTEL_SERVICE_NAME", "ci-analyzer")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=ci,team=infra")
    out = tmp_path / "tel.jsonl"
    tel = st.from_cli("stdout", selftel_file=str(out))
    assert tel.enabled and tel.logger_provider is None
    assert global_providers_are_unset()  # providers are passed to components, never made global
    tel.exporter(EWIRE).called("ok", 0.2)
    tel.close()
    (line,) = out.read_text().splitlines()
    resource = json.loads(line)["resource_metrics"][0]["resource"]["attributes"]
    assert resource["service.name"] == "ci-analyzer"
    assert resource["deployment.environment.name"] == "ci"
    assert resource["team"] == "infra"
    assert "service.version" in resource


def test_default_service_name_is_tracecore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert st.build_resource().attributes["service.name"] == "tracecore"


def test_sdk_disabled_turns_everything_off(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert st.from_cli("otlp", export_verdicts=True) is st.NOOP
    assert "OTEL_SDK_DISABLED" in capsys.readouterr().err


def test_unavailable_protocol_is_one_notice(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if st.grpc_available():
        pytest.skip("the grpc extra is installed")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    tel = st.from_cli("otlp")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "opentelemetry-exporter-otlp-proto-grpc" in err
    assert tel.meter_provider is None
    tel.close()
    assert capsys.readouterr().err == ""


def test_endpoint_resolution_and_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "https://user:pw@logs.example:443/ingest?token=x")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", raising=False)
    assert st.otlp_endpoint("metrics") == "http://collector:4318/v1/metrics"
    assert st.otlp_endpoint("logs") == "https://user:pw@logs.example:443/ingest?token=x"
    assert st.display_endpoint(st.otlp_endpoint("logs")) == "https://logs.example:443/ingest"


def test_close_restores_sdk_logging() -> None:
    logger = logging.getLogger("opentelemetry")
    before = (logger.propagate, list(logger.handlers))
    tel = in_memory_selftel()
    assert (logger.propagate, list(logger.handlers)) == before  # in-memory providers leave logging alone
    captured = st.SelfTel(tel.meter_provider, capture_sdk_logs=True)
    assert logger.propagate is False
    logging.getLogger("opentelemetry.sdk.metrics").warning("exporter said %s", "boom")
    assert captured.watch.sdk_messages == ["exporter said boom"]
    captured.close()
    assert (logger.propagate, list(logger.handlers)) == before


def test_none_mode_loads_no_opentelemetry(tmp_path: Path) -> None:
    root = telemetry_incident(tmp_path / "incident")
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from tracecore.analyzers import selftel\n"
        "from tracecore.analyzers.pipeline import analyze\n"
        f"analyze(Path({str(root)!r}), jobs=1, selftel=selftel.from_cli('none'))\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]", result.stdout


def test_catalogue_matches_wire_defaults() -> None:
    names = {spec.name for spec in st.INSTRUMENTS}
    wires = (
        st.SourceWire("x", "s").instrument_names
        + st.DetectorWire("x", "s").instrument_names
        + st.ExporterWire("x", "s").instrument_names
    )
    assert set(wires) | {st.INIT_ERRORS.name} == names
