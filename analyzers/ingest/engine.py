"""The ingest engine: discover files, parse them (in parallel), run cross-file steps, build the ledger.

Files are independent, so they are parsed in worker processes; each worker appends its Arrow
tables to IPC streams in a private temporary folder (one per table name per batch of files),
which the parent memory-maps, slices per file and concatenates without copying. Garbage collection is paused while parsing because parsers build many
short-lived containers and no cycles.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from ..errors import IncidentInputError
from ..report import IngestSummary, Problem, SkippedFile
from ..selftel import NOOP, SelfTel
from ..tables import SchemaMismatchError, Tables, concat, conform
from .base import FileContext, ParseOutput
from .discovery import DiscoveredFile, TruncatedStream, discover, open_regular, read_all
from .manifest import Manifest, load_manifest
from .registry import PARSERS, parser_for

# Below this many bytes of input, worker start-up costs more than it saves.
PARALLEL_MIN_BYTES = 8 << 20
PARALLEL_MIN_FILES = 8
MAX_FILE_BYTES = 2 << 30
HEAD_DIGEST_BYTES = 8 << 10
_SPOOL_NUMBERS = itertools.count()

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
    # Tables in transit from a worker process, by name: a slice of a spool stream, or IPC bytes.
    packed: dict[str, SpoolSlice | bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class SpoolSlice:
    """Record batches ``[first, first + count)`` of the spool stream file at ``path``."""

    path: str
    first: int
    count: int


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


def parse_one(job: DiscoveredFile, manifest: Manifest, max_file_bytes: int = MAX_FILE_BYTES) -> FileResult:
    """Read and parse one file; never raises for bad content (failures come back as data).

    A file whose (decompressed) content exceeds ``max_file_bytes`` is not parsed: a single
    ``.gz``/``.zst`` decompression bomb is refused for that file only, with a problem saying so.
    """
    started = time.perf_counter()
    parser = parser_for(job.source)
    try:
        data = read_all(job.path, job.compression, max_file_bytes)
    except (OSError, EOFError, ValueError) as exc:
        output = ParseOutput(problems=[Problem(job.rel, None, f"cannot read: {_oneline(exc)}")])
        return FileResult(job.rel, job.source, output, job.size, time.perf_counter() - started, "unreadable")
    if len(data) > max_file_bytes:
        what = "decompressed content" if job.compression else "file"
        output = ParseOutput(
            problems=[
                Problem(
                    job.rel,
                    None,
                    f"{what} larger than {max_file_bytes} bytes, not read (possible decompression bomb; "
                    "raise --max-bundle-bytes if genuine)",
                )
            ]
        )
        return FileResult(job.rel, job.source, output, job.size, time.perf_counter() - started, "too-large")
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
    if isinstance(data, TruncatedStream):
        output.problems.append(
            Problem(
                job.rel,
                None,
                f"compressed stream damaged after {len(data)} decompressed bytes ({_oneline_text(data.error)}); "
                "records before the damage were read",
            )
        )
    return FileResult(job.rel, job.source, output, len(data), time.perf_counter() - started, failure)


def _parse_batch(
    batch: list[DiscoveredFile], manifest: Manifest, max_file_bytes: int, spool: str | None = None
) -> list[FileResult]:
    """Worker side: parse, then hand each table back as Arrow IPC (a spool stream, else bytes)."""
    results = []
    spooler = _BatchSpool(spool)
    try:
        for job in batch:
            # Packed as soon as parsed: a batch of thousands of dumps never holds its tables at once.
            result = parse_one(job, manifest, max_file_bytes)
            result.packed = {name: spooler.pack(name, table) for name, table in result.output.tables.items()}
            result.output.tables = {}
            results.append(result)
    finally:
        spooler.close()
    return results


class _BatchSpool:
    """Worker side: one Arrow IPC stream file per table name for a whole batch of files.

    Each file's table is appended as record batches the moment it is parsed; the parent maps
    each stream once and slices it per file, with no copy through the pipe (which costs the
    parent more system time than the parse saves, for gigabytes of tables) and a handful of
    files and mappings per batch instead of one per table. Empty tables, no spool folder, or a
    write that fails (full disk) send that table as IPC bytes through the pipe instead.
    """

    def __init__(self, folder: str | None) -> None:
        self.folder = folder
        self.streams: dict[str, tuple[str, pa.NativeFile, pa.ipc.RecordBatchStreamWriter]] = {}
        self.broken: set[str] = set()

    def pack(self, name: str, table: pa.Table) -> SpoolSlice | bytes:
        if self.folder is None or name in self.broken or table.num_rows == 0:
            return _ipc_bytes(table)
        batches = table.to_batches()
        try:
            if name not in self.streams:
                path = os.path.join(self.folder, f"{os.getpid()}-{next(_SPOOL_NUMBERS)}-{name}.arrow")
                sink = pa.OSFile(path, "wb")
                self.streams[name] = (path, sink, pa.ipc.new_stream(sink, table.schema))
            path, _, writer = self.streams[name]
            first = writer.stats.num_record_batches
            for batch in batches:
                writer.write_batch(batch)
        except (OSError, pa.ArrowInvalid):
            # Batches written before the failure stay readable; this table and later ones of
            # this name go through the pipe.
            self.broken.add(name)
            return _ipc_bytes(table)
        return SpoolSlice(path, first, len(batches))

    def close(self) -> None:
        for _, sink, writer in self.streams.values():
            with contextlib.suppress(OSError, pa.ArrowInvalid):
                writer.close()
            with contextlib.suppress(OSError):
                sink.close()
        self.streams = {}


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _unpack_batch(results: list[FileResult]) -> list[FileResult]:
    """Parent side: the tables of a worker batch's results, read back without copying buffers."""
    streams: dict[str, list[pa.RecordBatch]] = {}
    try:
        for result in results:
            tables: dict[str, pa.Table] = {}
            for name, data in result.packed.items():
                if isinstance(data, bytes):
                    tables[name] = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
                    continue
                if data.path not in streams:
                    streams[data.path] = _spooled_batches(data.path)
                batches = streams[data.path][data.first : data.first + data.count]
                if len(batches) != data.count:
                    raise OSError(f"spool stream {data.path} ends before batch {data.first + data.count}")
                tables[name] = pa.Table.from_batches(batches)
            result.output.tables = tables
            result.packed = {}
    finally:
        for path in streams:
            with contextlib.suppress(OSError):
                os.unlink(path)
    return results


