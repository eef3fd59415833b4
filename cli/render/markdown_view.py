"""Markdown report for tickets: the same content as the terminal report, input text escaped."""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from tracecore.analyzers.report import Report, Role, Verdict
from tracecore.analyzers.selftel import ExporterWire

from .sanitize import markdown_code, markdown_text
from .summary import chain_lines, culprit_text, ledger_rows

TELEMETRY = ExporterWire(component_id="markdown", scope=__name__)


def render_markdown(report: Report, out: TextIO) -> None:
    """Write the Markdown report."""
    write = out.write
    write(f"# tracecore report: {markdown_text(report.incident_path)}\n\n")
    root = report.verdict(report.root_cause) if report.root_cause else None
    if root is not None:
        write(f"**Root cause ({root.id}, {root.pattern}, confidence {root.confidence.value}):** ")
        write(markdown_text(report.summary or root.title) + "\n\n")
    elif report.verdicts:
        write("**Root cause:** not determined; see the findings below.\n\n")
    else:
        write("**No problem found** in the ingested evidence.\n\n")
    chain = chain_lines(report)
    if chain:
        write("## Causal chain\n\n")
        for depth, line in chain:
            write("  " * depth + "- " + markdown_text(line) + "\n")
        write("\n")
    main = [v for v in report.verdicts if v.role in (Role.ROOT, Role.CONTRIBUTING, Role.SYMPTOM)]
    findings = [v for v in report.verdicts if v.role is Role.FINDING]
    for verdict in main:
        _verdict_section(verdict, write)
    if findings:
        write("## Other findings\n\n<details><summary>" + f"{len(findings)} finding(s)" + "</summary>\n\n")
        for verdict in findings:
            _verdict_section(verdict, write)
        write("</details>\n\n")
    for note in report.notes:
        write(f"Note: {markdown_text(note)}\n\n")
    write("## Ingest ledger\n\n| source | files | records | rejected |\n|---|---|---|---|\n")
    for source, files, records, rejected in ledger_rows(report):
        write(f"| {markdown_text(source)} | {files} | {records} | {markdown_text(rejected)} |\n")
    write("\n")
    if report.ingest.skipped_files:
        write(f"Skipped files: {len(report.ingest.skipped_files)}\n\n")
        for skipped in report.ingest.skipped_files[:50]:
            write(f"- `{markdown_code(skipped.file)}`: {markdown_text(skipped.reason)}\n")
        if len(report.ingest.skipped_files) > 50:
            write(f"- … {len(report.ingest.skipped_files) - 50} more (see --format json)\n")
        write("\n")
    if report.ingest.problems:
        write(f"Problems: {len(report.ingest.problems)}\n\n")
        for problem in report.ingest.problems[:50]:
            where = f"{problem.file}:{problem.line}" if problem.line is not None else problem.file
            write(f"- `{markdown_code(where)}`: {markdown_text(problem.problem)}\n")
        if len(report.ingest.problems) > 50:
            write(f"- … {len(report.ingest.problems) - 50} more (see --format json)\n")
        write("\n")


def _verdict_section(verdict: Verdict, write: Callable[[str], object]) -> None:
    write(f"### {verdict.id} · {verdict.pattern} · {verdict.severity.value} · {verdict.role.value}\n\n")
    write(markdown_text(verdict.title) + "\n\n")
    write(f"- Confidence: {verdict.confidence.value}\n")
    culprit = culprit_text(verdict)
    if culprit:
        write(f"- Culprit: {markdown_text(culprit)}\n")
    if verdict.affected.ranks or verdict.affected.hosts:
        affected = ", ".join(
            part
            for part in (
                f"ranks {verdict.affected.to_dict()['ranks']}" if verdict.affected.ranks else "",
                f"hosts {', '.join(sorted(set(verdict.affected.hosts)))}" if verdict.affected.hosts else "",
            )
            if part
        )
        write(f"- Affected: {markdown_text(affected)}\n")
    if verdict.explains:
        write(f"- Explains: {', '.join(verdict.explains)}\n")
    write("\n")
    if verdict.evidence:
        write("Evidence:\n\n")
        for item in verdict.evidence:
            where = f"{item.file}:{item.line}" if item.line is not None else item.file
            write(f"- `{markdown_code(where)}` ({item.source}): `{markdown_code(item.excerpt)}`\n")
        write("\n")
    if verdict.missing_evidence:
        write("Missing evidence:\n\n")
        for item in verdict.missing_evidence:
            write(f"- {markdown_text(item)}\n")
        write("\n")
    if verdict.actions:
        write("Actions:\n\n")
        for item in verdict.actions:
            write(f"- {markdown_text(item)}\n")
        write("\n")
