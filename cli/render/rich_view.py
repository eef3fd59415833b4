"""Terminal report with rich. Every piece of input text goes through ``Text`` (never markup)."""

from __future__ import annotations

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tracecore.analyzers.report import Report, Role, Severity, Verdict
from tracecore.analyzers.selftel import ExporterWire

from .sanitize import clean_text
from .summary import chain_lines, culprit_text, ledger_rows, time_text

TELEMETRY = ExporterWire(component_id="rich", scope=__name__)

SEVERITY_STYLE = {
    Severity.CRITICAL: "bold white on red",
    Severity.ERROR: "bold red",
    Severity.WARNING: "yellow",
    Severity.INFO: "cyan",
}


def safe(text: str, style: str = "") -> Text:
    """Input text as a literal rich ``Text``: no markup, no control sequences."""
    return Text(clean_text(text), style=style)


def render_rich(report: Report, console: Console, *, show_findings: bool = False) -> None:
    """Print the report: root cause, causal chain, verdict details, secondary findings, ledger."""
    console.print(safe(f"tracecore · {report.incident_path}", "bold"))
    root = report.verdict(report.root_cause) if report.root_cause else None
    if root is not None:
        headline = Text.assemble(
            ("Root cause: ", "bold"),
            safe(report.summary or root.title, "bold"),
            (f"  [{root.pattern}, confidence {root.confidence.value}]", "dim"),
        )
        console.print(Panel(headline, border_style="red", expand=True))
    elif report.verdicts:
        console.print(Panel(Text("Root cause not determined; findings below."), border_style="yellow"))
    else:
        console.print(
            Panel(Text("No problem found in the ingested evidence.", style="green"), border_style="green")
        )
    chain = chain_lines(report)
    if len(chain) > 1:
        console.print(Text("Causal chain", style="bold underline"))
        for depth, line in chain:
            console.print(Text("  " * depth + ("└─ " if depth else "● ")) + safe(line))
        console.print()
    main = [v for v in report.verdicts if v.role is not Role.FINDING]
    findings = [v for v in report.verdicts if v.role is Role.FINDING]
    for verdict in main:
        console.print(_verdict_panel(verdict))
    if findings:
        if show_findings:
            console.print(Text(f"Other findings ({len(findings)})", style="bold underline"))
            for verdict in findings:
                console.print(_verdict_panel(verdict))
        else:
            table = Table(
                title=f"Other findings ({len(findings)}; --explain ID for details)", show_lines=False
            )
            for column in ("id", "pattern", "severity", "title"):
                table.add_column(column)
            for verdict in findings:
                table.add_row(
                    verdict.id,
                    verdict.pattern,
                    Text(verdict.severity.value, SEVERITY_STYLE[verdict.severity]),
                    safe(verdict.title),
                )
            console.print(table)
    for note in report.notes:
        console.print(safe("note: " + note, "dim"))
    console.print(_ledger_table(report))
    skipped, problems = report.ingest.skipped_files, report.ingest.problems
    if skipped:
        console.print(_listing("Skipped files", [(s.file, s.reason) for s in skipped], ("file", "reason")))
    if problems:
        rows = [(f"{p.file}:{p.line}" if p.line is not None else p.file, p.problem) for p in problems]
        console.print(_listing("Input problems", rows, ("where", "problem")))


def render_verdict(verdict: Verdict, console: Console) -> None:
    """Print one verdict with all its evidence (``--explain``)."""
    console.print(_verdict_panel(verdict, full=True))


def _verdict_panel(verdict: Verdict, full: bool = False) -> Panel:
    body: list[Text | Table] = [safe(verdict.title, "bold")]
    meta = Text.assemble(
        (verdict.severity.value, SEVERITY_STYLE[verdict.severity]),
        f" · {verdict.role.value} · confidence {verdict.confidence.value}",
    )
    when = time_text(verdict.window_start_ns)
    if when:
        end = time_text(verdict.window_end_ns)
        meta.append(f" · {when}" + (f" → {end}" if end and end != when else ""))
    body.append(meta)
    culprit = culprit_text(verdict)
    if culprit:
        body.append(Text.assemble(("Culprit: ", "bold"), safe(culprit)))
    affected = verdict.affected.to_dict()
    if affected["ranks"] or affected["hosts"]:
        text = ", ".join(
            x
            for x in (f"ranks {affected['ranks']}" if affected["ranks"] else "", ", ".join(affected["hosts"]))
            if x
        )
        body.append(Text.assemble(("Affected: ", "bold"), safe(text)))
    if verdict.explains:
        body.append(Text.assemble(("Explains: ", "bold"), ", ".join(verdict.explains)))
    evidence = verdict.evidence if full else verdict.evidence[:8]
    if evidence:
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        table.add_column("evidence", overflow="fold", ratio=1)
        table.add_column("excerpt", overflow="fold", ratio=3)
        for item in evidence:
            where = f"{item.file}:{item.line}" if item.line is not None else item.file
            table.add_row(safe(where, "cyan"), safe(item.excerpt))
        body.append(table)
        if len(verdict.evidence) > len(evidence):
            body.append(
                Text(f"… {len(verdict.evidence) - len(evidence)} more (--explain {verdict.id})", style="dim")
            )
    if verdict.missing_evidence:
        body.append(Text("Missing evidence:", style="bold"))
        body.extend(safe("  • " + item) for item in verdict.missing_evidence)
    if verdict.actions:
        body.append(Text("Actions:", style="bold"))
        body.extend(safe("  → " + item) for item in verdict.actions)
    title = Text(f"{verdict.id} · {verdict.pattern}")
    return Panel(
        Group(*body),
        title=title,
        title_align="left",
        border_style=SEVERITY_STYLE[verdict.severity].split()[-1],
    )


LISTING_LIMIT = 20


def _listing(title: str, rows: list[tuple[str, str]], columns: tuple[str, str]) -> Table:
    """Skipped files or problems (input text, so every cell is literal), the first 20 shown."""
    table = Table(title=f"{title} ({len(rows)})", title_justify="left", show_lines=False)
    table.add_column(columns[0], overflow="fold", ratio=1)
    table.add_column(columns[1], overflow="fold", ratio=2)
    for first, second in rows[:LISTING_LIMIT]:
        table.add_row(safe(first, "cyan"), safe(second))
    if len(rows) > LISTING_LIMIT:
        table.add_row(Text(f"… {len(rows) - LISTING_LIMIT} more", style="dim"), Text("see --format json"))
    return table


def _ledger_table(report: Report) -> Table:
    table = Table(title="Ingest ledger", title_justify="left", show_lines=False)
    for column in ("source", "files", "records", "rejected"):
        table.add_column(column)
    for row in ledger_rows(report):
        table.add_row(*(safe(cell) for cell in row))
    return table
