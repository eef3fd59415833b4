"""``tracecore analyze``: ingest, detect, correlate, render."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import click

from tracecore.analyzers.errors import ExitCode, IncidentInputError
from tracecore.analyzers.report import Report, Severity

from ..app import error_console, result_console
from ..options import bundle_limit_options, debug_option, incident_argument, jobs_option

if TYPE_CHECKING:
    from tracecore.analyzers.selftel import ExporterWire, SelfTel

FORMATS = ("rich", "json", "markdown")
FAIL_ON = ("critical", "error", "warning", "info", "never")


def selftel_options(fn: Callable[..., object]) -> Callable[..., object]:
    """``--selftel``, ``--selftel-file`` and ``--export``."""
    fn = click.option(
        "--export",
        "export",
        type=click.Choice(["none", "otlp"]),
        default="none",
        show_default=True,
        help="Also send each verdict as an OpenTelemetry log record over OTLP (endpoint from OTEL_EXPORTER_OTLP_*).",
    )(fn)
    fn = click.option(
        "--selftel-file",
        type=click.Path(dir_okay=False, path_type=str),
        default=None,
        help="Write --selftel stdout telemetry to this file instead of stderr.",
    )(fn)
    return click.option(
        "--selftel",
        type=click.Choice(["none", "stdout", "otlp"]),
        default="none",
        show_default=True,
        help="tracecore's own telemetry: none, stdout (JSON lines on stderr, on stdout when -o takes the result, or in --selftel-file; never mixed with results) or otlp (OTEL_EXPORTER_OTLP_*). See docs/selftel.md.",
    )(fn)


@click.command("analyze")
@incident_argument
@click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(FORMATS),
    default="rich",
    show_default=True,
    help="Output format.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="Write the result to FILE instead of stdout.",
)
@click.option(
    "--fail-on",
    type=click.Choice(FAIL_ON),
    default="error",
    show_default=True,
    help="Exit 1 when a verdict is at or above this severity.",
)
@click.option(
    "--explain",
    "explain_id",
    metavar="VERDICT_ID",
    default=None,
    help="Print one verdict (e.g. v2) with all its evidence.",
)
@click.option("--strict", is_flag=True, help="Exit 3 when any input record was rejected.")
@click.option("--show-findings", is_flag=True, help="Expand secondary findings in the terminal report.")
@jobs_option
@bundle_limit_options
@selftel_options
@debug_option
def analyze_command(
    incident: str,
    fmt: str,
    output: str | None,
    fail_on: str,
    explain_id: str | None,
    strict: bool,
    show_findings: bool,
    jobs: int | None,
    max_bundle_bytes: int,
    max_bundle_files: int,
    selftel: str,
    selftel_file: str | None,
    export: str,
    debug: bool,
) -> None:
    """Analyze an incident directory (or bundle, or ingested table directory) and print the root cause.

    \b
    Examples:
      tracecore analyze ./incident-dir
      tracecore analyze ./incident-dir --format json > verdict.json
      tracecore analyze ./incident-dir --format markdown -o ticket.md
      tracecore analyze ./incident-dir --explain v2
    """
    from tracecore.analyzers.ingest.workers import start_early

    if Path(incident).exists():
        start_early(jobs)  # the workers' imports overlap this process's
    from tracecore.analyzers import selftel as selftel_module
    from tracecore.analyzers.bundle import BundleLimits
    from tracecore.analyzers.pipeline import analyze

    from ..app import keep_until_exit

    telemetry = selftel_module.from_cli(
        selftel,
        selftel_file=selftel_file,
        export_verdicts=export == "otlp",
        result_on_stdout=output is None,
    )
    try:
        with _progress_reporter() as progress:
            report = analyze(
                Path(incident),
                jobs=jobs,
                selftel=telemetry,
                progress=progress,
                raise_errors=debug,
                limits=BundleLimits(max_bundle_bytes, max_bundle_files),
                retain=keep_until_exit(),
            )
        if explain_id is not None and report.verdict(explain_id) is None:
            known = ", ".join(v.id for v in report.verdicts) or "none"
            raise click.UsageError(f"no verdict {explain_id!r} in this report (verdicts: {known})")
        _emit(report, fmt, output, explain_id, show_findings, telemetry)
        telemetry.export_verdicts(report)
    finally:
        telemetry.close()
    if strict and report.ingest.total_rejected:
        raise IncidentInputError(
            f"--strict: {report.ingest.total_rejected} input record(s) rejected (see the ingest ledger)"
        )
    sys.exit(exit_code_for(report, fail_on))


def exit_code_for(report: Report, fail_on: str) -> int:
    """1 when a verdict reaches ``fail_on``, else 0."""
    if fail_on == "never":
        return ExitCode.OK
    threshold = Severity(fail_on)
    return ExitCode.FINDINGS if any(v.severity.at_least(threshold) for v in report.verdicts) else ExitCode.OK


def _emit(
    report: Report,
    fmt: str,
    output: str | None,
    explain_id: str | None,
    show_findings: bool,
    telemetry: SelfTel,
) -> None:
    from ..render.json_view import TELEMETRY as JSON_WIRE
    from ..render.json_view import render_json
    from ..render.markdown_view import TELEMETRY as MARKDOWN_WIRE
    from ..render.markdown_view import render_markdown
    from ..render.rich_view import TELEMETRY as RICH_WIRE
    from ..render.rich_view import render_rich, render_verdict

    wire: ExporterWire = {"json": JSON_WIRE, "markdown": MARKDOWN_WIRE, "rich": RICH_WIRE}[fmt]
    handle = telemetry.exporter(wire)
    started = time.perf_counter()
    result = "error"
    try:
        with _output_stream(output) as out:
            if fmt == "json" and explain_id is not None:
                verdict = report.verdict(explain_id)
                assert verdict is not None
                json.dump(verdict.to_dict(), out, indent=2, sort_keys=True, ensure_ascii=False)
                out.write("\n")
            elif fmt == "json":
                render_json(report, out)
            elif fmt == "markdown":
                render_markdown(report, out)
            else:
                console = result_console(out, color=None if output is None else False)
                if explain_id is not None:
                    verdict = report.verdict(explain_id)
                    assert verdict is not None
                    render_verdict(verdict, console)
                else:
                    render_rich(report, console, show_findings=show_findings)
        result = "ok"
    finally:
        handle.called(result, time.perf_counter() - started)


@contextmanager
def _output_stream(output: str | None) -> Iterator[TextIO]:
    if output is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    with open(output, "w", encoding="utf-8") as handle:
        yield handle


@contextmanager
def _progress_reporter() -> Iterator[Callable[[int, int, str], None] | None]:
    """A rich progress bar on stderr while parsing, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("ingesting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=error_console(),
        transient=True,
    ) as progress:
        task = progress.add_task("ingest", total=None)

        def update(done: int, total: int, current: str) -> None:
            progress.update(task, completed=done, total=total)

        yield update
