"""collective-timeout: retired without completing, or in flight past timeout_ms."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.fr_dumps import Job, job_tables
from tests.helpers.incident import ingest_serial
from tests.helpers.paths import SAMPLES
from tracecore.analyzers.detectors import collective_hang
from tracecore.analyzers.detectors.collective_timeout import detect
from tracecore.analyzers.report import Severity


def test_retired_not_completed_on_nccl(tmp_path: Path) -> None:
    job = Job(world=4, timing=True)
    job.collective("all_reduce")
    job.collective("all_reduce", state="started", retired=False, per_rank={1: {"retired": True}})
    [verdict] = detect(job_tables(job, tmp_path / "inc"))
    assert verdict.severity is Severity.ERROR
    assert (verdict.details["seq"], verdict.details["ranks"], verdict.details["retired_not_completed"]) == (
        2,
        [1],
        True,
    )


def test_in_flight_longer_than_timeout(tmp_path: Path) -> None:
    job = Job(world=2, timing=True)
    job.collective(
        "all_reduce",
        state="started",
        retired=False,
        per_rank={0: {"timeout_ms": 1000}, 1: {"timeout_ms": 1000}},
    )
    job.clock += 5_000_000_000  # a later op elsewhere proves the dump is at least 5 s later
    job.collective("all_reduce", ranks=[0], group="0", state="scheduled", retired=False)
    [verdict] = detect(job_tables(job, tmp_path / "inc"))
    assert verdict.details["seq"] == 1
    assert verdict.details["in_flight_s_at_least"] >= 5


def test_gloo_retired_is_success_and_missing_times_are_said(tmp_path: Path) -> None:
    assert detect(ingest_serial(SAMPLES / "flight_recorder" / "healthy" / "pickle").tables) == []
    tables = ingest_serial(SAMPLES / "flight_recorder" / "missing_rank_hang" / "pickle").tables
    # No separate "not assessable" verdict on a gloo hang: the hang verdict says it, once.
    assert detect(tables) == []
    [hang] = collective_hang.detect(tables)
    said = [m for m in hang.missing_evidence if "collective-timeout" in m]
    assert len(said) == 1 and "dump time" in said[0]
