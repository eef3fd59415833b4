"""slow-rank: the rank that arrives last at most collectives (needs timing fields)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.fr_dumps import Job, job_tables
from tests.helpers.incident import ingest_serial
from tests.helpers.paths import SAMPLES
from tracecore.analyzers.detectors.slow_rank import detect
from tracecore.analyzers.report import Severity


def test_straggler_found_by_duration(tmp_path: Path) -> None:
    job = Job(world=8, timing=True)
    for step in range(12):
        durations = {r: 20.0 + r * 0.5 for r in range(8)}
        if step not in (3, 7):
            durations[5] = 1.0
        job.collective("all_reduce", per_rank={r: {"duration_ms": d} for r, d in durations.items()})
    [verdict] = detect(job_tables(job, tmp_path / "inc"))
    assert verdict.severity is Severity.WARNING
    assert verdict.culprit.ranks == [5]
    assert (verdict.details["times_last"], verdict.details["collectives"]) == (10, 12)
    assert verdict.details["median_lag_ms"] == 20.25  # median of all 8 (21.25) minus 1.0


def test_rotating_last_arriver_is_healthy(tmp_path: Path) -> None:
    job = Job(world=8, timing=True)
    for step in range(12):
        job.collective(
            "all_reduce", per_rank={r: {"duration_ms": 10.0 + ((r * 7 + step * 3) % 8)} for r in range(8)}
        )
    assert detect(job_tables(job, tmp_path / "inc")) == []


def test_no_verdict_without_timing() -> None:
    assert detect(ingest_serial(SAMPLES / "flight_recorder" / "healthy" / "pickle").tables) == []


def test_start_times_are_compared_exactly(tmp_path: Path) -> None:
    # Equal durations (no last arriver by duration), so arrival falls back to start times, which
    # are epoch nanoseconds: ranks 5 and 6 both start ~2 ms late, rank 5 100 ns after rank 6.
    # As doubles (53 bits) the two would round to one value and tie, naming nobody.
    job = Job(world=8, timing=True)
    for _ in range(12):
        start = job.clock + 1_000_000 + 10_000
        late = {5: start + 2_000_100, 6: start + 2_000_000}
        job.collective(
            "all_reduce",
            per_rank={
                r: {"duration_ms": 2.0, "time_discovered_started_ns": late.get(r, start + r * 10)}
                for r in range(8)
            },
        )
    assert float(start + 2_000_100) == float(start + 2_000_000)
    [verdict] = detect(job_tables(job, tmp_path / "inc"))
    assert verdict.culprit.ranks == [5]
    assert verdict.details["metric"] == "started_ns"
