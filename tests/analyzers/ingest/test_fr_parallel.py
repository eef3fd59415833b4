"""Parallel and serial flight-recorder ingest give identical tables (synthetic 64-rank incident)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tracecore.analyzers.detectors import collective_hang
from tracecore.analyzers.ingest.engine import SPOOL_MIN_BYTES, IngestResult, _pack, _unpacked, ingest
from tracecore.analyzers.synth import SynthSpec, write_incident

FR_TABLES = ("fr_entries", "fr_groups", "fr_status", "fr_stacks")


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fr64") / "inc"
    spec = SynthSpec(ranks=64, hosts=8, entries=200, fault="missing-rank", kernel_lines=0, dcgm_scrapes=0)
    write_incident(spec, root)
    return root


def _sorted(result: IngestResult, name: str):  # type: ignore[no-untyped-def]
    frame = result.tables.df(name)
    keys = [
        c
        for c in ("source_file", "source_line", "stack_id", "group_key", "rank", "pg_id")
        if c in frame.columns
    ]
    return frame.sort(keys, nulls_last=True)


def test_parallel_and_serial_ingest_are_identical(incident: Path) -> None:
    serial = ingest(incident, jobs=1)
    parallel = ingest(incident, jobs=2)
    assert serial.tables["fr_entries"].num_rows == 64 * 200
    for name in FR_TABLES:
        assert serial.tables[name].schema.equals(parallel.tables[name].schema), name
        assert _sorted(serial, name).equals(_sorted(parallel, name), null_equal=True), name
    # Distinct stacks are stored once for the whole incident, not once per dump.
    stacks = serial.tables["fr_stacks"]
    assert stacks.num_rows == len(set(stacks.column("stack_id").to_pylist())) < 64
    assert sorted(p.problem for p in serial.summary.problems) == sorted(
        p.problem for p in parallel.summary.problems
    )


def test_hang_title_lists_ranks_compactly(incident: Path) -> None:
    [verdict] = collective_hang.detect(ingest(incident, jobs=1).tables)
    assert verdict.culprit.ranks == [3]
    assert "rank 3 never issued" in verdict.title
    assert "ranks 0–2, 4–63 wait in it" in verdict.title, verdict.title


def test_parallel_ingest_leaves_no_spool_files_and_uses_the_pipe_without_one(
    incident: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Worker tables travel as memory-mapped spool files under TMPDIR; none may be left behind.
    spool_root = tmp_path / "tmp"
    spool_root.mkdir()
    monkeypatch.setenv("TMPDIR", str(spool_root))
    tempfile.tempdir = None  # re-read TMPDIR
    try:
        spooled = ingest(incident, jobs=2)
    finally:
        tempfile.tempdir = None
    assert list(spool_root.iterdir()) == []
    # Without a writable spool folder the same tables come back through the pipe, and so do
    # small tables (a mapping each would be wasted).
    table = spooled.tables["fr_entries"]
    assert table.nbytes >= SPOOL_MIN_BYTES
    unwritable = tmp_path / "missing" / "spool"
    small = spooled.tables["fr_status"]
    for packed, original in (
        (_pack(table, None), table),
        (_pack(table, str(unwritable)), table),
        (_pack(small, str(tmp_path)), small),
    ):
        assert isinstance(packed, bytes)
        assert _unpacked(packed).equals(original)
    path = _pack(table, str(tmp_path))
    assert isinstance(path, str) and Path(path).is_file()
    assert _unpacked(path).equals(table)
    assert not Path(path).exists()  # removed once mapped
