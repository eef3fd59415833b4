"""Parallel and serial flight-recorder ingest give identical tables (synthetic 64-rank incident)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyarrow as pa
import pytest

from tracecore.analyzers.detectors import collective_hang
from tracecore.analyzers.ingest.base import ParseOutput
from tracecore.analyzers.ingest.engine import (
    FileResult,
    IngestResult,
    SpoolSlice,
    _BatchSpool,
    _unpack_batch,
    ingest,
)
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
    # Worker tables travel as memory-mapped spool streams under TMPDIR; none may be left behind.
    spool_root = tmp_path / "tmp"
    spool_root.mkdir()
    monkeypatch.setenv("TMPDIR", str(spool_root))
    tempfile.tempdir = None  # re-read TMPDIR
    try:
        spooled = ingest(incident, jobs=2)
    finally:
        tempfile.tempdir = None
    assert list(spool_root.iterdir()) == []
    table = spooled.tables["fr_entries"].combine_chunks()
    first, second = table.slice(0, 1000), table.slice(1000, 500)
    empty = table.slice(0, 0)
    # Without a writable spool folder (or for an empty table) tables come back through the pipe.
    for folder in (None, str(tmp_path / "missing" / "spool")):
        spooler = _BatchSpool(folder)
        packed = [spooler.pack("fr_entries", first), spooler.pack("fr_entries", empty)]
        spooler.close()
        assert all(isinstance(p, bytes) for p in packed)
        assert _roundtrip(packed) == [first, empty]
    # With one, every table of a name goes to one stream, sliced back per file, then removed.
    spooler = _BatchSpool(str(tmp_path))
    packed = [spooler.pack("fr_entries", first), spooler.pack("fr_entries", second)]
    spooler.close()
    assert all(isinstance(p, SpoolSlice) for p in packed)
    assert len({p.path for p in packed if isinstance(p, SpoolSlice)}) == 1
    assert _roundtrip(packed) == [first, second]
    assert not any(tmp_path.glob("*.arrow"))


def test_a_spool_stream_cut_short_is_an_error_not_lost_rows(tmp_path: Path, incident: Path) -> None:
    table = ingest(incident, jobs=1).tables["fr_entries"].combine_chunks().slice(0, 100)
    spooler = _BatchSpool(str(tmp_path))
    packed = [spooler.pack("fr_entries", table), spooler.pack("fr_entries", table)]
    spooler.close()
    assert isinstance(packed[1], SpoolSlice)
    path = Path(packed[1].path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2 + 200])
    with pytest.raises(OSError, match="ends before batch"):
        _roundtrip(packed)


def _roundtrip(packed: list[SpoolSlice | bytes]) -> list[pa.Table]:
    results = [
        FileResult(f"f{i}", "flight_recorder", ParseOutput(), 0, 0.0, packed={"fr_entries": p})
        for i, p in enumerate(packed)
    ]
    return [r.output.tables["fr_entries"] for r in _unpack_batch(results)]
