"""Crafted pickles named like flight-recorder dumps: rejected, and the command inside never runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers.cli import run_cli
from tests.helpers.paths import HOSTILE
from tracecore.analyzers.ingest import flight_recorder
from tracecore.analyzers.ingest.base import FileContext
from tracecore.analyzers.ingest.manifest import Manifest

VARIANTS = ["global_reduce", "fr_dump_reduce", "stack_global_fr_dict", "inst", "builtins_exec"]
# Shaped like a real dump (protocol 2, FR keys up front): the FR parser must claim it, so the
# restricted unpickler, not the sniff, is what stops it. The others may be skipped unclaimed.
FR_SHAPED = "fr_dump_reduce"


def _fr_landed() -> bool:
    return not (flight_recorder.__doc__ or "").startswith("Placeholder")


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_crafted_pickle_is_live(variant: str, hostile: ModuleType, tmp_path: Path) -> None:
    """Proof the fixture is dangerous: a plain unpickler in a throwaway process does run it."""
    marker = tmp_path / "marker"
    payload = tmp_path / "payload"
    payload.write_bytes(hostile.evil_pickles(marker)[variant])
    code = "import pickle, sys; pickle.loads(open(sys.argv[1], 'rb').read())"  # the unsafe baseline
    subprocess.run([sys.executable, "-c", code, str(payload)], capture_output=True, timeout=60, check=False)
    assert marker.exists()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("fmt", ["json", "rich", "markdown"])
def test_analyze_never_runs_the_pickle(variant: str, fmt: str, hostile: ModuleType, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    root = tmp_path / "incident" / "node-1" / "fr"
    root.mkdir(parents=True)
    (root / "comm_lib_trace_rank_0").write_bytes(hostile.evil_pickles(marker)[variant])
    (root.parent / "rank0.log").write_text(hostile.BENIGN_LOG)
    result = run_cli(["analyze", str(tmp_path / "incident"), "-f", fmt, "--fail-on", "never", "-j", "1"])
    assert not marker.exists(), "the pickle's command ran"
    assert result.exit_code in (0, 3), result.stderr
    if fmt != "json" or result.exit_code != 0:
        return
    document = json.loads(result.stdout)
    ledger = {s["source"]: s for s in document["ingest"]["sources"]}
    skipped = {s["file"]: s["reason"] for s in document["ingest"]["skipped_files"]}
    problems = [p for p in document["ingest"]["problems"] if p["file"] == "node-1/fr/comm_lib_trace_rank_0"]
    # Accounted for: either not claimed (skipped with a reason) or claimed and rejected with a problem.
    if "node-1/fr/comm_lib_trace_rank_0" in skipped:
        assert not _fr_landed() or variant != FR_SHAPED, "the FR parser should claim an FR-shaped pickle"
        assert skipped["node-1/fr/comm_lib_trace_rank_0"] == "format not recognised by any parser"
        return
    fr = ledger["flight_recorder"]
    assert fr["records"] == 0
    assert len(problems) == 1, problems


@pytest.mark.parametrize("variant", VARIANTS)
def test_committed_pickles_rejected_by_the_parser(variant: str) -> None:
    if not _fr_landed():
        pytest.skip("flight_recorder parser not landed yet")
    marker = Path("/tmp/tracecore-hostile-pickle-executed")  # the committed files' command
    marker.unlink(missing_ok=True)
    path = HOSTILE / "pickle" / variant / "comm_lib_trace_rank_0"
    parser = flight_recorder.FlightRecorderParser()
    ctx = FileContext(path, f"pickle/{variant}/comm_lib_trace_rank_0", path.read_bytes(), None, Manifest())
    output = parser.parse(ctx)
    assert not marker.exists()
    assert output.records == 0
    assert len(output.problems) == 1
    assert all(table.num_rows == 0 for name, table in output.tables.items() if name == "fr_entries")


def test_committed_pickles_match_the_generator(hostile: ModuleType) -> None:
    for variant, data in hostile.evil_pickles(Path(hostile.COMMITTED_MARKER)).items():
        assert (HOSTILE / "pickle" / variant / "comm_lib_trace_rank_0").read_bytes() == data
