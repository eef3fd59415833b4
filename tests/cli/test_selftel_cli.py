"""``tracecore analyze --selftel stdout``: telemetry lands where documented, never in the result.

Also the guard that every instrument name and attribute key emitted in a full run is documented
in ``docs/selftel.md`` / ``docs/attributes.md``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from tests.helpers.cli import run_cli
from tests.helpers.paths import DOCS
from tests.helpers.selftel import failing_on, in_memory_selftel, reported_reasons, telemetry_incident
from tracecore.analyzers import selftel as st
from tracecore.analyzers.detectors.base import Detector
from tracecore.analyzers.detectors.registry import DETECTORS
from tracecore.analyzers.ingest.engine import ingest
from tracecore.analyzers.pipeline import analyze_ingested
from tracecore.analyzers.report import Confidence, Culprit, GpuRef, Severity, Verdict
from tracecore.analyzers.tables import Tables

ID = st.ATTR_COMPONENT_ID


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return telemetry_incident(tmp_path_factory.mktemp("selftel") / "incident")


def telemetry_lines(text: str) -> list[dict[str, Any]]:
    """The metric documents (one JSON object per line) in ``text``; other lines are ignored."""
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"resource_metrics"')]


def flatten(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per data point: name, scope, unit, attributes, value (count for histograms)."""
    rows = []
    for document in documents:
        for resource_metrics in document["resource_metrics"]:
            for scope_metrics in resource_metrics["scope_metrics"]:
                for metric in scope_metrics["metrics"]:
                    for point in metric["data"]["data_points"]:
                        rows.append(
                            {
                                "name": metric["name"],
                                "scope": scope_metrics["scope"]["name"],
                                "unit": metric["unit"],
                                "attributes": point["attributes"],
                                "value": point.get("value", point.get("count")),
                                "bounds": point.get("explicit_bounds"),
                            }
                        )
    return rows


@pytest.fixture(scope="module")
def json_runs(incident: Path) -> tuple[Result, Result]:
    """``analyze --format json`` without and with ``--selftel stdout``."""
    plain = run_cli(["analyze", str(incident), "--format", "json"])
    return plain, run_cli(["analyze", str(incident), "--format", "json", "--selftel", "stdout"])


def test_json_on_stdout_stays_valid_and_telemetry_goes_to_stderr(json_runs: tuple[Result, Result]) -> None:
    plain, result = json_runs
    assert result.exit_code == plain.exit_code, result.stderr
    report = json.loads(result.stdout)  # nothing but the result on stdout
    assert report == json.loads(plain.stdout)
    assert "resource_metrics" not in result.stdout
    documents = telemetry_lines(result.stderr)
    assert len(documents) == 1, result.stderr
    rows = flatten(documents)
    resource = documents[0]["resource_metrics"][0]["resource"]["attributes"]
    assert resource["service.name"] == "tracecore"

    sources = [s for s in report["ingest"]["sources"] if s["files"] + s["files_failed"] > 0]
    assert {s["source"] for s in sources} >= {"pyspy"}
    for source in sources:
        name = source["source"]
        component = {ID: name}
        assert _sum(rows, "tracecore.source.files", component) == source["files"] + source["files_failed"]
        if source["records"]:
            assert _sum(rows, "tracecore.source.records", component) == source["records"]
        assert _sum(rows, "tracecore.source.rejected", component, missing_ok=True) == source["rejected"]
        for reason, count in reported_reasons(source["source"], source["rejected_by_reason"]).items():
            assert _sum(rows, "tracecore.source.rejected", {**component, st.ATTR_REASON: reason}) == count
        assert _sum(rows, "tracecore.source.bytes", component) == source["bytes"]
        assert (
            _sum(rows, "tracecore.source.parse.duration", component)
            == source["files"] + source["files_failed"]
        )
        degraded = _sum(rows, "tracecore.source.degraded", component)
        assert degraded in (0, 1)
        assert _sum(rows, "tracecore.source.last_activity", component) > 1_600_000_000
    # py-spy read two truncated dumps: it rejected records and is degraded-capable
    pyspy = next(s for s in sources if s["source"] == "pyspy")
    assert pyspy["rejected"] > 0

    for detector in DETECTORS:
        component = {ID: detector.id}
        assert _sum(rows, "tracecore.detector.evaluations", component) == 1
        (latency,) = [
            r
            for r in rows
            if r["name"] == "tracecore.detector.duration" and r["attributes"][ID] == detector.id
        ]
        assert latency["value"] == 1 and latency["unit"] == "s"
        assert tuple(latency["bounds"]) == st.DURATION_BUCKETS_S
        assert latency["scope"] == detector.scope
    assert _sum(rows, "tracecore.detector.verdicts", {}, missing_ok=True) == len(report["verdicts"])
    assert _sum(rows, "tracecore.exporter.calls", {ID: "json", st.ATTR_RESULT: "ok"}) == 1
    assert {r["scope"] for r in rows if r["name"] == "tracecore.exporter.calls"} == {
        "tracecore.cli.render.json_view"
    }
    assert not [r for r in rows if r["name"] == "tracecore.selftel.init_errors"]


