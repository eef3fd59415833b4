"""``tracecore ingest``: parse an incident into one Parquet file per table."""

from __future__ import annotations

import tomllib
from pathlib import Path

import click

from tracecore.analyzers.errors import IncidentInputError

from ..app import error_console
from ..options import bundle_limit_options, incident_argument, jobs_option


@click.command("ingest")
@incident_argument
@click.option(
    "--out",
    "-o",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=str),
    help="Directory to write <table>.parquet files and tracecore-ingest.json into.",
)
@jobs_option
@bundle_limit_options
def ingest_command(
    incident: str, out: str, jobs: int | None, max_bundle_bytes: int, max_bundle_files: int
) -> None:
    """Read an incident into Arrow tables and write them as Parquet (for DuckDB / Polars users).

    The directory written can be given to `tracecore analyze` to re-run detectors without
    re-parsing.

    \b
    Example:
      tracecore ingest ./incident-dir --out tables/
      python -c "import polars as pl; print(pl.read_parquet('tables/kernel_events.parquet'))"
    """
    from tracecore.analyzers.ingest.workers import start_early

    if Path(incident).exists():
        start_early(jobs)  # the workers' imports overlap this process's
    from tracecore.analyzers.bundle import BundleLimits, open_bundle, printable
    from tracecore.analyzers.identity import apply_manifest_and_identity
    from tracecore.analyzers.ingest.engine import ingest
    from tracecore.analyzers.ingest.manifest import MANIFEST_NAME
    from tracecore.analyzers.tablestore import write_table_dir

    path = Path(incident)
    if not path.exists():
        raise IncidentInputError(f"{path}: no such file or directory")
    limits = BundleLimits(max_bundle_bytes, max_bundle_files)
    with open_bundle(path, limits) as opened:
        root = opened.root
        result = apply_manifest_and_identity(
            ingest(
                root,
                jobs=jobs,
                max_file_bytes=limits.file_limit,
                extra_skipped=opened.skipped,
                label=printable(str(path)),
            )
        )
        manifest_path = root / MANIFEST_NAME
        document = (
            tomllib.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else None
        )
        written = write_table_dir(result, Path(out), document)
    console = error_console()
    for name in sorted(result.tables.names()):
        console.print(f"{name}: {result.tables[name].num_rows} rows", markup=False, highlight=False)
    summary = result.summary
    console.print(
        f"wrote {len(written)} files to {out} ({summary.total_records} records, {summary.total_rejected} rejected, "
        f"{len(summary.skipped_files)} files skipped, {len(summary.problems)} problems)",
        markup=False,
        highlight=False,
    )
