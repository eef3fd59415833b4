"""The incident walk: specials, links, unreadable and vanished files, duplicates; the ledger adds up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers.cli import run_cli
from tests.helpers.incident import ingest_serial, write_incident
from tracecore.analyzers.ingest.discovery import discover
from tracecore.analyzers.ingest.engine import parse_files
from tracecore.analyzers.ingest.manifest import Manifest
from tracecore.analyzers.ingest.registry import PARSERS


def _incident_with_specials(hostile: ModuleType, tmp_path: Path) -> tuple[Path, list[object]]:
    root = write_incident(
        tmp_path / "incident",
        {"logs/rank0.log": hostile.BENIGN_LOG, "logs/empty.log": "", "notes.bin": b"\x00\x01\x02"},
    )
    outside = tmp_path / "outside.log"
    outside.write_text(hostile.BENIGN_LOG.replace("rank0", "rank9"))
    hostile.make_fifo(root / "logs" / "pipe.log")
    sock = hostile.make_socket(root / "logs" / "agent.sock")
    hostile.make_symlink_loop(root / "logs")
    hostile.make_links_out(root / "logs", outside)
    (root / "logs" / "inside_link.log").symlink_to("rank0.log")
    (root / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    return root, [sock]


EXPECTED_REASONS = {
    "logs/pipe.log": "named pipe (FIFO), not read",
    "logs/agent.sock": "socket, not read",
    "logs/loop_a": "symbolic link loop",
    "logs/loop_b": "symbolic link loop",
    "logs/outside_link.log": "symbolic link points outside the incident",
    "logs/dangling.log": "dangling symbolic link",
    "logs/empty.log": "empty file",
    "notes.bin": "format not recognised by any parser",
    "dirlink": "symbolic link to a directory (not followed)",
    "logs/loop_dir": "symbolic link to a directory (not followed)",
}


def test_specials_are_skipped_with_reasons(hostile: ModuleType, tmp_path: Path) -> None:
    root, keep = _incident_with_specials(hostile, tmp_path)
    try:
        discovery = discover(root, PARSERS, Manifest())
    finally:
        for item in keep:
            item.close()  # type: ignore[attr-defined]
    reasons = {s.file: s.reason for s in discovery.skipped}
    assert reasons == EXPECTED_REASONS
    # The ledger accounts for every entry: each is either read or skipped with a reason.
    entries = {p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir() or p.is_symlink()}
    read = {f.rel for f in discovery.files}
    assert read | set(reasons) == entries
    assert not read & set(reasons)


def test_walk_never_hangs_on_a_fifo_through_the_cli(hostile: ModuleType, tmp_path: Path) -> None:
    root, keep = _incident_with_specials(hostile, tmp_path)
    try:
        # A separate process with a timeout: a blocking open of the FIFO would hang it.
        result = subprocess.run(
            [sys.executable, "-m", "tracecore", "analyze", str(root), "-f", "json", "--fail-on", "never"],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    finally:
        for item in keep:
            item.close()  # type: ignore[attr-defined]
    if result.returncode == 3 and "nothing ingestible" in result.stderr:
        pytest.skip("no parser claims the benign log line yet")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    reasons = {s["file"]: s["reason"] for s in document["ingest"]["skipped_files"]}
    assert {k: reasons[k] for k in EXPECTED_REASONS} == EXPECTED_REASONS
    # rank0.log and its in-tree link have the same content: read once, reported.
    assert reasons["logs/rank0.log"] == "same content as logs/inside_link.log (read once)"
    seen = sum(s["files_seen"] for s in document["ingest"]["sources"])
    # 12 entries: rank0.log, its link, empty.log, notes.bin, FIFO, socket, 3 loop links,
    # 2 links out/dangling, the folder link: each is read once or listed with its reason.
    assert seen + len(reasons) == 12


def test_file_swapped_for_a_fifo_after_the_walk_does_not_hang(hostile: ModuleType, tmp_path: Path) -> None:
    root = write_incident(tmp_path / "incident", {"logs/rank0.log": hostile.BENIGN_LOG})
    discovery = discover(root, PARSERS, Manifest())
    if not discovery.files:
        pytest.skip("no parser claims the benign log line yet")
    target = root / "logs" / "rank0.log"
    target.unlink()
    hostile.make_fifo(target)
    results = parse_files(discovery.files, Manifest(), jobs=1)
    assert results[0].failure == "unreadable"
    assert [p.problem for p in results[0].output.problems] == ["cannot read: [Errno 22] not a regular file"]


def test_file_vanishing_after_the_walk_is_a_problem_not_a_crash(hostile: ModuleType, tmp_path: Path) -> None:
    root = write_incident(tmp_path / "incident", {"logs/rank0.log": hostile.BENIGN_LOG})
    discovery = discover(root, PARSERS, Manifest())
    if not discovery.files:
        pytest.skip("no parser claims the benign log line yet")
    (root / "logs" / "rank0.log").unlink()
    results = parse_files(discovery.files, Manifest(), jobs=1)
    assert results[0].failure == "unreadable"
    assert (
        results[0].output.problems[0].problem.startswith("cannot read: [Errno 2] No such file or directory")
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_permission_denied_is_skipped(hostile: ModuleType, tmp_path: Path) -> None:
    root = write_incident(tmp_path / "incident", {"a/rank0.log": hostile.BENIGN_LOG, "b/x.log": "x\n"})
    (root / "a" / "rank0.log").chmod(0)
    (root / "b").chmod(0)
    try:
        reasons = {s.file: s.reason for s in discover(root, PARSERS, Manifest()).skipped}
    finally:
        (root / "b").chmod(0o755)
    assert reasons["a/rank0.log"] == "permission denied"
    assert reasons["b/"] == "folder not readable: Permission denied"


def test_duplicate_content_is_reported_not_merged(hostile: ModuleType, tmp_path: Path) -> None:
    root = write_incident(
        tmp_path / "incident",
        {
            "node-1/logs/rank0.log": hostile.BENIGN_LOG,
            "node-1/logs/rank0.copy.log": hostile.BENIGN_LOG,
            "node-1/logs/rank1.log": hostile.BENIGN_LOG.replace("rank0", "rank1"),
        },
    )
    single = write_incident(tmp_path / "single", {"node-1/logs/rank0.log": hostile.BENIGN_LOG})
    try:
        result = ingest_serial(root)
        alone = ingest_serial(single)
    except Exception as exc:  # nothing claims the log yet
        pytest.skip(f"no parser claims the benign log line yet: {exc}")
    skipped = {s.file: s.reason for s in result.summary.skipped_files}
    assert skipped == {"node-1/logs/rank0.log": "same content as node-1/logs/rank0.copy.log (read once)"}
    assert [p.problem for p in result.summary.problems if p.file == "node-1/logs/rank0.log"] == [
        "duplicate input: node-1/logs/rank0.log has the same content as node-1/logs/rank0.copy.log; read once"
    ]
    # The copy's records were not added a second time; the different rank1 log was read.
    assert result.summary.total_records == 2 * alone.summary.total_records
    assert sorted(f.rel for f in result.files) == ["node-1/logs/rank0.copy.log", "node-1/logs/rank1.log"]


@pytest.mark.parametrize("where", ["tail", "middle"])
def test_same_size_files_that_differ_past_the_sampled_bytes_are_not_duplicates(
    hostile: ModuleType, tmp_path: Path, where: str
) -> None:
    # Longer than the bytes hashed first: one line differs (same length), at the end, or in the
    # middle with both ends (what is sampled) equal, as in a large job's dumps.
    body = hostile.BENIGN_LOG * (100_000 // len(hostile.BENIGN_LOG) + 1)

    def content(mark: str) -> str:
        return body + body + f"{where} {mark}\n" if where == "tail" else body + f"{where} {mark}\n" + body

    root = write_incident(
        tmp_path / "incident",
        {
            "node-1/logs/rank0.log": content("A"),
            "node-1/logs/rank1.log": content("B"),
            "node-1/logs/rank2.log": content("A"),
        },
    )
    try:
        result = ingest_serial(root)
    except Exception as exc:  # nothing claims the log yet
        pytest.skip(f"no parser claims the benign log line yet: {exc}")
    skipped = {s.file: s.reason for s in result.summary.skipped_files}
    assert skipped == {"node-1/logs/rank2.log": "same content as node-1/logs/rank0.log (read once)"}
    assert sorted(f.rel for f in result.files) == ["node-1/logs/rank0.log", "node-1/logs/rank1.log"]


def test_empty_incident_and_only_specials(hostile: ModuleType, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli(["analyze", str(empty)])
    assert result.exit_code == 3
    assert result.stderr == f"tracecore: error: {empty}: no files found (empty incident directory)\n"
    specials = tmp_path / "specials"
    specials.mkdir()
    hostile.make_fifo(specials / "pipe")
    hostile.make_symlink_loop(specials)
    result = run_cli(["analyze", str(specials)])
    assert result.exit_code == 3
    assert "nothing ingestible: 4 file(s)" in result.stderr