def _sum(rows: list[dict[str, Any]], name: str, attrs: dict[str, Any], missing_ok: bool = False) -> float:
    found = [
        r for r in rows if r["name"] == name and all(r["attributes"].get(k) == v for k, v in attrs.items())
    ]
    assert found or missing_ok, f"no {name} {attrs}; have: {sorted({r['name'] for r in rows})}"
    return sum(r["value"] for r in found)


def test_selftel_file_takes_the_telemetry(incident: Path, tmp_path: Path) -> None:
    target = tmp_path / "selftel.jsonl"
    result = run_cli(
        ["analyze", str(incident), "--format", "json", "--selftel", "stdout", "--selftel-file", str(target)]
    )
    json.loads(result.stdout)
    assert telemetry_lines(result.stderr) == []
    documents = telemetry_lines(target.read_text(encoding="utf-8"))
    assert len(documents) == 1
    assert _sum(flatten(documents), "tracecore.exporter.calls", {ID: "json"}) == 1


def test_result_to_file_sends_telemetry_to_stdout(incident: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = run_cli(["analyze", str(incident), "--format", "json", "-o", str(out), "--selftel", "stdout"])
    json.loads(out.read_text(encoding="utf-8"))
    documents = telemetry_lines(result.stdout)
    assert len(documents) == 1, result.stdout
    assert telemetry_lines(result.stderr) == []


def test_markdown_on_stdout_never_gets_telemetry(incident: Path) -> None:
    plain = run_cli(["analyze", str(incident), "--format", "markdown"])
    result = run_cli(["analyze", str(incident), "--format", "markdown", "--selftel", "stdout"])
    assert result.stdout == plain.stdout
    assert result.exit_code == plain.exit_code
    assert _sum(flatten(telemetry_lines(result.stderr)), "tracecore.exporter.calls", {ID: "markdown"}) == 1


# --- every emitted name and attribute is documented ------------------------------------------


def documented(doc: str) -> set[str]:
    """Every backticked token of a docs page."""
    return set(re.findall(r"`([^`\s]+)`", (DOCS / doc).read_text(encoding="utf-8")))


def _probe(tables: Tables) -> list[Verdict]:
    """Test detector with every culprit field set.

    What it detects: nothing real. Signals: none. Rule: always. Known false positives: all.
    """
    return [
        Verdict(
            pattern="selftel-probe",
            title="Probe",
            severity=Severity.CRITICAL,
            key="k",
            confidence=Confidence.FULL,
            culprit=Culprit(
                ranks=[1],
                hosts=["node-0"],
                gpus=[GpuRef(host="node-0", index=0, pci_bus_id="0000:18:00.0", uuid="GPU-1")],
                links=["mlx5_0"],
                pids=[7],
            ),
            window_start_ns=1,
            window_end_ns=2,
            details={"pod": "p", "namespace": "n"},
        )
    ]


PROBE = Detector(id="selftel-probe", summary="probe", sources=(), tables=(), detect=_probe, scope="tests.cli")


def test_every_emitted_name_and_attribute_is_documented(
    incident: Path, json_runs: tuple[Result, Result]
) -> None:
    # a full run through the CLI (metrics as the user sees them) ...
    result = json_runs[1]
    rows = flatten(telemetry_lines(result.stderr))
    names = {r["name"] for r in rows}
    keys = {k for r in rows for k in r["attributes"]}
    # ... plus a run with a verdict carrying every culprit field, exported as log records, and a
    # component whose registration fails (init_errors)
    tel = in_memory_selftel(wrap=failing_on("tracecore.exporter."))
    report = analyze_ingested(
        ingest(incident, jobs=1, selftel=tel.selftel), selftel=tel.selftel, detectors=[*DETECTORS, PROBE]
    )
    tel.selftel.export_verdicts(report)
    for point in tel.points():
        names.add(point.name)
        keys.update(point.attributes)
    logs = tel.logs()
    assert logs
    log_keys = {k for log in logs for k in (log.log_record.attributes or {})}
    assert "tracecore.selftel.init_errors" in names
    assert {"host.name", "hw.id", "k8s.pod.name", "process.pid"} <= log_keys

    instruments = documented("selftel.md")
    attributes = documented("attributes.md")
    assert sorted(names - instruments) == [], "instrument names missing from docs/selftel.md"
    assert sorted((keys | log_keys) - attributes) == [], "attribute keys missing from docs/attributes.md"
    # the catalogue in code is the catalogue in the docs
    assert {spec.name for spec in st.INSTRUMENTS} <= instruments
