"""The ingest engine: discover files, parse them (in parallel), run cross-file steps, build the ledger.

Files are independent, so they are parsed in worker processes, each taking runs of consecutive
files. A worker joins the tables of consecutive files into large record batches (tens of
thousands of rows, not one small batch per file) and appends them to IPC streams in a private
temporary folder (one per table name per run), which the parent memory-maps and concatenates in
file order without copying; Polars then reads the few large chunks without joining them again.
Garbage collection is paused while parsing because parsers build many short-lived containers
and no cycles.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import itertools
import mmap
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
from ..tables import SchemaMismatchError, Tables, concat, conform, release_pages
from .base import FileContext, ParseOutput
from .discovery import DiscoveredFile, TruncatedStream, discover, open_regular, read_all
from .manifest import Manifest, load_manifest
from .registry import PARSERS, parser_for
from .workers import stop_server, usable_cpus, worker_context

# Below this many bytes of input, worker start-up costs more than it saves.
PARALLEL_MIN_BYTES = 8 << 20
PARALLEL_MIN_FILES = 8
MAX_FILE_BYTES = 2 << 30
# A worker writes a table's rows once it holds this many (the last ones at the end of its run):
# large enough that the parent never joins chunks, small enough to bound the worker's memory.
SPOOL_BATCH_ROWS = 131_072
# Same-size files are first told apart by a digest of this many bytes at each end.
SAMPLE_DIGEST_BYTES = 8 << 10
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
    # Tables in transit from a worker process, by name: slices of spool streams, or IPC bytes
    # (tables themselves when parsed in this process).
    # A worker joins consecutive files' tables, so one file's result can carry the rows of the
    # files before it (and the others none): concatenated in result order, the order is kept.
    packed: dict[str, list[SpoolSlice | bytes | pa.Table]] = field(default_factory=dict)
    # Derived tables that could not be made for the rows this result carries.
    underived: list[str] = field(default_factory=list)
    # The spool files its tables are mapped from (parent side).
    mapped: list[mmap.mmap] = field(default_factory=list)


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
    results: list[FileResult] = []
    spooler = _BatchSpool(spool)
    try:
        for job in batch:
            result = parse_one(job, manifest, max_file_bytes)
            spooler.add(result)
            results.append(result)
        spooler.flush()
    finally:
        spooler.close()
    return results


class _BatchSpool:
    """Worker side: the tables of a run of consecutive files, joined, as Arrow IPC stream files.

    A file's tables are held until ``SPOOL_BATCH_ROWS`` rows of a name are held; those are then
    joined into one record batch (dictionaries unified), the parser derives its tables from it
    (``SourceParser.derive``), and all are appended to their names' streams, as the packed tables
    of the file that completed it. The parent maps each stream once, with no
    copy through the pipe (which costs the parent more system time than the parse saves, for
    gigabytes of tables), and gets a few large chunks per table instead of one per file. Empty
    tables, no spool folder, or a write that fails (full disk) send the table as IPC bytes
    through the pipe instead.
    """

    def __init__(
        self, folder: str | None, batch_rows: int = SPOOL_BATCH_ROWS, in_process: bool = False
    ) -> None:
        self.folder = folder
        # Serial ingest: joined tables stay as they are, in this process.
        self.in_process = in_process
        self.batch_rows = batch_rows
        self.held: dict[str, list[pa.Table]] = {}
        self.held_rows: dict[str, int] = {}
        # The held rows of a table go with the last file of the parser that made them.
        self.last_of_source: dict[str, FileResult] = {}
        self.source_of: dict[str, str] = {}
        self.streams: dict[str, tuple[str, pa.NativeFile, pa.ipc.RecordBatchStreamWriter]] = {}
        self.broken: set[str] = set()

    def add(self, result: FileResult) -> None:
        """Take ``result``'s tables; pack into it those of a name that now hold enough rows."""
        self.last_of_source[result.source] = result
        for name, table in result.output.tables.items():
            self.source_of[name] = result.source
            if table.num_rows == 0:
                result.packed.setdefault(name, []).append(table if self.in_process else _ipc_bytes(table))
                continue
            self.held.setdefault(name, []).append(table)
            self.held_rows[name] = self.held_rows.get(name, 0) + table.num_rows
            if self.held_rows[name] >= self.batch_rows:
                self._pack(result, name)
        result.output.tables = {}

    def flush(self) -> None:
        """Pack every table still held into the run's last file of the parser that made it."""
        for name in [n for n, tables in self.held.items() if tables]:
            self._pack(self.last_of_source[self.source_of[name]], name)

    def _pack(self, result: FileResult, name: str) -> None:
        """Join the held tables of ``name``, derive the parser's tables from them, pack all."""
        held = self.held.pop(name)
        self.held_rows[name] = 0
        # One table is written as it is (a large parser output is not copied again).
        table = held[0] if len(held) == 1 else _joined(held)
        parser = parser_for(self.source_of[name])
        try:
            derived = parser.derive(name, table)
        except Exception as exc:  # a bug must not lose the parsed tables; readers derive again
            derived = {}
            result.underived.extend(parser.derived_tables)
            result.output.problems.append(
                Problem(
                    result.rel,
                    None,
                    f"internal error deriving {', '.join(parser.derived_tables) or 'tables'} from {name} "
                    f"({type(exc).__name__}: {_oneline(exc)}); left to the analysis",
                )
            )
        for packed_name, packed in {name: table, **derived}.items():
            if packed.num_rows:
                result.packed.setdefault(packed_name, []).append(self._write(packed_name, packed))

    def _write(self, name: str, table: pa.Table) -> SpoolSlice | bytes | pa.Table:
        if self.in_process:
            return table
        if self.folder is None or name in self.broken:
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
            # Batches written before the failure stay readable; these rows and later ones of
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


