"""The identity table: facts joined across sources, conflicts reported, conventions marked."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.incident import analyze_dir, write_incident
from tests.helpers.paths import CAPTURES
from tracecore.analyzers.identity import build_identity
from tracecore.analyzers.ingest.manifest import Manifest, RankSpec
from tracecore.analyzers.tables import Tables, conform


def _app_init(rank: int, host: str, pci: str, nic: str) -> dict[str, list[object]]:
    return {
        "source_file": ["node/rank.log"],
        "source_line": [1],
        "host": [host],
        "pid": [100 + rank],
        "rank": [rank],
        "local_rank": [rank % 4],
        "gpu_index": [rank % 4],
        "pci_bus_id": [pci],
        "kind": ["nccl_init"],
        "attrs": [[("nic", nic)]],
    }


def _dcgm(host: str, index: int, pci: str, uuid: str) -> dict[str, list[object]]:
    return {
        "source_file": [f"{host}/dcgm.prom"],
        "host": [host],
        "gpu_index": [index],
        "pci_bus_id": [pci],
        "gpu_uuid": [uuid],
        "field": ["DCGM_FI_DEV_GPU_UTIL"],
        "value": [97.0],
    }


def test_nccl_init_and_dcgm_join_into_one_row() -> None:
    tables = Tables(
        {
            "app_events": conform("app_events", _app_init(5, "node-1", "0000:3b:00.0", "mlx5_1")),
            "gpu_metrics": conform("gpu_metrics", _dcgm("node-1", 1, "0000:3b:00.0", "GPU-abc")),
        }
    )
    table, problems = build_identity(tables, Manifest())
    rows = table.to_pylist()
    assert problems == []
    assert rows == [
        {
            "rank": 5,
            "host": "node-1",
            "local_rank": 1,
            "gpu_index": 1,
            "pci_bus_id": "0000:3b:00.0",
            "gpu_uuid": "GPU-abc",
            "pid": 105,
            "nic": "mlx5_1",
            "sources": ["app_log:node/rank.log:1", "dcgm:node-1/dcgm.prom"],
            "assumptions": [],
        }
    ]


def test_conflicting_strong_facts_are_reported_not_guessed() -> None:
    tables = Tables({"app_events": conform("app_events", _app_init(5, "node-2", "0000:3b:00.0", "mlx5_1"))})
    manifest = Manifest(ranks=(RankSpec(rank=5, host="node-1"),), source_file="incident.toml")
    table, problems = build_identity(tables, manifest)
    assert table.column("host").to_pylist() == ["node-1"]
    assert [p.problem for p in problems] == [
        "rank 5 host: node-1 (manifest:incident.toml) vs node-2 (app_log:node/rank.log:1); kept the first"
    ]


def test_local_rank_convention_is_an_assumption_and_unmatched_gpus_stay() -> None:
    tables = Tables(
        {
            "gpu_metrics": conform(
                "gpu_metrics",
                {
                    k: _dcgm("node-0", 2, "0000:5e:00.0", "GPU-2")[k]
                    + _dcgm("node-0", 3, "0000:5f:00.0", "GPU-3")[k]
                    for k in _dcgm("a", 0, "b", "c")
                },
            )
        }
    )
    manifest = Manifest(ranks=(RankSpec(rank=2, host="node-0", local_rank=2),), source_file="incident.toml")
    table, _ = build_identity(tables, manifest)
    rows = table.to_pylist()
    assert rows[0]["rank"] == 2 and rows[0]["pci_bus_id"] == "0000:5e:00.0"
    assert rows[0]["assumptions"] == ["GPU index 2 taken from local rank 2 (convention; no source states it)"]
    assert (
        rows[1]["rank"] is None and rows[1]["pci_bus_id"] == "0000:5f:00.0" and rows[1]["gpu_uuid"] == "GPU-3"
    )


def test_manifest_pid_beats_a_local_rank_in_a_py_spy_file_name(tmp_path: Path) -> None:
    capture = CAPTURES / "pyspy" / "dataloader_stall_ws6_r4"
    pids = {rank: int(pid) for pid, rank in json.loads((capture / "pids.json").read_text()).items()}
    files: dict[str, str | bytes] = {}
    for rank in range(6):
        # Files named by LOCAL rank on each of two hosts, as collection scripts often do.
        files[f"node-{rank // 3}/pyspy/rank{rank % 3}.dump.txt"] = (
            capture / f"rank{rank}.dump.txt"
        ).read_text()
    ranks = "".join(f'[[ranks]]\nrank = {r}\nhost = "node-{r // 3}"\npid = {pids[r]}\n\n' for r in range(6))
    files["incident.toml"] = f"[job]\nworld_size = 6\n\n{ranks}"
    report = analyze_dir(write_incident(tmp_path / "inc", files))
    root = report.verdict(report.root_cause or "")
    assert root is not None and root.pattern == "input-stall" and root.culprit.ranks == [4]
    overridden = [p.problem for p in report.ingest.problems if "file name says rank" in p.problem]
    expected = (
        f"file name says rank 1 but its process (pid {pids[4]}) is rank 4 in the manifest; using rank 4"
    )
    assert expected in overridden
