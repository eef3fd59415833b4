"""Ingested table directories: one Parquet file per table plus ``tracecore-ingest.json``.

``tracecore ingest --out DIR`` writes one; ``tracecore analyze DIR`` reads it back instead of
re-parsing, so detectors can be re-run on a large incident cheaply.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from .errors import IncidentInputError
from .ingest.engine import IngestResult
from .ingest.manifest import Manifest, parse_manifest
from .ingest.registry import PARSERS
from .report import IngestSummary, Problem, SkippedFile, SourceLedger
from .tables import Tables, conform
from .tables.schemas import SCHEMAS

INDEX_NAME = "tracecore-ingest.json"
FORMAT = "tracecore-tables/1"


def is_table_dir(path: Path) -> bool:
    """True when ``path`` is a directory written by ``tracecore ingest --out``."""
    return path.is_dir() and (path / INDEX_NAME).is_file()


def write_table_dir(
    result: IngestResult, out: Path, manifest_document: dict[str, Any] | None = None
) -> list[Path]:
    """Write every table (empty ones too, so the column set is always complete) and the index.

    A table the ingest left out (a derived table it could not complete) is not written, so the
    analysis of the directory derives it again instead of reading an empty one.
    """
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    left_out = {name for parser in PARSERS for name in parser.derived_tables} - set(result.tables.names())
    for name in SCHEMAS:
        if name in left_out:
            continue
        target = out / f"{name}.parquet"
        pq.write_table(result.tables[name], target, compression="zstd")
        written.append(target)
    index = {
        "format": FORMAT,
        "incident": str(result.root),
        "ingest": result.summary.to_dict(),
        "manifest": manifest_document,
        "notes": result.notes,
        "tables": {name: result.tables[name].num_rows for name in SCHEMAS},
    }
    (out / INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    written.append(out / INDEX_NAME)
    return written


def load_table_dir(path: Path) -> IngestResult:
    """Read a table directory back into an :class:`IngestResult`."""
    try:
        index = json.loads((path / INDEX_NAME).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise IncidentInputError(f"{path / INDEX_NAME}: unreadable table index: {exc}") from exc
    if index.get("format") != FORMAT:
        raise IncidentInputError(f"{path / INDEX_NAME}: unsupported table format {index.get('format')!r}")
    tables = {}
    for name in SCHEMAS:
        file = path / f"{name}.parquet"
        if file.is_file():
            tables[name] = conform(name, pq.read_table(file))
    summary = _summary_from_dict(index.get("ingest", {}))
    manifest = parse_manifest(index["manifest"]) if index.get("manifest") else Manifest()
    return IngestResult(
        Path(index.get("incident", str(path))),
        Tables(tables),
        summary,
        manifest,
        notes=list(index.get("notes", [])),
    )


def _summary_from_dict(data: dict[str, Any]) -> IngestSummary:
    summary = IngestSummary()
    for entry in data.get("sources", []):
        ledger = SourceLedger(
            source=entry["source"],
            files_seen=entry.get("files_seen", 0),
            files_parsed=entry.get("files", 0),
            files_failed=entry.get("files_failed", 0),
            records=entry.get("records", 0),
            bytes_read=entry.get("bytes", 0),
        )
        ledger.add_rejections(entry.get("rejected_by_reason", {}))
        summary.sources.append(ledger)
    summary.skipped_files = [SkippedFile(s["file"], s["reason"]) for s in data.get("skipped_files", [])]
    summary.problems = [Problem(p["file"], p.get("line"), p["problem"]) for p in data.get("problems", [])]
    return summary
