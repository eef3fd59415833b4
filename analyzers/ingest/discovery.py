"""Incident discovery: walk the incident root, identify each file's format by content, attribute hosts.

The rules are the input contract documented in docs/incident-dir.md.
"""

from __future__ import annotations

import errno
import gzip
import os
import re
import stat
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..report import SkippedFile
from .base import SNIFF_BYTES, STRONG_CLAIM, SourceParser
from .manifest import MANIFEST_NAME, Manifest

# Folder names that describe content rather than a host; never taken as a host name.
GENERIC_FOLDERS = frozenset(
    {
        "fr",
        "flight_recorder",
        "flight-recorder",
        "flightrecorder",
        "nccl",
        "nccl_trace",
        "fr_trace",
        "traces",
        "trace",
        "dumps",
        "dump",
        "pickle",
        "pickle_pgfixed",
        "json",
        "pyspy",
        "py-spy",
        "py_spy",
        "stacks",
        "stack",
        "record",
        "logs",
        "log",
        "applogs",
        "app",
        "app_logs",
        "job",
        "joblogs",
        "stdout",
        "stderr",
        "dcgm",
        "metrics",
        "prometheus",
        "prom",
        "kernel",
        "dmesg",
        "journal",
        "journald",
        "syslog",
        "kmsg",
        "var",
        "tmp",
        "data",
        "raw",
        "incident",
        "incidents",
        "input",
        "inputs",
        "hosts",
        "nodes",
        "ranks",
        "workers",
        "runlogs",
        "output",
        "captures",
        "bundle",
        "files",
        "misc",
        "other",
        "collected",
        "cache",
        "torch",
        ".cache",
    }
)
_RANKISH = re.compile(r"(?:rank|r|worker|proc|process|local_rank)[_-]?\d+", re.IGNORECASE)

COMPRESSED_SUFFIXES = (".gz", ".zst")


@dataclass(frozen=True)
class DiscoveredFile:
    """A file claimed by a parser, ready to be parsed."""

    path: Path
    rel: str
    source: str
    host_hint: str | None
    compression: str | None
    size: int
    mtime_ns: int


@dataclass
class Discovery:
    """Result of walking an incident root."""

    files: list[DiscoveredFile]
    skipped: list[SkippedFile]


def host_from_path(rel: str, manifest: Manifest) -> str | None:
    """Host suggested by a file's path relative to the incident root.

    First the first path component that names a manifest host, else the nearest folder
    name that is not generic (fr, pyspy, logs, …) and not rank-like (rank3, worker_0).
    """
    parts = Path(rel).parts[:-1]
    known = manifest.host_names
    for part in parts:
        if part in known:
            return part
    for part in reversed(parts):
        if part.lower() in GENERIC_FOLDERS or _RANKISH.fullmatch(part):
            continue
        return part
    return None