def _joined(tables: list[pa.Table]) -> pa.Table:
    """``tables`` as one chunk; as they are where their dictionaries cannot be unified."""
    together = pa.concat_tables(tables)
    try:
        return together.combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return together


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
            for name, parts in result.packed.items():
                read: list[pa.Table] = []
                for data in parts:
                    if isinstance(data, pa.Table):
                        read.append(data)
                        continue
                    if isinstance(data, bytes):
                        read.append(pa.ipc.open_stream(pa.py_buffer(data)).read_all())
                        continue
                    if data.path not in streams:
                        streams[data.path], mapping = _spooled_batches(data.path)
                        if mapping is not None:
                            result.mapped.append(mapping)
                    batches = streams[data.path][data.first : data.first + data.count]
                    if len(batches) != data.count:
                        raise OSError(f"spool stream {data.path} ends before batch {data.first + data.count}")
                    read.append(pa.Table.from_batches(batches))
                tables[name] = read[0] if len(read) == 1 else pa.concat_tables(read)
            result.output.tables = tables
            result.packed = {}
    finally:
        for path in streams:
            with contextlib.suppress(OSError):
                os.unlink(path)
    return results


def _spooled_batches(path: str) -> tuple[list[pa.RecordBatch], mmap.mmap | None]:
    """Every complete record batch of a spool stream, and its mapping (None when read instead).

    The mapping outlives the removed name. It is Python's, not Arrow's, so that the pages a
    stage has read can be handed back (``Tables.release_pages``).
    """
    mapping: mmap.mmap | None = None
    try:
        with open(path, "rb") as handle:
            mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        source = pa.BufferReader(pa.py_buffer(mapping))
    except (OSError, ValueError):
        # Out of mappings or address space, or an empty file: read it into memory instead.
        mapping = None
        with pa.OSFile(path) as stream:
            source = pa.BufferReader(stream.read_buffer())
    batches: list[pa.RecordBatch] = []
    with contextlib.suppress(pa.ArrowInvalid, OSError):  # a stream cut by a failed write
        for batch in pa.ipc.open_stream(source):
            batches.append(batch)
    return batches, mapping


