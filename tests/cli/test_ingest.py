"""`tracecore ingest --out`: Parquet tables readable by Polars, and analysis of them equals analysis of the incident."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from tests.helpers.cli import run_cli
from tests.helpers.paths import INCIDENTS
from tracecore.analyzers.tables.schemas import SCHEMAS


def test_tables_have_the_documented_columns(tmp_path: Path) -> None:
    out = tmp_path / "tables"
    result = run_cli(["ingest", str(INCIDENTS / "gpu-fell-off-bus-hang"), "--out", str(out), "--jobs", "1"])
    assert result.exit_code == 0, result.stderr
    for name, schema in SCHEMAS.items():
        frame = pl.read_parquet(out / f"{name}.parquet")
        assert frame.columns == schema.names, name
    kernel = pl.read_parquet(out / "kernel_events.parquet")
    assert kernel.filter((pl.col("kind") == "xid") & (pl.col("xid") == 79)).height == 1


def test_analysis_of_the_table_directory_matches(tmp_path: Path) -> None:
    incident = tmp_path / "incident"
    shutil.copytree(INCIDENTS / "gpu-fell-off-bus-hang", incident)
    # A declared clock offset must be removed once, not again when the tables are read back.
    (incident / "incident.toml").write_text(
        (incident / "incident.toml").read_text() + '\n[[hosts]]\nname = "node-1"\nclock_offset_ms = 1500\n'
    )
    out = tmp_path / "tables"
    assert run_cli(["ingest", str(incident), "--out", str(out), "--jobs", "1"]).exit_code == 0
    direct = json.loads(
        run_cli(["analyze", str(incident), "-f", "json", "--fail-on", "never", "--jobs", "1"]).stdout
    )
    cached = json.loads(run_cli(["analyze", str(out), "-f", "json", "--fail-on", "never"]).stdout)
    for document in (direct, cached):
        document["incident"]["path"] = "<incident>"
    assert cached["verdicts"] == direct["verdicts"]
    assert cached["incident"]["window"] == direct["incident"]["window"]
    assert cached["root_cause"] == direct["root_cause"] and cached["notes"] == direct["notes"]


def test_a_table_directory_with_plain_string_columns_still_loads(tmp_path: Path) -> None:
    # Table directories written before fr_entries' strings were dictionary-encoded hold plain
    # strings: they are cast on reading and analysed the same.
    out = tmp_path / "tables"
    incident = INCIDENTS / "gpu-fell-off-bus-hang"
    assert run_cli(["ingest", str(incident), "--out", str(out), "--jobs", "1"]).exit_code == 0
    path = out / "fr_entries.parquet"
    table = pq.read_table(path)
    plain = pa.table(
        {
            name: column.cast(pa.string()) if pa.types.is_dictionary(column.type) else column
            for name, column in zip(table.column_names, table.columns, strict=True)
        }
    )
    assert plain.schema.field("host").type == pa.string()
    pq.write_table(plain, path)
    direct = json.loads(
        run_cli(["analyze", str(incident), "-f", "json", "--fail-on", "never", "--jobs", "1"]).stdout
    )
    cached = json.loads(run_cli(["analyze", str(out), "-f", "json", "--fail-on", "never"]).stdout)
    assert cached["verdicts"] == direct["verdicts"]
    assert cached["root_cause"] == direct["root_cause"]


def test_a_table_directory_without_fr_calls_folds_them_from_the_entries(tmp_path: Path) -> None:
    # Table directories written before fr_calls existed lack its file: the calls are folded
    # from the entries when analysed, with the same verdicts.
    out = tmp_path / "tables"
    incident = INCIDENTS / "fr-size-mismatch-ws5-r3-pickle"
    assert run_cli(["ingest", str(incident), "--out", str(out), "--jobs", "1"]).exit_code == 0
    assert pq.read_table(out / "fr_calls.parquet").num_rows > 0
    (out / "fr_calls.parquet").unlink()
    direct = json.loads(
        run_cli(["analyze", str(incident), "-f", "json", "--fail-on", "never", "--jobs", "1"]).stdout
    )
    cached = json.loads(run_cli(["analyze", str(out), "-f", "json", "--fail-on", "never"]).stdout)
    assert direct["verdicts"]
    assert cached["verdicts"] == direct["verdicts"]
    assert cached["root_cause"] == direct["root_cause"]
