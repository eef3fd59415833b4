"""``tracecore check``: analyze every incident of a fixture corpus and compare with expected.json."""

from __future__ import annotations

import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import click

from tracecore.analyzers.errors import ExitCode, IncidentInputError, TracecoreError
from tracecore.analyzers.expectations import CheckResult

from ..app import result_console
from ..options import jobs_option
from ..render.sanitize import clean_text


@click.command("check")
@click.argument("corpus", type=click.Path(path_type=str))
@click.option(
    "--junit", type=click.Path(dir_okay=False, path_type=str), default=None, help="Also write JUnit XML here."
)
@jobs_option
def check_command(corpus: str, junit: str | None, jobs: int | None) -> None:
    """Analyze each incident under CORPUS (folders with an expected.json) and report drift.

    Exits 1 when any incident's root cause, culprit or patterns differ from its expected.json.

    \b
    Example:
      tracecore check fixtures/incidents --junit check.xml
    """
    from tracecore.analyzers.expectations import (
        compare,
        describe_expected,
        describe_report,
        find_incidents,
        load_expected,
    )
    from tracecore.analyzers.pipeline import analyze

    root = Path(corpus)
    if not root.is_dir():
        raise IncidentInputError(f"{root}: not a directory")
    incidents = find_incidents(root)
    if not incidents:
        raise IncidentInputError(f"{root}: no incident with an expected.json found")
    results: list[CheckResult] = []
    for incident in incidents:
        name = incident.relative_to(root).as_posix() if incident != root else incident.name
        expected = load_expected(incident)
        started = time.perf_counter()
        try:
            report = analyze(incident, jobs=jobs)
        except TracecoreError as exc:
            results.append(
                CheckResult(
                    name, describe_expected(expected), "error", [exc.message], time.perf_counter() - started
                )
            )
            continue
        results.append(
            CheckResult(
                name,
                describe_expected(expected),
                describe_report(report),
                compare(expected, report),
                time.perf_counter() - started,
            )
        )
    from rich.table import Table
    from rich.text import Text

    console = result_console(sys.stdout)
    table = Table(title=f"tracecore check {corpus}")
    for column in ("incident", "expected", "got", "result"):
        table.add_column(column, overflow="fold")
    for result in results:
        verdict = (
            Text("pass", "green")
            if result.passed
            else Text("FAIL: " + clean_text("; ".join(result.failures)), "red")
        )
        table.add_row(Text(clean_text(result.name)), Text(result.expected), Text(result.got), verdict)
    console.print(table)
    failed = [r for r in results if not r.passed]
    console.print(Text(f"{len(results) - len(failed)} passed, {len(failed)} failed", "bold"))
    if junit:
        _write_junit(results, Path(junit), corpus)
    sys.exit(ExitCode.FINDINGS if failed else ExitCode.OK)


def _write_junit(results: list[CheckResult], path: Path, corpus: str) -> None:
    suite = ET.Element(
        "testsuite",
        name=f"tracecore check {corpus}",
        tests=str(len(results)),
        failures=str(sum(1 for r in results if not r.passed)),
        time=f"{sum(r.seconds for r in results):.3f}",
    )
    for result in results:
        case = ET.SubElement(
            suite, "testcase", classname="tracecore.check", name=result.name, time=f"{result.seconds:.3f}"
        )
        if not result.passed:
            failure = ET.SubElement(case, "failure", message="; ".join(result.failures))
            failure.text = f"expected: {result.expected}\ngot: {result.got}\n" + "\n".join(result.failures)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
