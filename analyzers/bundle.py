"""Incident bundles: directories as they are, archives extracted safely to a private temporary folder.

Supported archives: ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz``, ``.tar.zst``/``.tzst``
(when ``zstandard`` is installed) and ``.zip``. An archive is unpacked into a fresh temporary
directory (mode 0700) that is removed when the ``with`` block ends, whatever happens.

Archives come from broken and possibly compromised machines, so extraction trusts nothing in them:

- member names that escape the bundle (``../``, absolute paths, drive letters) are not extracted;
- symbolic and hard links are never created (a link inside the bundle is redundant: its target is
  read directly; a link pointing outside is refused);
- device files, FIFOs and sockets are never created;
- a name seen twice keeps the first entry (no silent overwrite);
- files are written 0600 with ``O_EXCL | O_NOFOLLOW``; modes, owners and xattrs from the archive
  are ignored;
- the total uncompressed size and the number of entries are bounded; crossing either limit
  refuses the whole bundle with a one-line :class:`IncidentInputError` (exit code 3) before the
  disk fills. Sizes are counted on the bytes actually decompressed, not the sizes the headers
  claim (which a crafted archive can lie about).

Every entry that is not extracted is returned as a :class:`SkippedFile` with its reason, so the
ingest ledger accounts for it. See docs/bundles.md.
"""

from __future__ import annotations

import errno
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from .errors import IncidentInputError
from .report import SkippedFile

# Defaults, documented in docs/bundles.md; overridable with --max-bundle-bytes / --max-bundle-files.
DEFAULT_MAX_BUNDLE_BYTES = 8 << 30  # 8 GiB uncompressed
DEFAULT_MAX_BUNDLE_FILES = 100_000  # archive entries (files, folders, links, specials)
DEFAULT_MAX_FILE_BYTES = 2 << 30  # one decompressed file (also bounded by max_bytes)

_CHUNK = 1 << 20
# What a damaged archive can raise while being read (OSError with an errno is the disk instead).
_ARCHIVE_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError,
    zipfile.BadZipFile,
    EOFError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    zlib.error,
    lzma.LZMAError,
    OSError,
)
try:
    import zstandard as _zstandard

    _ARCHIVE_ERRORS += (_zstandard.ZstdError,)
except ImportError:  # pragma: no cover - optional extra
    pass
# Errors caused by one entry's name rather than by the disk.
_ENTRY_ERRNOS = frozenset(
    {errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EINVAL, errno.EILSEQ, errno.ELOOP}
)
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class BundleLimits:
    """Bounds on what an archive may unpack to."""

    max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES
    max_files: int = DEFAULT_MAX_BUNDLE_FILES

    @property
    def file_limit(self) -> int:
        """Bound on one file's decompressed size (a single ``.gz``/``.zst`` inside a directory)."""
        return min(self.max_bytes, DEFAULT_MAX_FILE_BYTES)


@dataclass
class OpenedIncident:
    """The directory to ingest plus the archive entries that were not extracted (with reasons)."""

    root: Path
    skipped: list[SkippedFile] = field(default_factory=list)
    bundle: Path | None = None


class _Refused(Exception):
    """Internal: a limit was crossed; turned into IncidentInputError by the caller."""


