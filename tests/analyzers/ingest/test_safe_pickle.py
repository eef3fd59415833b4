"""The restricted unpickler: plain data loads, every route to code is refused and never runs."""

from __future__ import annotations

import copyreg
import pickle
from pathlib import Path

import pytest

from tests.helpers.incident import ingest_serial, write_incident
from tests.helpers.paths import HOSTILE, SAMPLES
from tracecore.analyzers.ingest import safe_pickle


def _marker_pickle_global(marker: Path) -> bytes:
    # GLOBAL os.system, then REDUCE with a command that would create the marker.
    command = f"touch {marker}".encode()
    return b"\x80\x02cos\nsystem\nq\x00X" + len(command).to_bytes(4, "little") + command + b"\x85R."


def _marker_pickle_stack_global(marker: Path) -> bytes:
    command = f"touch {marker}".encode()
    return b"\x80\x04\x8c\x02os\x8c\x06system\x93X" + len(command).to_bytes(4, "little") + command + b"\x85R."


def test_plain_dump_loads(tmp_path: Path) -> None:
    data = (SAMPLES / "flight_recorder" / "healthy" / "pickle" / "comm_lib_trace_rank_0").read_bytes()
    dump = safe_pickle.loads(data)
    assert dump["version"] == "2.10"
    assert len(dump["entries"]) == 18
    assert safe_pickle.is_plain(dump)


def test_global_opcode_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(safe_pickle.UnsafePickleError, match=r"os\.system"):
        safe_pickle.loads(_marker_pickle_global(marker))
    assert not marker.exists()
    # The same bytes really are a payload: a plain unpickler would run it.
    assert b"cos\nsystem" in _marker_pickle_global(marker)


def test_stack_global_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(safe_pickle.UnsafePickleError):
        safe_pickle.loads(_marker_pickle_stack_global(marker))
    assert not marker.exists()


def test_ext_opcode_refused() -> None:
    copyreg.add_extension("os", "getcwd", 0xF1)
    try:
        with pytest.raises(safe_pickle.UnsafePickleError):
            safe_pickle.loads(b"\x80\x02\x82\xf1)R.")
    finally:
        copyreg.remove_extension("os", "getcwd", 0xF1)


def test_persistent_id_refused() -> None:
    with pytest.raises(safe_pickle.UnsafePickleError):
        safe_pickle.loads(b"\x80\x02X\x01\x00\x00\x00aQ.")


def test_reduce_on_plain_data_cannot_call_anything() -> None:
    # REDUCE with a str as "callable": without find_class nothing callable can reach the stack.
    with pytest.raises(TypeError):
        safe_pickle.loads(b"\x80\x02X\x01\x00\x00\x00a)R.")


def test_size_bound() -> None:
    data = pickle.dumps({"entries": []}, protocol=2)
    with pytest.raises(ValueError, match="exceeds"):
        safe_pickle.loads(data, max_bytes=len(data) - 1)


def test_is_plain_rejects_sets() -> None:
    assert not safe_pickle.is_plain({"a": [1, {2}]})
    assert safe_pickle.is_plain({"a": [1, (2, None, b"x", 1.5, True)]})


def test_committed_hostile_pickles_are_refused_in_ingest(tmp_path: Path) -> None:
    marker = Path("/tmp/tracecore-hostile-pickle-executed")
    existed = marker.exists()
    healthy = (SAMPLES / "flight_recorder" / "healthy" / "json" / "comm_lib_trace_rank_1.json").read_bytes()
    refused = []
    for case in sorted((HOSTILE / "pickle").iterdir()):
        payload = (case / "comm_lib_trace_rank_0").read_bytes()
        root = write_incident(
            tmp_path / case.name, {"comm_lib_trace_rank_0": payload, "comm_lib_trace_rank_1.json": healthy}
        )
        result = ingest_serial(root)
        problems = [p.problem for p in result.summary.problems if p.file == "comm_lib_trace_rank_0"]
        skipped = [s.file for s in result.summary.skipped_files]
        if payload.startswith(b"\x80"):
            # Protocol-2+ pickles under a dump name reach the restricted loader and are refused.
            assert any("refused" in p and "nothing was executed" in p for p in problems), (
                case.name,
                problems,
            )
            refused.append(case.name)
        else:
            assert "comm_lib_trace_rank_0" in skipped or problems, case.name
        assert set(result.tables["fr_entries"].column("source_file").to_pylist()) == {
            "comm_lib_trace_rank_1.json"
        }
    assert {"global_reduce", "builtins_exec", "stack_global_fr_dict"} <= set(refused)
    assert marker.exists() == existed
