"""Parallel and serial flight-recorder ingest give identical tables (synthetic 64-rank incident)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tests.helpers.spool import pack_run
from tracecore.analyzers.detectors import collective_hang
from tracecore.analyzers.ingest.base import ParseOutput
from tracecore.analyzers.ingest.discovery import DiscoveredFile
from tracecore.analyzers.ingest.engine import (
    FileResult,
    IngestResult,
    SpoolSlice,
    _BatchSpool,
    _consecutive_runs,
    _unpack_batch,
    ingest,
)
from tracecore.analyzers.synth import SynthSpec, write_incident
from tracecore.analyzers.tables import Tables
from tracecore.analyzers.tablestore import load_table_dir, write_table_dir

FR_TABLES = ("fr_entries", "fr_groups", "fr_status", "fr_stacks", "fr_calls")


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
    # Workers take runs of consecutive files: the entries keep the serial order, not just the rows.
    assert serial.tables.df("fr_entries").equals(parallel.tables.df("fr_entries"), null_equal=True)
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
        results = _spooled(_BatchSpool(folder, batch_rows=1), [first, empty])
        assert all(isinstance(p, bytes) for r in results for p in r.packed["fr_entries"])
        assert _tables(results) == [first, empty]
    # With one, every table of a name goes to one stream, read back in order, then removed.
    results = _spooled(_BatchSpool(str(tmp_path), batch_rows=1), [first, second])
    slices = [p for r in results for p in r.packed["fr_entries"]]
    assert all(isinstance(p, SpoolSlice) for p in slices)
    assert len({p.path for p in slices if isinstance(p, SpoolSlice)}) == 1
    assert _tables(results) == [first, second]
    assert not any(tmp_path.glob("*.arrow"))


def test_consecutive_files_tables_are_joined_into_large_batches_in_order(
    incident: Path, tmp_path: Path
) -> None:
    table = ingest(incident, jobs=1).tables["fr_entries"].combine_chunks()
    parts = [table.slice(i * 100, 100) for i in range(5)]
    results = _spooled(_BatchSpool(str(tmp_path), batch_rows=250), parts)
    # 300 rows held after the third file: written with it; the last two at the end of the run.
    assert [len(r.packed.get("fr_entries", [])) for r in results] == [0, 0, 1, 0, 1]
    read = _tables(results)
    assert [t.num_rows for t in read] == [300, 200]
    assert [c.num_chunks for c in read[0].columns] == [1] * read[0].num_columns
    assert pa.concat_tables(read).to_pylist() == pa.concat_tables(parts).to_pylist()


def test_held_tables_go_with_the_last_file_of_the_parser_that_made_them(tmp_path: Path) -> None:
    # A run mixes parsers (a host folder holds a dump and a kernel log): the ledger files tables
    # under their result's parser, so held rows must not ride on another parser's file.
    kinds = ["flight_recorder", "kernel_log", "flight_recorder", "kernel_log", "kernel_log"]
    results = [
        FileResult(
            f"f{i}",
            source,
            ParseOutput(
                tables={"fr_status" if source == "flight_recorder" else "kernel_events": pa.table({"i": [i]})}
            ),
            0,
            0.0,
        )
        for i, source in enumerate(kinds)
    ]
    pack_run(_BatchSpool(str(tmp_path)), results)
    assert [sorted(r.packed) for r in results] == [[], [], ["fr_status"], [], ["kernel_events"]]
    unpacked = _unpack_batch(results)
    assert unpacked[2].output.tables["fr_status"]["i"].to_pylist() == [0, 2]
    assert unpacked[4].output.tables["kernel_events"]["i"].to_pylist() == [1, 3, 4]


def test_runs_of_consecutive_files_cover_every_file_once_in_order() -> None:
    def runs(sizes: list[int], count: int) -> list[list[int]]:
        files = [
            DiscoveredFile(Path(f"f{i}"), f"f{i}", "flight_recorder", None, None, size, 0)
            for i, size in enumerate(sizes)
        ]
        return [[int(f.rel[1:]) for f in run] for run in _consecutive_runs(files, count)]

    assert runs([10] * 8, 4) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert runs([10] * 3, 8) == [[0], [1], [2]]
    # A large file fills a run of its own; the rest share the other runs.
    assert runs([100, 10, 10, 10, 10], 3) == [[0], [1, 2], [3, 4]]
    assert [i for run in runs([5, 1, 9, 3, 7, 2, 8], 3) for i in run] == list(range(7))
    assert runs([0, 0, 0], 2) == [[0], [1, 2]]


def test_a_spool_stream_cut_short_is_an_error_not_lost_rows(tmp_path: Path, incident: Path) -> None:
    table = ingest(incident, jobs=1).tables["fr_entries"].combine_chunks().slice(0, 100)
    results = _spooled(_BatchSpool(str(tmp_path), batch_rows=1), [table, table])
    [packed] = results[1].packed["fr_entries"]
    assert isinstance(packed, SpoolSlice)
    path = Path(packed.path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2 + 200])
    with pytest.raises(OSError, match="ends before batch"):
        _tables(results)


def _spooled(spooler: _BatchSpool, tables: list[pa.Table]) -> list[FileResult]:
    """Worker side: one flight-recorder result per table, packed as one run of files."""
    return pack_run(
        spooler,
        [
            FileResult(f"f{i}", "flight_recorder", ParseOutput(tables={"fr_entries": t}), 0, 0.0)
            for i, t in enumerate(tables)
        ],
    )


def _tables(results: list[FileResult]) -> list[pa.Table]:
    """Parent side: the tables the results carry, in order."""
    return [r.output.tables["fr_entries"] for r in _unpack_batch(results) if "fr_entries" in r.output.tables]


def test_the_fork_server_runs_from_an_early_start_to_the_end_of_the_parse(incident: Path) -> None:
    # A fresh interpreter: the fork server is per process. jobs=1 never needs one; otherwise it is
    # started at once, the engine's pool then forks its workers from it, and it is stopped when
    # the parse is done (it would idle through the analysis); a later parse starts a new one.
    script = (
        "import sys\n"
        "from multiprocessing import forkserver\n"
        "from pathlib import Path\n"
        "from tracecore.analyzers.ingest.workers import start_early\n"
        "start_early(1)\n"
        "print(forkserver._forkserver._forkserver_pid is None)\n"
        "start_early(2)\n"
        "print(forkserver._forkserver._forkserver_pid is not None)\n"
        "from tracecore.analyzers.ingest.engine import ingest\n"
        "print(ingest(Path(sys.argv[1]), jobs=2).tables['fr_entries'].num_rows)\n"
        "print(forkserver._forkserver._forkserver_pid is None)\n"
        "print(ingest(Path(sys.argv[1]), jobs=2).tables['fr_entries'].num_rows)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(incident)], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.split() == ["True", "True", str(64 * 200), "True", str(64 * 200)]


def test_a_failed_derivation_keeps_the_parsed_rows_and_says_so(tmp_path: Path) -> None:
    # These entries lack the columns the call fold reads: deriving fr_calls fails. The parsed
    # rows must still arrive, the failure be reported, and fr_calls be marked as not derived
    # (the ingest then leaves it out, so the analysis folds the calls itself).
    results = [
        FileResult(
            f"f{i}", "flight_recorder", ParseOutput(tables={"fr_entries": pa.table({"i": [i]})}), 0, 0.0
        )
        for i in range(3)
    ]
    pack_run(_BatchSpool(str(tmp_path)), results)
    assert results[-1].underived == ["fr_calls"]
    assert "fr_calls" not in results[-1].packed
    assert any("internal error deriving fr_calls" in p.problem for p in results[-1].output.problems)
    assert [t["i"].to_pylist() for t in _tables(results)] == [[0, 1, 2]]


def test_a_table_left_out_by_the_ingest_is_not_written_as_an_empty_one(
    incident: Path, tmp_path: Path
) -> None:
    result = ingest(incident, jobs=1)
    assert result.tables.has("fr_calls")
    result.tables = Tables({n: result.tables[n] for n in result.tables.names() if n != "fr_calls"})
    write_table_dir(result, tmp_path / "tables")
    assert not (tmp_path / "tables" / "fr_calls.parquet").exists()
    assert (tmp_path / "tables" / "fr_entries.parquet").exists()
    assert "fr_calls" not in load_table_dir(tmp_path / "tables").tables.names()


def _resident_kb(starts: set[int]) -> int:
    """Resident kB of this process's mappings that begin at ``starts`` (from /proc/self/smaps)."""
    total, current = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split(maxsplit=1)[0]
        if "-" in head and not head.endswith(":"):
            current = int(head.split("-")[0], 16) in starts
        elif head == "Rss:" and current:
            total += int(line.split()[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux's /proc/self/smaps")
def test_released_pages_leave_the_process_and_read_back_the_same(incident: Path) -> None:
    tables = ingest(incident, jobs=2).tables
    assert tables.mapped, "the workers' tables come through mapped spool files"
    starts = {pa.py_buffer(mapping).address for mapping in tables.mapped}
    total = pc.sum(tables["fr_entries"].column("record_id")).as_py()  # reads the column
    assert _resident_kb(starts) > 0
    tables.release_pages()
    assert _resident_kb(starts) == 0
    assert pc.sum(tables["fr_entries"].column("record_id")).as_py() == total
    assert tables.with_table("identity", tables["identity"]).mapped == tables.mapped
