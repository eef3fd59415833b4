"""collective-hang on real gloo dumps (samples and captures) and synthetic cross-group cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.fr_dumps import Job, job_tables
from tests.helpers.incident import ingest_serial
from tests.helpers.paths import CAPTURES, SAMPLES
from tracecore.analyzers.detectors.collective_hang import detect
from tracecore.analyzers.report import Severity

FR = SAMPLES / "flight_recorder"


@pytest.mark.parametrize("variant", ["pickle", "json", "pickle_pgfixed"])
def test_missing_rank_sample(variant: str) -> None:
    [verdict] = detect(ingest_serial(FR / "missing_rank_hang" / variant).tables)
    assert verdict.severity is Severity.CRITICAL
    assert verdict.culprit.ranks == [3]
    assert verdict.affected.ranks == [0, 1, 2]
    d = verdict.details
    assert (d["group_key"], d["pg_name"], d["pg_desc"], d["seq"], d["op"]) == (
        "0[0-3]",
        "0",
        "default_pg",
        9,
        "gloo:all_reduce",
    )
    assert d["waiting_ranks"] == [0, 1, 2] and d["behind"] == {"3": 1}
    assert d["culprit_last_entries"]["3"]["seq"] == 8
    assert d["culprit_last_entries"]["3"]["profiling_name"] == "gloo:barrier"
    assert d["first_ts_ns"] is not None
    if variant == "json":
        assert d["waiting_stack"] == []
    else:
        assert d["waiting_stack"][0] == "all_reduce at torch/distributed/distributed_c10d.py:3245"
    assert verdict.evidence[0].file.startswith("comm_lib_trace_rank_")


@pytest.mark.parametrize("variant", ["pickle", "json", "pickle_pgfixed"])
def test_ring_wrap_sample(variant: str) -> None:
    [verdict] = detect(ingest_serial(FR / "ring_wrap" / variant).tables)
    assert verdict.culprit.ranks == [3]
    assert verdict.details["seq"] == 41


@pytest.mark.parametrize(
    "path",
    [
        FR / "healthy" / "pickle",
        FR / "healthy" / "json",
        FR / "p2p" / "pickle",
        CAPTURES / "fr" / "ring_wrap_healthy_skew_ws4" / "pickle",
        CAPTURES / "fr" / "healthy_ws8" / "json",
        CAPTURES / "fr" / "coalesced_ws4" / "pickle",
        FR / "size_mismatch_allreduce" / "pickle",
    ],
)
def test_no_hang(path: Path) -> None:
    assert detect(ingest_serial(path).tables) == []


def test_dead_rank_without_dump_is_the_culprit() -> None:
    [verdict] = detect(ingest_serial(CAPTURES / "fr" / "dead_rank_no_dump_ws4_r2" / "pickle").tables)
    assert verdict.culprit.ranks == [2]
    assert verdict.details["missing_dump_ranks"] == [2]
    assert verdict.details["behind"] == {"2": None}
    assert any("rank 2 left no flight-recorder dump" in m for m in verdict.missing_evidence)


@pytest.mark.parametrize("variant", ["pickle", "json"])
def test_subgroup_hang_root_is_the_rank_that_skipped(variant: str) -> None:
    [verdict] = detect(ingest_serial(CAPTURES / "fr" / "subgroup_hang_ws8" / variant).tables)
    assert verdict.culprit.ranks == [5]
    assert verdict.details["group_key"] == "2[4-7]"
    assert verdict.details["waiting_ranks"] == [4, 6, 7]
    groups = {g["group_key"]: g for g in verdict.details["hung_groups"]}
    assert groups["0[0-7]"]["culprit_ranks"] == [4, 6, 7]
    assert groups["0[0-7]"]["waiting_elsewhere"] == {"4": "2[4-7]", "6": "2[4-7]", "7": "2[4-7]"}


def test_wait_cycle_with_inferred_membership() -> None:
    # Rank 0 made an extra default-group call and waits there; ranks 1-3 wait in group 'sync'
    # that rank 0 never touched (so no dump lists rank 0 as a member).
    [verdict] = detect(ingest_serial(CAPTURES / "fr" / "extra_call_desync_ws4_r0" / "json").tables)
    assert verdict.culprit.ranks == [0]
    assert verdict.details["pg_desc"] == "sync"


def _tp_dp_job() -> Job:
    job = Job(world=4, backend="gloo")
    job.group("1", "tp", [0, 1])
    job.group("2", "tp", [2, 3])
    for _ in range(2):
        job.collective("all_reduce", group="1")
        job.collective("all_reduce", group="2")
        job.collective("all_reduce")
    return job


@pytest.mark.parametrize("pg_config", ["sane", "broken"])
def test_rank_explaining_every_hung_group_is_root(tmp_path: Path, pg_config: str) -> None:
    # Rank 3 is stuck before the tp all_reduce: rank 2 waits for it in tp; ranks 0,1 wait in the
    # default group for 2 and 3. Rank 3 explains both; rank 2 is waiting elsewhere.
    job = _tp_dp_job()
    job.collective("all_reduce", group="1")
    job.collective("all_reduce", ranks=[0, 1], state="scheduled", retired=False)
    job.collective("all_reduce", group="2", ranks=[2], state="scheduled", retired=False)
    [verdict] = detect(job_tables(job, tmp_path / "inc", pg_config=pg_config))
    assert verdict.culprit.ranks == [3]
    assert verdict.details["group_key"] == "2[2-3]"
    assert verdict.details["waiting_ranks"] == [2]
    hung = {g["group_key"]: g["culprit_ranks"] for g in verdict.details["hung_groups"]}
    assert hung == {"0[0-3]": [2, 3], "2[2-3]": [3]}
    assert verdict.affected.ranks == [0, 1, 2]


def test_ring_wrap_with_record_skew_is_healthy(tmp_path: Path) -> None:
    # Ranks 0,1 ran 30 extra ops on their own group: record ids are skewed by 30 and every
    # buffer wrapped (last 16 kept). Aligned by (group, seq) nothing is wrong.
    job = Job(world=4, backend="gloo")
    job.group("1", "pair", [0, 1])
    for _ in range(30):
        job.collective("all_reduce", group="1")
    for _ in range(40):
        job.collective("all_reduce")
    assert detect(job_tables(job, tmp_path / "inc", pg_config="broken", keep_last=16)) == []


def test_nccl_missing_rank_with_started_states(tmp_path: Path) -> None:
    job = Job(world=4, timing=True)
    for _ in range(3):
        job.collective("all_reduce")
    job.collective("all_reduce", ranks=[0, 1, 2], state="started", retired=False)
    [verdict] = detect(job_tables(job, tmp_path / "inc"))
    assert verdict.culprit.ranks == [3]
    assert verdict.details["seq"] == 4
    assert verdict.details["membership_source"] == "config"


def test_dead_subgroup_member_without_dump_gloo(tmp_path: Path) -> None:
    # Rank 3 died without a dump: rank 2 waits in tp [2,3] (inferred as {2} from the entries),
    # ranks 0,1 wait in the default group for 2 and 3. Rank 3 explains both. The default group's
    # all_gather (output = input x 4) tells the world size although rank 3 left nothing.
    job = _tp_dp_job()
    job.collective("all_gather", sizes=[[4]], out_sizes=[[4, 4]])
    job.collective("all_reduce", group="1")
    job.collective("all_reduce", ranks=[0, 1], state="scheduled", retired=False)
    job.collective("all_reduce", group="2", ranks=[2], state="scheduled", retired=False)
    [verdict] = detect(job_tables(job, tmp_path / "inc", ranks=[0, 1, 2], pg_config="broken"))
    assert verdict.culprit.ranks == [3]
    assert verdict.details["missing_dump_ranks"] == [3]


def test_dead_subgroup_member_only_hang(tmp_path: Path) -> None:
    # Only the subgroup hangs: its sole dumped member waits; the world's dump-less rank is the culprit.
    job = _tp_dp_job()
    job.collective("all_gather", sizes=[[4]], out_sizes=[[4, 4]])
    job.collective("all_reduce", group="2", ranks=[2], state="scheduled", retired=False)
    [verdict] = detect(job_tables(job, tmp_path / "inc", ranks=[0, 1, 2], pg_config="broken"))
    assert verdict.culprit.ranks == [3]
    assert verdict.details["waiting_ranks"] == [2]