def open_regular(path: Path) -> BinaryIO:
    """Open ``path`` for reading without ever blocking, and only if it is a regular file.

    ``O_NONBLOCK`` keeps a FIFO (or a file swapped for one after the walk looked at it) from
    hanging the command; the ``fstat`` on the open descriptor closes that race.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_head(path: Path, compression: str | None, limit: int = SNIFF_BYTES) -> bytes:
    """First ``limit`` bytes of the (decompressed) content."""
    with open_regular(path) as handle:
        if compression == "gz":
            try:
                return gzip.GzipFile(fileobj=handle).read(limit)
            except (OSError, EOFError, zlib.error):
                return b""
        if compression == "zst":
            return _zstd_head(handle.read(1 << 20), limit)
        return handle.read(limit)


def _zstd_head(raw: bytes, limit: int) -> bytes:
    try:
        import zstandard
    except ImportError:
        return b""
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(raw)
        return reader.read(limit)
    except zstandard.ZstdError:
        return b""


def read_all(path: Path, compression: str | None, max_bytes: int | None = None) -> bytes:
    """Whole (decompressed) content.

    ``max_bytes`` bounds the decompressed size: at most ``max_bytes + 1`` bytes are returned, so a
    caller sees that the limit was crossed (a decompression bomb) without ever holding more.
    A truncated compressed stream returns what could be decompressed before the damage.
    """
    want = -1 if max_bytes is None else max_bytes + 1
    with open_regular(path) as handle:
        if compression == "gz":
            return _read_partial(
                gzip.GzipFile(fileobj=handle), want, (EOFError, zlib.error, gzip.BadGzipFile)
            )
        if compression == "zst":
            import zstandard

            with zstandard.ZstdDecompressor().stream_reader(handle) as reader:
                return _read_partial(reader, want, (zstandard.ZstdError,))
        return _read_plain(handle, want)


def _read_plain(handle: BinaryIO, want: int) -> bytes:
    """Up to ``want`` bytes (all when negative) of an uncompressed file.

    Sized by the file's current length first: ``read(want)`` would allocate ``want`` bytes (the
    2 GiB bound) for every file, which costs more than reading a small one. A file that grew
    since is read on up to ``want``.
    """
    size = os.fstat(handle.fileno()).st_size
    if want < 0 or size + 1 < want:
        data = handle.read(size + 1)
        if len(data) <= size:
            return data
        rest = handle.read() if want < 0 else handle.read(want - len(data))
        return data + rest
    return handle.read(want)


class TruncatedStream(bytes):
    """Decompressed bytes of a damaged stream; ``error`` says what stopped decompression."""

    error: str = ""


def _read_partial(reader: BinaryIO | Any, want: int, errors: tuple[type[BaseException], ...]) -> bytes:
    """Read in chunks so a damaged stream still gives everything decompressed before the damage."""
    chunks: list[bytes] = []
    total = 0
    while want < 0 or total < want:
        size = (1 << 20) if want < 0 else min(1 << 20, want - total)
        try:
            chunk = reader.read(size)
        except errors as exc:
            data = TruncatedStream(b"".join(chunks))
            data.error = " ".join(str(exc).split()) or type(exc).__name__
            return data
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def compression_of(name: str) -> str | None:
    """``gz`` or ``zst`` for compressed single files, else ``None``."""
    lower = name.lower()
    if lower.endswith(".gz") and not lower.endswith(".tar.gz"):
        return "gz"
    if lower.endswith(".zst") and not lower.endswith(".tar.zst"):
        return "zst"
    return None


def discover(root: Path, parsers: Sequence[SourceParser], manifest: Manifest) -> Discovery:
    """Walk ``root`` and assign each regular file to the parser that claims it most strongly."""
    files: list[DiscoveredFile] = []
    skipped: list[SkippedFile] = []
    root_resolved = root.resolve()

    def walk_error(exc: OSError) -> None:
        # A folder that cannot be listed is reported, not silently dropped.
        where = _rel(Path(exc.filename), root) if exc.filename else "."
        skipped.append(SkippedFile(where + "/", f"folder not readable: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=walk_error):
        dirnames.sort()
        base = Path(dirpath)
        for dirname in list(dirnames):
            full = base / dirname
            if full.is_symlink():
                dirnames.remove(dirname)
                skipped.append(SkippedFile(_rel(full, root), "symbolic link to a directory (not followed)"))
        for name in sorted(filenames):
            full = base / name
            rel = _rel(full, root)
            if rel == MANIFEST_NAME:
                continue
            reason = _unreadable_reason(full, root_resolved)
            if reason:
                skipped.append(SkippedFile(rel, reason))
                continue
            try:
                info = full.stat()
            except OSError as exc:
                skipped.append(SkippedFile(rel, f"cannot stat: {exc.strerror or exc}"))
                continue
            if info.st_size == 0:
                skipped.append(SkippedFile(rel, "empty file"))
                continue
            compression = compression_of(name)
            if compression == "zst" and not _has_zstandard():
                skipped.append(SkippedFile(rel, "zstd-compressed; install the 'zstd' extra to read it"))
                continue
            try:
                head = read_head(full, compression)
            except OSError as exc:
                skipped.append(SkippedFile(rel, f"cannot read: {exc.strerror or exc}"))
                continue
            if not head:
                skipped.append(SkippedFile(rel, "empty after decompression or corrupt compressed stream"))
                continue
            inner_name = name[: -len("." + compression)] if compression else name
            best, best_score = None, 0
            for parser in parsers:
                score = parser.sniff(head, inner_name)
                if score > best_score:
                    best, best_score = parser, score
                if best_score >= STRONG_CLAIM:
                    break  # nothing scores higher and ties go to the first: the rest cannot win
            if best is None:
                skipped.append(SkippedFile(rel, "format not recognised by any parser"))
                continue
            files.append(
                DiscoveredFile(
                    path=full,
                    rel=rel,
                    source=best.source,
                    host_hint=host_from_path(rel, manifest),
                    compression=compression,
                    size=info.st_size,
                    mtime_ns=info.st_mtime_ns,
                )
            )
    return Discovery(files, skipped)


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _unreadable_reason(path: Path, root_resolved: Path) -> str | None:
    """Why a path cannot be read as a regular file inside the incident, or ``None``."""
    try:
        link_info = path.lstat()
    except FileNotFoundError:
        return "vanished during the walk"
    except OSError as exc:
        return f"cannot stat: {exc.strerror or exc}"
    if stat.S_ISLNK(link_info.st_mode):
        try:
            target = path.resolve(strict=True)
        except RuntimeError:
            return "symbolic link loop"
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "symbolic link loop"
            if exc.errno == errno.ENOENT:
                return "dangling symbolic link"
            return f"unresolvable symbolic link: {exc.strerror or exc}"

        if not target.is_relative_to(root_resolved):
            return "symbolic link points outside the incident"
        try:
            mode = target.stat().st_mode
        except OSError as exc:
            return f"cannot stat link target: {exc.strerror or exc}"
    else:
        mode = link_info.st_mode
    if stat.S_ISFIFO(mode):
        return "named pipe (FIFO), not read"
    if stat.S_ISSOCK(mode):
        return "socket, not read"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device file, not read"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "permission denied"
    return None


def _has_zstandard() -> bool:
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return False
    return True
