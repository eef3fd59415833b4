"""Flight-recorder analysis when some ranks left no dump (torch 2.13 gloo: broken pg_config).

Membership is then inferred from the entries, so groups look smaller than they are: size
relations, hang culprits and the world size must not be read from the short member lists.
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers.fr_dumps import Job, job_tables
from tracecore.analyzers.detectors import collective_hang, collective_mismatch
from tracecore.analyzers.report import Severity


def _dp_job(world: int, groups: list[list[int]], steps: int) -> Job:
    """gloo job: per step an all_gather_into_tensor in each dp group, then a default all_reduce."""
    job = Job(world=world, backend="gloo")
    for i, members in enumerate(groups):
        job.group(str(i + 1), "dp", members)
    for _ in range(steps):
        for i, members in enumerate(groups):
            n = len(members)
            job.collective(
                "all_gather_into_tensor",
                group=str(i + 1),
                sizes=[[8]],
                out_sizes=[[n, 8]],
                state="scheduled",
                retired=True,
            )
        job.collective("all_reduce", sizes=[[1]], state="scheduled", retired=True)
    return job


def test_healthy_job_missing_dump_has_no_size_mismatch(tmp_path: Path) -> None:
    # dp group [2, 5] gathers [2, 8] on each member; without rank 5's dump it looks like [2].
    job = _dp_job(6, [[0, 3], [1, 4], [2, 5]], steps=3)
    tables = job_tables(job, tmp_path / "inc", ranks=[0, 1, 2, 3, 4], pg_config="broken")
    assert collective_mismatch.detect(tables) == []
    assert collective_hang.detect(tables) == []


def test_inferred_group_still_finds_a_real_size_mismatch(tmp_path: Path) -> None:
    job = Job(world=4, backend="gloo")
    job.group("1", "dp", [0, 1, 2, 3])
    job.collective(
        "all_gather_into_tensor", group="1", sizes=[[8]], out_sizes=[[4, 8]], state="scheduled", retired=True
    )
    job.collective(
        "all_gather_into_tensor",
        group="1",
        sizes=[[8]],
        out_sizes=[[4, 8]],
        state="scheduled",
        per_rank={1: {"output_sizes": [[4, 9]]}},
    )
    tables = job_tables(job, tmp_path / "inc", ranks=[0, 1, 2], pg_config="broken")
    [verdict] = collective_mismatch.detect(tables)
    assert verdict.severity is Severity.CRITICAL
    assert verdict.culprit.ranks == [1]
    assert verdict.details["seq"] == 2


def test_two_rank_tie_blames_both_sides_as_an_error(tmp_path: Path) -> None:
    job = Job(world=2)
    job.collective("all_reduce", per_rank={1: {"profiling_name": "nccl:all_gather"}})
    [verdict] = collective_mismatch.detect(job_tables(job, tmp_path / "inc"))
    assert verdict.culprit.ranks == [0, 1]
    assert verdict.severity is Severity.ERROR


def test_hang_culprit_is_the_dumped_rank_not_the_dumpless_ones(tmp_path: Path) -> None:
    # Rank 6 skips default all_reduce #4; ranks 3-5 left no dump (unknown, not culprits).
    job = _dp_job(8, [[0, 2, 4, 6], [1, 3, 5, 7]], steps=3)
    for members in ([0, 2, 4, 6], [1, 3, 5, 7]):
        job.collective(
            "all_gather_into_tensor",
            group="1" if 0 in members else "2",
            sizes=[[8]],
            out_sizes=[[4, 8]],
            state="scheduled",
            retired=True,
        )
    job.collective("all_reduce", ranks=[0, 1, 2, 3, 4, 5, 7], sizes=[[1]], state="scheduled", retired=False)
    tables = job_tables(job, tmp_path / "inc", ranks=[0, 1, 2, 6, 7], pg_config="broken")
    [verdict] = collective_hang.detect(tables)
    assert verdict.culprit.ranks == [6]
    assert verdict.details["seq"] == 4
    assert verdict.details["waiting_ranks"] == [0, 1, 2, 7]
    assert verdict.details["unknown_ranks"] == [3, 4, 5]
    assert "no dump from ranks 3–5 of group 0:default_pg" in " ".join(verdict.missing_evidence)
    assert collective_mismatch.detect(tables) == []


def test_dead_highest_rank_in_subgroup_world_from_subgroups(tmp_path: Path) -> None:
    # tp groups [0,1,2] and [3,4,5]; rank 5 dies before tp #4 and leaves no dump; no manifest.
    job = Job(world=6, backend="gloo")
    job.group("1", "tp", [0, 1, 2])
    job.group("2", "tp", [3, 4, 5])
    for step in range(4):
        last = step == 3
        for name, members in (("1", [0, 1, 2]), ("2", [3, 4, 5])):
            ranks = [r for r in members if not (last and r == 5)]
            job.collective(
                "all_reduce", group=name, ranks=ranks, state="scheduled", retired=not (last and name == "2")
            )
        if not last:
            job.collective("all_reduce", sizes=[[2]], state="scheduled", retired=True)
        else:
            job.collective("all_reduce", ranks=[0, 1, 2], sizes=[[2]], state="scheduled", retired=False)
    tables = job_tables(job, tmp_path / "inc", ranks=[0, 1, 2, 3, 4], pg_config="broken")
    groups = {k: list(r) for k, r in tables.df("fr_groups").select("group_key", "ranks").iter_rows()}
    assert groups["0[0-5]"] == [0, 1, 2, 3, 4, 5]
    [verdict] = collective_hang.detect(tables)
    assert verdict.culprit.ranks == [5]
    assert verdict.details["group_key"] == "2[3-4]"
    assert "group 2:tp (ranks 3–5, 5 inferred)" in verdict.title


def test_dumped_culprit_in_cycle_beats_dumpless_rank(tmp_path: Path) -> None:
    # dp [1,3,5,7] waits for rank 3, which went on to the default all_reduce; rank 2 left no dump.
    job = Job(world=8, backend="gloo")
    job.group("1", "dp", [0, 2, 4, 6])
    job.group("2", "dp", [1, 3, 5, 7])
    for _ in range(2):
        job.collective("all_reduce", group="1", state="scheduled", retired=True)
        job.collective("all_reduce", group="2", state="scheduled", retired=True)
        job.collective("all_reduce", sizes=[[1]], state="scheduled", retired=True)
    job.collective("all_reduce", group="1", state="scheduled", retired=True)
    job.collective("all_reduce", group="2", ranks=[1, 5, 7], state="scheduled", retired=False)
    job.collective("all_reduce", ranks=[0, 2, 3, 4, 6], sizes=[[1]], state="scheduled", retired=False)
    tables = job_tables(job, tmp_path / "inc", ranks=[0, 1, 3, 4, 5, 6, 7], pg_config="broken")
    [verdict] = collective_hang.detect(tables)
    assert verdict.culprit.ranks == [3]
    assert verdict.details["group_key"] == "2[1,3,5,7]"


def test_group_stalled_on_unnamed_member_does_not_blame_its_waiters(tmp_path: Path) -> None:
    # As above but the two groups have different descs: nothing tells the world has 6 ranks.
    # Ranks 3, 4 wait in group 2 (past its first collective, so ranks 0-2 are no members of it):
    # they are victims, not the culprits of the default group's hang.
    job = Job(world=6, backend="gloo")
    job.group("1", "tp_a", [0, 1, 2])
    job.group("2", "tp_b", [3, 4, 5])
    for step in range(4):
        last = step == 3
        for name, members in (("1", [0, 1, 2]), ("2", [3, 4, 5])):
            ranks = [r for r in members if not (last and r == 5)]
            job.collective(
                "all_reduce", group=name, ranks=ranks, state="scheduled", retired=not (last and name == "2")
            )
        if not last:
            job.collective("all_reduce", sizes=[[2]], state="scheduled", retired=True)
        else:
            job.collective("all_reduce", ranks=[0, 1, 2], sizes=[[2]], state="scheduled", retired=False)
    tables = job_tables(job, tmp_path / "inc", ranks=[0, 1, 2, 3, 4], pg_config="broken")
    [verdict] = collective_hang.detect(tables)
    assert verdict.culprit.ranks == []
    assert verdict.details["group_key"] == "2[3-4]"
    assert verdict.title.startswith("Collective hang: group 2:tp_b (2[3-4]) waits in gloo:all_reduce #4")
