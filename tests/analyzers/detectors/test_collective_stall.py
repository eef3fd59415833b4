"""collective-stall: all members entered the same collective, none completed it."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.fr_dumps import Job, job_tables
from tests.helpers.incident import ingest_serial
from tests.helpers.paths import CAPTURES, INCIDENTS, SAMPLES
from tracecore.analyzers.detectors.collective_stall import detect
from tracecore.analyzers.report import Severity


def test_started_everywhere_cross_node_is_a_stall(tmp_path: Path) -> None:
    job = Job(world=4, timing=True)
    for _ in range(3):
        job.collective("all_reduce")
    job.collective("all_reduce", state="started", retired=False)
    hosts = {0: "node-0", 1: "node-0", 2: "node-1", 3: "node-1"}
    [verdict] = detect(job_tables(job, tmp_path / "inc", host_of=hosts))
    assert verdict.severity is Severity.ERROR
    d = verdict.details
    assert (d["group_key"], d["seq"], d["host_span"], d["hosts"]) == (
        "0[0-3]",
        4,
        "cross-node",
        ["node-0", "node-1"],
    )
    assert d["waiting_ranks"] == [0, 1, 2, 3]
    assert verdict.affected.hosts == ["node-0", "node-1"]


def test_intra_node_span_names_the_host(tmp_path: Path) -> None:
    job = Job(world=2, timing=True)
    job.collective("all_reduce", state="started", retired=False)
    [verdict] = detect(job_tables(job, tmp_path / "inc", host_of={0: "node-3", 1: "node-3"}))
    assert verdict.details["host_span"] == "intra-node"
    assert verdict.culprit.hosts == ["node-3"]


def test_gloo_in_flight_is_only_info(tmp_path: Path) -> None:
    job = Job(world=2, backend="gloo")
    job.collective("all_reduce", state="scheduled", retired=False)
    [verdict] = detect(job_tables(job, tmp_path / "inc", pg_config="broken"))
    assert verdict.severity is Severity.INFO


def test_not_a_stall_when_a_member_is_missing_or_sizes_differ() -> None:
    assert detect(ingest_serial(SAMPLES / "flight_recorder" / "missing_rank_hang" / "pickle").tables) == []
    assert (
        detect(ingest_serial(SAMPLES / "flight_recorder" / "size_mismatch_allreduce" / "pickle").tables) == []
    )
    assert detect(ingest_serial(CAPTURES / "fr" / "healthy_ws8" / "pickle").tables) == []


def test_stall_incident_fixture() -> None:
    [verdict] = detect(ingest_serial(INCIDENTS / "fr-synthetic-stall-nccl").tables)
    assert verdict.details["host_span"] == "cross-node"
