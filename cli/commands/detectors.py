"""``tracecore detectors``: the detector catalogue and each detector's spec."""

from __future__ import annotations

import click

from ..app import result_console


@click.group("detectors", invoke_without_command=True)
@click.pass_context
def detectors_command(ctx: click.Context) -> None:
    """List every detector: id, sources it reads, one-line summary."""
    if ctx.invoked_subcommand is not None:
        return
    import sys

    from rich.table import Table
    from rich.text import Text

    from tracecore.analyzers.detectors.registry import DETECTORS

    console = result_console(sys.stdout)
    table = Table(title=f"{len(DETECTORS)} detectors")
    table.add_column("id", no_wrap=True)
    table.add_column("sources")
    table.add_column("summary")
    for detector in DETECTORS:
        table.add_row(detector.id, ", ".join(detector.sources), Text(detector.summary))
    console.print(table)


@detectors_command.command("explain")
@click.argument("detector_id")
def explain_command(detector_id: str) -> None:
    """Print one detector's spec: what it detects, signals, rule, known false positives."""
    from tracecore.analyzers.detectors.registry import get, ids

    try:
        detector = get(detector_id)
    except KeyError:
        raise click.UsageError(f"unknown detector {detector_id!r}; known: {', '.join(ids())}") from None
    click.echo(f"{detector.id}: {detector.summary}")
    click.echo(f"sources: {', '.join(detector.sources)}; tables: {', '.join(detector.tables)}")
    click.echo("")
    click.echo(detector.spec)