def _spooled_batches(path: str) -> list[pa.RecordBatch]:
    """Every complete record batch of a spool stream (the mapping outlives the removed name)."""
    try:
        source: pa.NativeFile = pa.memory_map(path)
    except OSError:
        # Out of mappings or address space: read it into memory instead.
        with pa.OSFile(path) as handle:
            source = pa.BufferReader(handle.read_buffer())
    batches: list[pa.RecordBatch] = []
    with contextlib.suppress(pa.ArrowInvalid, OSError):  # a stream cut by a failed write
        for batch in pa.ipc.open_stream(source):
            batches.append(batch)
    return batches


def _oneline(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _oneline_text(text: str) -> str:
    return " ".join(text.split())[:200]


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
    max_file_bytes: int = MAX_FILE_BYTES,
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
            results.append(parse_one(job, manifest, max_file_bytes))
            if progress:
                progress(index + 1, len(files), job.rel)
        return results
    batches = _balanced_batches(files, workers * 4)
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tracecore.analyzers.ingest.registry"])
    done = 0
    spool = _make_spool()
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            for batch_results in pool.map(
                _parse_batch,
                batches,
                [manifest] * len(batches),
                [max_file_bytes] * len(batches),
                [spool] * len(batches),
            ):
                results.extend(_unpack_batch(batch_results))
                done += len(batch_results)
                if progress and batch_results:
                    progress(done, len(files), batch_results[-1].rel)
    finally:
        if spool is not None:
            shutil.rmtree(spool, ignore_errors=True)
    order = {f.rel: i for i, f in enumerate(files)}
    results.sort(key=lambda r: order[r.rel])
    return results


def _make_spool() -> str | None:
    """A private temporary folder for the workers' tables (None: send them through the pipe)."""
    try:
        return tempfile.mkdtemp(prefix="tracecore-spool-")
    except OSError:
        return None


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
    max_file_bytes: int = MAX_FILE_BYTES,
    extra_skipped: Sequence[SkippedFile] = (),
    label: str | None = None,
) -> IngestResult:
    """Read an incident directory into tables. Raises :class:`IncidentInputError` when nothing is readable.

    ``max_file_bytes`` bounds one file's decompressed size; ``extra_skipped`` are entries not
    extracted from a bundle (so the ledger accounts for them too). Files with identical content
    are read once: each further copy is listed as skipped and reported as a problem naming both.
    ``label`` names the incident in error messages (the bundle, not its temporary folder).
    """
    if not root.exists():
        raise IncidentInputError(f"{root}: no such file or directory")
    if not root.is_dir():
        raise IncidentInputError(f"{root}: not a directory or a supported incident bundle")
    manifest = load_manifest(root)
    parsers = list(PARSERS)
    discovery = discover(root, parsers, manifest)
    summary = IngestSummary(skipped_files=[*extra_skipped, *discovery.skipped])
    discovery.files = _drop_duplicates(discovery.files, summary)
    handles = {p.source: selftel.source(p.telemetry) for p in parsers}
    for discovered in discovery.files:
        summary.ledger(discovered.source).files_seen += 1
    if not discovery.files:
        raise IncidentInputError(_nothing_ingestible_message(label or str(root), summary))
    results = parse_files(discovery.files, manifest, jobs, progress, max_file_bytes)
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