def printable(text: str) -> str:
    """``text`` with control and bidi characters shown as ``\\xNN`` (names from archives are untrusted)."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def bundle_kind(path: Path) -> str | None:
    """``tar``, ``tar.zst`` or ``zip`` by name, then by magic bytes; ``None`` if not an archive."""
    name = path.name.lower()
    if name.endswith((".tar.zst", ".tzst", ".tar.zstd")):
        return "tar.zst"
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")):
        return "tar"
    try:
        with open(path, "rb", opener=_nonblocking_opener) as handle:
            _require_regular(handle.fileno(), path)
            head = handle.read(512)
    except OSError:
        return None
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "tar.zst"
    if head[257:262] == b"ustar" or head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ")):
        return "tar"
    return None


@contextmanager
def open_bundle(path: Path, limits: BundleLimits | None = None) -> Iterator[OpenedIncident]:
    """Yield the incident at ``path`` (directory or archive) with the list of entries not extracted.

    Raises :class:`IncidentInputError` (exit 3) for a missing path, an unsupported file, an
    unreadable archive, or one that crosses ``limits``.
    """
    limits = limits or BundleLimits()
    if not path.exists() and not path.is_symlink():
        raise IncidentInputError(f"{printable(str(path))}: no such file or directory")
    if path.is_dir():
        yield OpenedIncident(path)
        return
    kind = bundle_kind(path)
    label = printable(path.name)
    if kind is None:
        raise IncidentInputError(f"{printable(str(path))}: not a directory or a supported incident bundle")
    if kind == "tar.zst" and not _has_zstandard():
        raise IncidentInputError(
            f"{label}: zstd-compressed bundle; install the 'zstd' extra (zstandard) or unpack it first"
        )
    workdir = Path(tempfile.mkdtemp(prefix="tracecore-bundle-"))
    try:
        os.chmod(workdir, 0o700)
        extractor = _Extractor(workdir / "incident", label, limits)
        os.mkdir(extractor.dest, 0o700)
        try:
            if kind == "zip":
                extractor.extract_zip(path)
            else:
                extractor.extract_tar(path, zstd=kind == "tar.zst")
        except _Refused as exc:
            raise IncidentInputError(f"{label}: bundle refused: {exc}") from None
        except OSError as exc:
            raise IncidentInputError(
                f"{label}: cannot extract bundle: {printable(exc.strerror or str(exc))}"
            ) from None
        yield OpenedIncident(_single_top_folder(extractor.dest), extractor.skipped, path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def open_incident(path: Path, limits: BundleLimits | None = None) -> Iterator[Path]:
    """Yield a directory holding the incident at ``path`` (see :func:`open_bundle`)."""
    with open_bundle(path, limits) as opened:
        yield opened.root


def _single_top_folder(dest: Path) -> Path:
    """Bundles usually hold one folder (``incident-42/...``): that folder is the incident root."""
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return dest


class _Extractor:
    """Writes archive members under ``dest`` one at a time, enforcing every rule and limit."""

    def __init__(self, dest: Path, label: str, limits: BundleLimits) -> None:
        self.dest = dest
        self.label = label
        self.limits = limits
        self.entries = 0
        self.bytes_written = 0
        self.skipped: list[SkippedFile] = []
        self.seen: set[str] = set()

    # -- shared rules -------------------------------------------------------------------------

    def count_entry(self) -> None:
        self.entries += 1
        if self.entries > self.limits.max_files:
            raise _Refused(
                f"more than {self.limits.max_files} entries (--max-bundle-files); "
                "raise the limit if the bundle is genuine"
            )

    def check_declared(self, size: int) -> None:
        """Refuse early when the sizes the headers declare already cross the limit."""
        if size > 0 and self.bytes_written + size > self.limits.max_bytes:
            self._refuse_size()

    def _refuse_size(self) -> None:
        raise _Refused(
            f"uncompressed content exceeds {self.limits.max_bytes} bytes (--max-bundle-bytes); "
            "possible decompression bomb, raise the limit if the bundle is genuine"
        )

    def skip(self, name: str, reason: str) -> None:
        self.skipped.append(SkippedFile(printable(name) or "(unnamed entry)", reason))

    def safe_name(self, raw: str) -> str | None:
        """The normalised relative name, or ``None`` (after recording why) when it is unsafe."""
        name = raw.replace("\\", "/")
        if "\x00" in name:
            self.skip(raw, "entry name contains a NUL byte, not extracted")
            return None
        if name.startswith("/") or _DRIVE.match(name):
            self.skip(raw, "absolute path in bundle, not extracted")
            return None
        parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
        if any(p == ".." for p in parts):
            self.skip(raw, "path escapes the bundle (../), not extracted")
            return None
        if not parts:
            return None
        return "/".join(parts)

    def _first_time(self, name: str, raw: str) -> bool:
        if name in self.seen:
            self.skip(raw, "entry name appears twice in the bundle; the first is kept")
            return False
        self.seen.add(name)
        return True

    def make_dir(self, name: str) -> None:
        target = self.dest / name
        try:
            target.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            if exc.errno not in _ENTRY_ERRNOS:
                raise
            self.skip(name, f"cannot create folder: {printable(exc.strerror or str(exc))}")

    def link_reason(self, name: str, target: str, hard: bool) -> str:
        """Why a link entry is skipped: outside the bundle, or redundant inside it."""
        kind = "hard link" if hard else "symbolic link"
        link_target = target.replace("\\", "/")
        if link_target.startswith("/") or _DRIVE.match(link_target):
            return f"{kind} to an absolute path, not extracted"
        base = PurePosixPath() if hard else PurePosixPath(name).parent
        depth = 0
        for part in (base / link_target).parts:
            if part == "..":
                depth -= 1
                if depth < 0:
                    return f"{kind} points outside the bundle, not extracted"
            elif part not in ("", "."):
                depth += 1
        return f"{kind} to {printable(link_target)} (not created; the target is read directly)"

    def write_file(self, name: str, source: IO[bytes], mtime: float | None) -> None:
        """Stream ``source`` to ``dest/name``, counting real decompressed bytes against the limit."""
        target = self.dest / name
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            if not target.parent.is_dir():
                target.parent.mkdir(mode=0o700, parents=True)
            fd = os.open(target, flags, 0o600)
        except FileExistsError:
            if target.parent.is_dir():
                self.skip(name, "entry name appears twice in the bundle; the first is kept")
            else:
                self.skip(name, "cannot create file: Not a directory")
            return
        except OSError as exc:
            # A name the file system cannot hold (too long, a file used as a folder): this entry
            # only. Disk full or read-only stays fatal (raised).
            if exc.errno not in _ENTRY_ERRNOS:
                raise
            self.skip(name, f"cannot create file: {printable(exc.strerror or str(exc))}")
            return
        with os.fdopen(fd, "wb") as out:
            while True:
                chunk = source.read(_CHUNK)
                if not chunk:
                    break
                self.bytes_written += len(chunk)
                if self.bytes_written > self.limits.max_bytes:
                    self._refuse_size()
                out.write(chunk)
        if mtime is not None and 0 < mtime < 2**33:
            os.utime(target, (mtime, mtime))

    # -- tar ------------------------------------------------------------------------------------

    def extract_tar(self, path: Path, *, zstd: bool) -> None:
        with open(path, "rb", opener=_nonblocking_opener) as raw:
            _require_regular(raw.fileno(), path)
            if zstd:
                import zstandard

                with zstandard.ZstdDecompressor().stream_reader(raw) as reader:
                    self._tar_stream(reader, plain=True)
            else:
                self._tar_stream(raw, plain=False)

    def _tar_stream(self, fileobj: IO[bytes], *, plain: bool) -> None:
        current = ""
        archive: tarfile.TarFile | None = None
        try:
            # Streaming mode: members are read in order, nothing is seeked or listed up front.
            # ``plain``: already decompressed (zstd); otherwise gzip/bz2/xz/none is detected.
            archive = (
                tarfile.open(fileobj=fileobj, mode="r|")  # noqa: SIM115
                if plain
                else tarfile.open(fileobj=fileobj, mode="r|*")  # noqa: SIM115
            )
            while True:
                member = archive.next()
                if member is None:
                    return
                current = member.name
                self._tar_member(archive, member)
                current = ""
        except _ARCHIVE_ERRORS as exc:
            if isinstance(exc, OSError) and exc.errno is not None:
                raise  # the disk, not the archive (e.g. no space left): fatal
            if self.entries == 0 and isinstance(exc, tarfile.ReadError):
                raise _Refused(f"not a readable tar archive ({_oneline(exc)})") from None
            # Damage part-way: keep every entry extracted so far (a partial last file included,
            # its parser reports where it ends) and say where the archive stopped.
            where = f" in entry {printable(current)}" if current else ""
            self.skip(
                "(bundle)",
                f"archive truncated or corrupt after {self.entries} entries{where}: {_oneline(exc)}",
            )
        finally:
            if archive is not None:
                archive.close()

    def _tar_member(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        self.count_entry()
        raw = member.name
        name = self.safe_name(raw)
        if name is None:
            return
        if member.isdir():
            self.make_dir(name)
            return
        if not self._first_time(name, raw):
            return
        if member.issym() or member.islnk():
            self.skip(raw, self.link_reason(name, member.linkname, hard=member.islnk()))
            return
        if member.ischr() or member.isblk():
            self.skip(raw, "device file in bundle, not extracted")
            return
        if member.isfifo():
            self.skip(raw, "named pipe (FIFO) in bundle, not extracted")
            return
        if not member.isreg():
            self.skip(raw, "not a regular file, not extracted")
            return
        self.check_declared(member.size)
        source = archive.extractfile(member)
        if source is None:  # pragma: no cover - isreg() members always have data
            self.skip(raw, "no data in archive")
            return
        self.write_file(name, source, float(member.mtime))

    # -- zip ------------------------------------------------------------------------------------

    def extract_zip(self, path: Path) -> None:
        with open(path, "rb", opener=_nonblocking_opener) as raw:
            _require_regular(raw.fileno(), path)
            try:
                archive = zipfile.ZipFile(raw)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
                raise _Refused(f"not a readable zip archive ({_oneline(exc)})") from None
            with archive:
                infos = archive.infolist()
                # The central directory is read up front: refuse at once what the headers
                # already show to be too large (actual bytes are counted again while writing).
                if len(infos) > self.limits.max_files:
                    self.entries = self.limits.max_files
                    self.count_entry()
                self.check_declared(sum(max(0, info.file_size) for info in infos))
                for info in infos:
                    self._zip_member(archive, info)

    def _zip_member(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
        self.count_entry()
        raw = info.filename
        name = self.safe_name(raw)
        if name is None:
            return
        mode = (info.external_attr >> 16) & 0xFFFF
        if info.is_dir() or stat.S_ISDIR(mode):
            self.make_dir(name)
            return
        if not self._first_time(name, raw):
            return
        if stat.S_ISLNK(mode):
            try:
                with archive.open(info) as link:
                    target = link.read(4096).decode("utf-8", "replace")
            except _ARCHIVE_ERRORS:
                target = "?"
            self.skip(raw, self.link_reason(name, target, hard=False))
            return
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            self.skip(raw, "device file in bundle, not extracted")
            return
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            self.skip(raw, "named pipe or socket in bundle, not extracted")
            return
        self.check_declared(info.file_size)
        try:
            with archive.open(info) as source:
                self.write_file(name, source, _zip_mtime(info))
        except _ARCHIVE_ERRORS as exc:
            if isinstance(exc, OSError) and exc.errno is not None:
                raise  # the disk, not the archive (e.g. no space left): fatal
            # Damage, a bad CRC or an unsupported method (encryption) in this member only.
            (self.dest / name).unlink(missing_ok=True)
            self.skip(raw, f"entry unreadable: {_oneline(exc)}")


def _zip_mtime(info: zipfile.ZipInfo) -> float | None:
    import datetime as _dt

    try:
        return _dt.datetime(*info.date_time, tzinfo=_dt.UTC).timestamp()
    except ValueError:
        return None


def _nonblocking_opener(path: str, flags: int) -> int:
    """Open without blocking: a FIFO named like a bundle must not hang the command."""
    return os.open(path, flags | os.O_NONBLOCK)


def _require_regular(fd: int, path: Path) -> None:
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        raise IncidentInputError(f"{printable(str(path))}: not a regular file or directory")


def _oneline(exc: BaseException) -> str:
    return printable(" ".join(str(exc).split()) or type(exc).__name__)[:200]


def _has_zstandard() -> bool:
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return False
    return True
