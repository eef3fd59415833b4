"""Incident bundles: traversal, links, specials, bombs and damaged archives (docs/bundles.md)."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import uuid
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers.cli import run_cli
from tests.helpers.paths import HOSTILE
from tracecore.analyzers.bundle import BundleLimits, open_bundle
from tracecore.analyzers.errors import IncidentInputError
from tracecore.analyzers.ingest.discovery import DiscoveredFile
from tracecore.analyzers.ingest.engine import parse_one
from tracecore.analyzers.ingest.manifest import Manifest

ARCHIVES = HOSTILE / "archives"


def _analyze_json(target: Path, *extra: str) -> tuple[int, dict | None, str]:
    result = run_cli(["analyze", str(target), "--format", "json", "--fail-on", "never", "-j", "1", *extra])
    document = json.loads(result.stdout) if result.exit_code == 0 else None
    return result.exit_code, document, result.stderr


def _skipped(document: dict) -> dict[str, str]:
    return {s["file"]: s["reason"] for s in document["ingest"]["skipped_files"]}


def _everything_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


@pytest.mark.parametrize("writer", ["traversal_tar", "traversal_zip"])
def test_traversal_archive_extracts_nothing_outside(
    writer: str, hostile: ModuleType, tmp_path: Path, private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    escape = f"escaped-{uuid.uuid4().hex}.txt"
    suffix = ".tar.gz" if writer == "traversal_tar" else ".zip"
    bundle = tmp_path / "work" / "deep" / f"bundle{suffix}"
    bundle.parent.mkdir(parents=True)
    bundle.write_bytes(getattr(hostile, writer)(escape))
    cwd = tmp_path / "work" / "deep" / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = _everything_under(tmp_path)

    code, document, stderr = _analyze_json(bundle)

    assert code == 0, stderr
    assert document is not None
    # Nothing escaped: not next to the bundle, not above it, not in /tmp, not in the cwd.
    for place in (bundle.parent, tmp_path / "work", tmp_path, cwd, Path("/tmp"), Path("/")):
        assert not (place / escape).exists(), place
    assert _everything_under(tmp_path) == before  # temp extraction folder removed too
    skipped = _skipped(document)
    assert skipped[f"../{escape}"] == "path escapes the bundle (../), not extracted"
    assert skipped[f"/tmp/{escape}"] == "absolute path in bundle, not extracted"
    assert skipped["incident/link_out"] == "symbolic link to an absolute path, not extracted"
    if writer == "traversal_tar":
        assert skipped[f"incident/../../{escape}"] == "path escapes the bundle (../), not extracted"
        assert skipped["incident/link_up"] == "symbolic link points outside the bundle, not extracted"
        assert skipped["incident/hard_out"] == "hard link to an absolute path, not extracted"
        assert skipped["incident/hard_up"] == "hard link points outside the bundle, not extracted"
        assert skipped["incident/dev_sda"] == "device file in bundle, not extracted"
        assert skipped["incident/dev_mem"] == "device file in bundle, not extracted"
        assert skipped["incident/pipe"] == "named pipe (FIFO) in bundle, not extracted"
        assert skipped["incident/link_in"].startswith("symbolic link to logs/rank0.log (not created")
        assert (
            skipped["incident/logs/rank0.log"] == "entry name appears twice in the bundle; the first is kept"
        )
    else:
        assert skipped[f"..\\{escape}"] == "path escapes the bundle (../), not extracted"
        assert skipped[f"C:/{escape}"] == "absolute path in bundle, not extracted"
        assert skipped["incident/fifo"] == "named pipe or socket in bundle, not extracted"
    # The one benign log was read, and the ledger accounts for every entry of the archive.
    seen = sum(s["files_seen"] for s in document["ingest"]["sources"])
    assert seen == 1
    if writer == "traversal_tar":
        with tarfile.open(bundle) as archive:
            entries = len(archive.getmembers())
    else:
        with zipfile.ZipFile(bundle) as archive_zip:
            entries = len(archive_zip.infolist())
    assert seen + len(skipped) == entries


def test_committed_traversal_archives_match_generator(hostile: ModuleType) -> None:
    assert (ARCHIVES / "traversal.tar.gz").read_bytes() == hostile.traversal_tar()
    assert (ARCHIVES / "traversal.zip").read_bytes() == hostile.traversal_zip()


def test_first_entry_wins_and_is_not_overwritten(hostile: ModuleType, tmp_path: Path) -> None:
    bundle = tmp_path / "b.tar.gz"
    bundle.write_bytes(hostile.traversal_tar())
    with open_bundle(bundle) as opened:
        assert (opened.root / "logs" / "rank0.log").read_text() == hostile.BENIGN_LOG
        # Private: the extraction folder is the user's alone, files are 0600.
        assert stat.S_IMODE(opened.root.parent.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE((opened.root / "logs" / "rank0.log").stat().st_mode) == 0o600
        assert not any(p.is_symlink() for p in opened.root.rglob("*"))
        extracted_at = opened.root
    assert not extracted_at.exists()


@pytest.mark.parametrize("name", ["bomb.tar.gz", "bomb.zip", "bomb.tar.zst"])
def test_bomb_is_refused_with_one_line_and_exit_3(name: str, private_tmp: Path) -> None:
    if name.endswith(".zst"):
        pytest.importorskip("zstandard")
    result = run_cli(
        ["analyze", str(ARCHIVES / name), "--format", "json", "-j", "1", "--max-bundle-bytes", "16M"]
    )
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr == (
        f"tracecore: error: {name}: bundle refused: uncompressed content exceeds 16777216 bytes "
        "(--max-bundle-bytes); possible decompression bomb, raise the limit if the bundle is genuine\n"
    )
    assert list(private_tmp.iterdir()) == []  # partial extraction removed


def test_bomb_stops_writing_at_the_limit(private_tmp: Path) -> None:
    """The refusal happens while extracting, before more than the limit reaches the disk."""
    limits = BundleLimits(max_bytes=4 << 20, max_files=10)
    with (
        pytest.raises(IncidentInputError, match="bundle refused"),
        open_bundle(ARCHIVES / "bomb.tar.gz", limits),
    ):
        pass
    assert list(private_tmp.iterdir()) == []


def test_bomb_is_read_when_the_limit_allows(tmp_path: Path) -> None:
    limits = BundleLimits(max_bytes=128 << 20, max_files=10)
    with open_bundle(ARCHIVES / "bomb.tar.gz", limits) as opened:
        assert (opened.root / "zeros.bin").stat().st_size == 64 << 20


def test_too_many_entries_is_refused(private_tmp: Path) -> None:
    result = run_cli(
        ["analyze", str(ARCHIVES / "many_entries.tar.gz"), "-j", "1", "--max-bundle-files", "1000"]
    )
    assert result.exit_code == 3
    assert result.stderr == (
        "tracecore: error: many_entries.tar.gz: bundle refused: more than 1000 entries "
        "(--max-bundle-files); raise the limit if the bundle is genuine\n"
    )
    assert list(private_tmp.iterdir()) == []


def test_ingest_command_takes_the_same_limits(tmp_path: Path) -> None:
    result = run_cli(
        ["ingest", str(ARCHIVES / "bomb.zip"), "--out", str(tmp_path / "t"), "--max-bundle-bytes", "1M"]
    )
    assert result.exit_code == 3
    assert "bundle refused" in result.stderr
    assert not (tmp_path / "t").exists()


def test_zip_with_lying_sizes_writes_no_more_than_declared() -> None:
    code, document, stderr = _analyze_json(ARCHIVES / "lying_sizes.zip")
    assert code == 0, stderr
    assert document is not None
    assert _skipped(document) == {"zeros.bin": "entry unreadable: Bad CRC-32 for file 'zeros.bin'"}


def test_truncated_archive_keeps_what_was_extracted() -> None:
    code, document, stderr = _analyze_json(ARCHIVES / "truncated.tar.gz")
    assert code == 0, stderr
    assert document is not None
    skipped = _skipped(document)
    assert skipped["(bundle)"].startswith(
        "archive truncated or corrupt after 2 entries in entry incident/logs/rank1.log:"
    )
    assert sum(s["files_seen"] for s in document["ingest"]["sources"]) == 1


def test_garbage_named_like_a_bundle(tmp_path: Path) -> None:
    bundle = tmp_path / "incident.tar.gz"
    bundle.write_bytes(b"\x1b]8;;x\x07 not an archive" * 10)
    result = run_cli(["analyze", str(bundle), "-j", "1"])
    assert result.exit_code == 3
    assert result.stderr.startswith(
        "tracecore: error: incident.tar.gz: bundle refused: not a readable tar archive"
    )
    assert "\x1b" not in result.stderr


def test_plain_file_is_not_a_bundle(tmp_path: Path) -> None:
    plain = tmp_path / "notes.txt"
    plain.write_text("hello\n")
    result = run_cli(["analyze", str(plain)])
    assert result.exit_code == 3
    assert "not a directory or a supported incident bundle" in result.stderr


def test_tar_zst_bundle_is_read(hostile: ModuleType, tmp_path: Path) -> None:
    zstandard = pytest.importorskip("zstandard")
    raw = tmp_path / "i.tar"
    with tarfile.open(raw, "w") as archive:
        log = tmp_path / "rank0.log"
        log.write_text(hostile.BENIGN_LOG)
        archive.add(log, "incident-7/logs/rank0.log")
    bundle = tmp_path / "incident.tar.zst"
    bundle.write_bytes(zstandard.ZstdCompressor().compress(raw.read_bytes()))
    code, document, stderr = _analyze_json(bundle)
    assert code == 0, stderr
    assert document is not None
    assert document["incident"]["path"] == str(bundle)
    assert sum(s["files_seen"] for s in document["ingest"]["sources"]) == 1


def test_fifo_named_like_a_bundle_does_not_hang(hostile: ModuleType, tmp_path: Path) -> None:
    fifo = hostile.make_fifo(tmp_path / "incident.tar.gz")
    # A subprocess with a timeout: if the command ever opened the FIFO blocking, it would hang here.
    result = subprocess.run(
        [sys.executable, "-m", "tracecore", "analyze", str(fifo), "-j", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 3
    assert "not a regular file or directory" in result.stderr


def test_single_gz_bomb_inside_a_directory_is_refused_per_file(hostile: ModuleType, tmp_path: Path) -> None:
    """Engine level, so it holds whichever parser claims the file."""
    path = tmp_path / "rank0.log.gz"
    path.write_bytes(hostile.gz_log_bomb(8 << 20))
    job = DiscoveredFile(path, "rank0.log.gz", "app_log", None, "gz", path.stat().st_size, 0)
    result = parse_one(job, Manifest(), max_file_bytes=1 << 20)
    assert result.failure == "too-large"
    assert [p.problem for p in result.output.problems] == [
        "decompressed content larger than 1048576 bytes, not read (possible decompression bomb; "
        "raise --max-bundle-bytes if genuine)"
    ]
    assert result.output.records == 0


def test_single_gz_bomb_through_the_cli() -> None:
    code, document, stderr = _analyze_json(HOSTILE / "gz_bomb", "--max-bundle-bytes", "8M")
    if code == 3 and "nothing ingestible" in stderr:
        pytest.skip("no parser claims the benign log line yet")
    assert code == 0, stderr
    assert document is not None
    problems = [p for p in document["ingest"]["problems"] if p["file"] == "logs/rank0.log.gz"]
    assert len(problems) == 1
    assert problems[0]["problem"].startswith("decompressed content larger than 8388608 bytes, not read")
    assert sum(s["files_failed"] for s in document["ingest"]["sources"]) == 1


def test_damaged_gz_keeps_what_decompressed(hostile: ModuleType, tmp_path: Path) -> None:
    import gzip

    data = gzip.compress((hostile.BENIGN_LOG * 2000).encode(), mtime=0)
    path = tmp_path / "rank0.log.gz"
    path.write_bytes(data[: len(data) // 2])
    job = DiscoveredFile(path, "rank0.log.gz", "app_log", None, "gz", path.stat().st_size, 0)
    result = parse_one(job, Manifest())
    assert result.failure is None
    damaged = [p for p in result.output.problems if p.problem.startswith("compressed stream damaged after")]
    assert len(damaged) == 1, result.output.problems


def test_unsafe_names_are_printable_in_the_ledger(tmp_path: Path) -> None:
    bundle = tmp_path / "names.tar"
    with tarfile.open(bundle, "w") as archive:
        info = tarfile.TarInfo("../\x1b[31mred\x1b[0m")
        archive.addfile(info)
    with open_bundle(bundle) as opened:
        assert [s.file for s in opened.skipped] == ["../\\x1b[31mred\\x1b[0m"]
        assert os.listdir(opened.root) == []


def test_names_the_file_system_cannot_hold_skip_only_that_entry(hostile: ModuleType, tmp_path: Path) -> None:
    bundle = tmp_path / "odd.tar"
    with tarfile.open(bundle, "w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in [
            ("logs/rank0.log", hostile.BENIGN_LOG.encode()),
            ("logs/rank0.log/inner.log", b"x\n"),  # a file used as a folder
            ("logs/" + "n" * 300 + ".log", b"x\n"),  # longer than NAME_MAX
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    with open_bundle(bundle) as opened:
        reasons = {s.file: s.reason for s in opened.skipped}
        # One top-level folder ("logs") becomes the incident root.
        assert (opened.root / "rank0.log").read_text() == hostile.BENIGN_LOG
    assert reasons["logs/rank0.log/inner.log"] == "cannot create file: Not a directory"
    assert reasons["logs/" + "n" * 300 + ".log"] == "cannot create file: File name too long"
