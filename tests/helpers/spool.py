"""Packing worker results as the ingest engine's workers do, for the spool tests."""

from __future__ import annotations

from tracecore.analyzers.ingest.engine import FileResult, _BatchSpool


def pack_run(spooler: _BatchSpool, results: list[FileResult]) -> list[FileResult]:
    """Worker side: ``results`` packed as ``_parse_batch`` packs a run of files."""
    for result in results:
        spooler.add(result)
    spooler.flush()
    spooler.close()
    return results