def _oneline(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _oneline_text(text: str) -> str:
    return " ".join(text.split())[:200]


def default_jobs() -> int:
    """Worker processes to use: the CPUs this process may run on."""
    return max(1, usable_cpus())


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
        joiner = _BatchSpool(None, in_process=True)
        for index, job in enumerate(files):
            result = parse_one(job, manifest, max_file_bytes)
            joiner.add(result)
            results.append(result)
            if progress:
                progress(index + 1, len(files), job.rel)
        joiner.flush()
        return _unpack_batch(results)
    batches = _consecutive_runs(files, workers * 4)
    context = worker_context()
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
        stop_server()
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


def _consecutive_runs(files: Sequence[DiscoveredFile], count: int) -> list[list[DiscoveredFile]]:
    """Split files, in order, into at most ``count`` runs of consecutive files of similar total size.

    Runs of consecutive files let a worker join their tables in file order, so parallel ingest
    gives the same rows in the same order as serial ingest. A run ends once it reaches its share
    of the bytes still to assign; the pool hands runs to idle workers, so a run longer than the
    others delays the end by at most that run.
    """
    runs: list[list[DiscoveredFile]] = []
    remaining_bytes = sum(f.size for f in files)
    remaining_runs = max(1, min(count, len(files)))
    run: list[DiscoveredFile] = []
    run_bytes = 0
    for index, job in enumerate(files):
        run.append(job)
        run_bytes += job.size
        files_left = len(files) - index - 1
        if remaining_runs > 1 and (
            run_bytes * remaining_runs >= remaining_bytes or files_left < remaining_runs
        ):
            runs.append(run)
            remaining_bytes -= run_bytes
            remaining_runs -= 1
            run, run_bytes = [], 0
    if run:
        runs.append(run)
    return runs


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
    spool = [mapping for result in results for mapping in result.mapped]
    for parser in parsers:
        by_name = per_table.get(parser.source, {})
        source_tables = {name: concat(name, by_name.get(name, [])) for name in parser.tables}
        if parser.source in per_table:
            finalized = parser.finalize(source_tables, manifest, functools.partial(release_pages, spool))
            summary.problems.extend(finalized.problems)
            source_tables = {name: conform(name, table) for name, table in finalized.tables.items()}
        for name, table in source_tables.items():
            tables[name] = concat(name, [tables[name], table]) if name in tables else table
    # A derived table missing some files' rows would read as if those files had none: it is
    # left out whole, and its readers build it from the tables it derives from.
    for result in results:
        for name in result.underived:
            tables.pop(name, None)
    ingested = Tables(tables, mapped=spool)
    ingested.release_pages()  # finalize's reads are done
    return IngestResult(root, ingested, summary, manifest, discovery.files)


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
        # Same-size files are common (per-rank dumps of one job): a digest of both ends separates
        # almost all of them, and only files whose ends agree are hashed whole. Heads alone do
        # not: a large job's dumps open with the same group config, tens of KiB of rank lists.
        by_ends: dict[bytes, list[DiscoveredFile]] = {}
        for job in group:
            ends = _content_digest(job.path, SAMPLE_DIGEST_BYTES)
            if ends is not None:  # unreadable now: parse_one reports it
                by_ends.setdefault(ends, []).append(job)
        for same_ends in by_ends.values():
            if len(same_ends) < 2:
                continue
            first_by_digest: dict[bytes, str] = {}
            for job in same_ends:
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


def _content_digest(path: Path, ends: int | None = None) -> bytes | None:
    """Digest of the file's content, or of its first and last ``ends`` bytes; None if unreadable."""
    digest = hashlib.blake2b(digest_size=20)
    try:
        with open_regular(path) as handle:
            if ends is not None:
                head = handle.read(ends)
                digest.update(head)
                if len(head) == ends:
                    # In a file shorter than both ends, the rest of it after the head.
                    handle.seek(max(ends, os.fstat(handle.fileno()).st_size - ends))
                    digest.update(handle.read(ends))
                return digest.digest()
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.digest()


def _nothing_ingestible_message(root: str, summary: IngestSummary) -> str:
    if not summary.skipped_files:
        return f"{root}: no files found (empty incident directory)"
    count = len(summary.skipped_files)
    return f"{root}: nothing ingestible: {count} file(s), none in a recognised format (see `tracecore ingest` for the list)"
