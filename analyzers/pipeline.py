"""One analysis end to end: ingest → identity and clock → detectors → correlation → report."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tracecore import __version__

from .bundle import BundleLimits, printable
from .correlation import correlate
from .detectors.base import Detector
from .detectors.registry import DETECTORS
from .errors import IncidentInputError
from .identity import apply_manifest_and_identity
from .ingest.engine import IngestResult, ProgressCallback, ingest
from .report import Problem, Report, Verdict
from .selftel import NOOP, SelfTel


@dataclass
class DetectorRun:
    """Verdicts of all detectors plus the failures of any that crashed."""

    verdicts: list[Verdict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def run_detectors(
    result: IngestResult,
    detectors: Sequence[Detector] = DETECTORS,
    selftel: SelfTel = NOOP,
    raise_errors: bool = False,
) -> DetectorRun:
    """Evaluate every detector on the incident's tables; a crashing detector is reported, not fatal."""
    run = DetectorRun()
    for detector in detectors:
        handle = selftel.detector(detector.telemetry)
        started = time.perf_counter()
        try:
            verdicts = detector.detect(result.tables)
        except Exception as exc:
            handle.evaluated("error", time.perf_counter() - started)
            if raise_errors:
                raise
            run.failures.append(f"detector {detector.id} failed: {type(exc).__name__}: {exc}")
            continue
        finally:
            result.tables.release_pages()  # the next detector reads other columns
        handle.evaluated("verdicts" if verdicts else "clean", time.perf_counter() - started)
        run.verdicts.extend(verdicts)
    return run


def analyze_ingested(
    result: IngestResult,
    *,
    selftel: SelfTel = NOOP,
    detectors: Sequence[Detector] = DETECTORS,
    raise_errors: bool = False,
    incident_label: str | None = None,
    enriched: bool = False,
    retain: list[object] | None = None,
) -> Report:
    """Run identity, detectors and correlation on an already ingested incident.

    ``retain`` receives the analysed tables (see :func:`analyze`).
    ``enriched`` says the tables already had the manifest, clock and identity applied (a table
    directory written by ``tracecore ingest``), so host clock offsets are not removed twice.
    """
    if retain is not None:
        retain.append(result)
    if not enriched:
        result = apply_manifest_and_identity(result)
        result.tables.release_pages()  # what the clock and identity read
        if retain is not None:
            retain.append(result)
    enriched_result = result
    run = run_detectors(enriched_result, detectors, selftel, raise_errors)
    correlation = correlate(run.verdicts, enriched_result.tables, enriched_result.manifest)
    by_id = {d.id: d for d in detectors}
    for verdict in correlation.verdicts:
        detector = by_id.get(verdict.pattern)
        if detector is not None:
            handle = selftel.detector(detector.telemetry)
            handle.verdict(
                verdict.pattern, verdict.severity.value, verdict.confidence.value, verdict.role.value
            )
    summary = enriched_result.summary
    for failure in run.failures:
        summary.problems.append(Problem("(analysis)", None, failure))
    return Report(
        tool_version=__version__,
        incident_path=incident_label if incident_label is not None else str(result.root),
        ingest=summary,
        verdicts=correlation.verdicts,
        root_cause=correlation.root_cause,
        window_start_ns=correlation.window_start_ns,
        window_end_ns=correlation.window_end_ns,
        notes=[*enriched_result.notes, *correlation.notes],
        summary=correlation.summary,
    )


def analyze(
    path: Path,
    *,
    jobs: int | None = None,
    selftel: SelfTel = NOOP,
    progress: ProgressCallback | None = None,
    raise_errors: bool = False,
    limits: BundleLimits | None = None,
    retain: list[object] | None = None,
) -> Report:
    """Analyze an incident directory, bundle archive or ingested table directory; return the report.

    ``limits`` bound what a bundle may unpack to and any single compressed file's size.
    ``retain``, when given, receives the analysed tables, for a caller that ends the process
    without freeing them.
    """
    from .bundle import open_bundle
    from .tablestore import is_table_dir, load_table_dir

    if not path.exists():
        raise IncidentInputError(f"{path}: no such file or directory")
    if is_table_dir(path):
        result = load_table_dir(path)
        return analyze_ingested(
            result,
            selftel=selftel,
            raise_errors=raise_errors,
            incident_label=str(path),
            enriched=True,
            retain=retain,
        )
    limits = limits or BundleLimits()
    with open_bundle(path, limits) as opened:
        result = ingest(
            opened.root,
            jobs=jobs,
            selftel=selftel,
            progress=progress,
            max_file_bytes=limits.file_limit,
            extra_skipped=opened.skipped,
            label=printable(str(path)),
        )
        return analyze_ingested(
            result, selftel=selftel, raise_errors=raise_errors, incident_label=str(path), retain=retain
        )
