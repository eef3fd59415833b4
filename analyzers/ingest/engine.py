"""The ingest engine: discover files, parse them (in parallel), run cross-file steps, build the ledger.

Files are independent, so they are parsed in worker processes; each worker returns Arrow tables,
which the parent concatenates without copying. Garbage collection is paused while parsing because
parsers build many short-lived containers and no cycles.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from ..errors import IncidentInputError
from ..report import IngestSummary, Problem
from ..selftel import NOOP, SelfTel
from ..tables import SchemaMismatchError, Tables, concat, conform
from .base import FileContext, ParseOutput
from .discovery import DiscoveredFile, discover, read_all
from .manifest import Manifest, load_manifest
from .registry import PARSERS, parser_for

# Below this many bytes of input, worker start-up costs more than it saves.
PARALLEL_MIN_BYTES = 8 << 20
PARALLEL_MIN_FILES = 8
MAX_FILE_BYTES = 2 << 30

ProgressCallback = Callable[[int, int, str], None]


@dataclass
class FileResult:
    """What one worker sends back for one file."""

    rel: str
    source: str
    output: ParseOutput
    size: int
    seconds: float
    failure: str | None = None


@dataclass
class IngestResult:
    """Tables of one incident plus the accounting of what was read."""

    root: Path
    tables: Tables
    summary: IngestSummary
    manifest: Manifest
    files: list[DiscoveredFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector, restoring its previous state afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def parse_one(job: DiscoveredFile, manifest: Manifest) -> FileResult:
    """Read and parse one file; never raises for bad content (failures come back as data)."""
    started = time.perf_counter()
    parser = parser_for(job.source)
    try:
        data = read_all(job.path, job.compression, MAX_FILE_BYTES)
    except (OSError, EOFError, ValueError) as exc:
        output = ParseOutput(problems=[Problem(job.rel, None, f"cannot read: {_oneline(exc)}")])
        return FileResult(job.rel, job.source, output, job.size, time.perf_counter() - started, "unreadable")
    ctx = FileContext(job.path, job.rel, data, job.host_hint, manifest, job.mtime_ns)
    failure: str | None = None
    try:
        with gc_paused():
            output = parser.parse(ctx)
        output.tables = {name: conform(name, table) for name, table in output.tables.items()}
    except SchemaMismatchError as exc:
        output = ParseOutput(
            problems=[Problem(job.rel, None, f"parser output did not fit the schema: {exc}")]
        )
        failure = "schema"
    except Exception as exc:  # a parser bug must not lose the other files; it is reported per file
        output = ParseOutput(
            problems=[Problem(job.rel, None, f"parser error ({type(exc).__name__}): {_oneline(exc)}")]
        )
        failure = "parser-error"
    return FileResult(job.rel, job.source, output, len(data), time.perf_counter() - started, failure)


def _parse_batch(batch: list[DiscoveredFile], manifest: Manifest) -> list[FileResult]:
    return [parse_one(job, manifest) for job in batch]


def _oneline(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def default_jobs() -> int:
    """Worker processes to use: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def parse_files(
    files: Sequence[DiscoveredFile],
    manifest: Manifest,
    jobs: int | None = None,
    progress: ProgressCallback | None = None,
) -> list[FileResult]:
    """Parse ``files`` serially or across worker processes; results keep the input order."""
    workers = default_jobs() if jobs is None else max(1, jobs)
    total_bytes = sum(f.size for f in files)
    parallel = (
        workers > 1
        and len(files) >= 2
        and (total_bytes >= PARALLEL_MIN_BYTES or len(files) >= PARALLEL_MIN_FILES)
    )
    results: list[FileResult] = []
    if not parallel:
        for index, job in enumerate(files):
            results.append(parse_one(job, manifest))
            if progress:
                progress(index + 1, len(files), job.rel)
        return results
    batches = _balanced_batches(files, workers * 4)
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tracecore.analyzers.ingest.registry"])
    done = 0
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        for batch_results in pool.map(_parse_batch, batches, [manifest] * len(batches)):
            results.extend(batch_results)
            done += len(batch_results)
            if progress and batch_results:
                progress(done, len(files), batch_results[-1].rel)
    order = {f.rel: i for i, f in enumerate(files)}
    results.sort(key=lambda r: order[r.rel])
    return results


def _balanced_batches(files: Sequence[DiscoveredFile], count: int) -> list[list[DiscoveredFile]]:
    """Split files into ``count`` batches of similar total size (largest first, greedy)."""
    count = max(1, min(count, len(files)))
    batches: list[list[DiscoveredFile]] = [[] for _ in range(count)]
    loads = [0] * count
    for job in sorted(files, key=lambda f: f.size, reverse=True):
        target = loads.index(min(loads))
        batches[target].append(job)
        loads[target] += job.size
    return [b for b in batches if b]


def ingest(
    root: Path,
    *,
    jobs: int | None = None,
    selftel: SelfTel = NOOP,
    progress: ProgressCallback | None = None,
) -> IngestResult:
    """Read an incident directory into tables. Raises :class:`IncidentInputError` when nothing is readable."""
    if not root.exists():
        raise IncidentInputError(f"{root}: no such file or directory")
    if not root.is_dir():
        raise IncidentInputError(f"{root}: not a directory or a supported incident bundle")
    manifest = load_manifest(root)
    parsers = list(PARSERS)
    discovery = discover(root, parsers, manifest)
    summary = IngestSummary(skipped_files=list(discovery.skipped))
    handles = {p.source: selftel.source(p.telemetry) for p in parsers}
    for discovered in discovery.files:
        summary.ledger(discovered.source).files_seen += 1
    if not discovery.files:
        raise IncidentInputError(_nothing_ingestible_message(root, summary))
    results = parse_files(discovery.files, manifest, jobs, progress)
    per_table: dict[str, dict[str, list[pa.Table]]] = {}
    for result in results:
        ledger = summary.ledger(result.source)
        handle = handles[result.source]
        output = result.output
        if result.failure:
            ledger.files_failed += 1
            handle.file_read("failed")
        else:
            ledger.files_parsed += 1
            handle.file_read("parsed")
        ledger.records += output.records
        ledger.add_rejections(output.rejected)
        ledger.bytes_read += result.size
        handle.records(output.records, output.rejected)
        handle.bytes_read(result.size)
        handle.parse_latency(result.seconds)
        summary.problems.extend(output.problems)
        for name, table in output.tables.items():
            per_table.setdefault(result.source, {}).setdefault(name, []).append(table)
    tables: dict[str, pa.Table] = {}
    for parser in parsers:
        by_name = per_table.get(parser.source, {})
        source_tables = {name: concat(name, by_name.get(name, [])) for name in parser.tables}
        if parser.source in per_table:
            finalized = parser.finalize(source_tables, manifest)
            summary.problems.extend(finalized.problems)
            source_tables = {name: conform(name, table) for name, table in finalized.tables.items()}
        for name, table in source_tables.items():
            tables[name] = concat(name, [tables[name], table]) if name in tables else table
    return IngestResult(root, Tables(tables), summary, manifest, discovery.files)


def _nothing_ingestible_message(root: Path, summary: IngestSummary) -> str:
    if not summary.skipped_files:
        return f"{root}: no files found (empty incident directory)"
    count = len(summary.skipped_files)
    return f"{root}: nothing ingestible: {count} file(s), none in a recognised format (see `tracecore ingest` for the list)"