def _drop_duplicates(files: list[DiscoveredFile], summary: IngestSummary) -> list[DiscoveredFile]:
    """Keep the first of files with byte-identical content; report every further copy.

    Only files whose on-disk size collides with another's are hashed, so the usual incident
    (all sizes distinct) costs nothing. Duplicates are never merged silently: the copy is listed
    as skipped and a problem names both files.
    """
    by_size: dict[int, list[DiscoveredFile]] = {}
    for job in files:
        if parser_for(job.source).repeats_are_observations:
            continue  # two identical py-spy dumps taken apart mean "no progress", not a copy
        by_size.setdefault(job.size, []).append(job)
    duplicate_of: dict[str, str] = {}
    for group in by_size.values():
        if len(group) < 2:
            continue
        # Same-size files are common (per-rank dumps of one job): a digest of the first 8 KiB
        # separates almost all of them, and only files whose heads agree are hashed whole.
        by_head: dict[bytes, list[DiscoveredFile]] = {}
        for job in group:
            head = _content_digest(job.path, HEAD_DIGEST_BYTES)
            if head is not None:  # unreadable now: parse_one reports it
                by_head.setdefault(head, []).append(job)
        for same_head in by_head.values():
            if len(same_head) < 2:
                continue
            first_by_digest: dict[bytes, str] = {}
            for job in same_head:
                digest = _content_digest(job.path)
                if digest is None:
                    continue
                if digest in first_by_digest:
                    duplicate_of[job.rel] = first_by_digest[digest]
                else:
                    first_by_digest[digest] = job.rel
    if not duplicate_of:
        return files
    for rel in sorted(duplicate_of):
        first = duplicate_of[rel]
        summary.skipped_files.append(SkippedFile(rel, f"same content as {first} (read once)"))
        summary.problems.append(
            Problem(rel, None, f"duplicate input: {rel} has the same content as {first}; read once")
        )
    return [job for job in files if job.rel not in duplicate_of]


def _content_digest(path: Path, limit: int | None = None) -> bytes | None:
    """Digest of the file's content (of its first ``limit`` bytes when given); None if unreadable."""
    digest = hashlib.blake2b(digest_size=20)
    remaining = limit
    try:
        with open_regular(path) as handle:
            while chunk := handle.read(1 << 20 if remaining is None else min(1 << 20, remaining)):
                digest.update(chunk)
                if remaining is not None:
                    remaining -= len(chunk)
                    if remaining <= 0:
                        break
    except OSError:
        return None
    return digest.digest()


def _nothing_ingestible_message(root: str, summary: IngestSummary) -> str:
    if not summary.skipped_files:
        return f"{root}: no files found (empty incident directory)"
    count = len(summary.skipped_files)
    return f"{root}: nothing ingestible: {count} file(s), none in a recognised format (see `tracecore ingest` for the list)"
