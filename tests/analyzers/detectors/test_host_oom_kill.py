"""host-oom-kill: the victim pid mapped to its rank; cgroup vs global; non-rank victims are warnings."""

from __future__ import annotations

from pathlib import Path

from tests.analyzers.detectors.kernel_support import analyze, of
from tracecore.analyzers.report import Severity


def test_cgroup_oom_of_a_rank(tmp_path: Path) -> None:
    log = (
        "2026-11-27T04:55:41,679685+00:00 oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/kubepods/pod1,task_memcg=/kubepods/pod1/c1,task=pt_main_thread,pid=41002,uid=0\n"
        "2026-11-27T04:55:41,679700+00:00 Memory cgroup out of memory: Killed process 41002 (pt_main_thread) total-vm:87033376kB, anon-rss:60356340kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:169956kB oom_score_adj:0\n"
    )
    [verdict] = of(analyze(tmp_path, log), "host-oom-kill")
    assert verdict.severity == Severity.ERROR
    assert verdict.culprit.ranks == [2]
    assert verdict.culprit.pids == [41002]
    details = verdict.details
    assert (details["oom_scope"], details["constraint"], details["anon_rss_kb"]) == (
        "cgroup",
        "CONSTRAINT_MEMCG",
        60356340,
    )
    assert details["first_ts_ns"] == 1795755341679685000


def test_global_oom_of_another_process_is_a_warning(tmp_path: Path) -> None:
    log = "2026-11-27T04:55:41,679700+00:00 Out of memory: Killed process 1440763 (perl) total-vm:87033376kB, anon-rss:60356340kB, file-rss:0kB\n"
    [verdict] = of(analyze(tmp_path, log), "host-oom-kill")
    assert (verdict.severity, verdict.details["oom_scope"], verdict.culprit.ranks) == (
        Severity.WARNING,
        "global",
        [],
    )
    assert verdict.missing_evidence[0].startswith("pid 1440763 (perl) on node-1 is not mapped to a rank")


def test_silent_without_a_kill(tmp_path: Path) -> None:
    log = "2026-11-27T04:55:41,678628+00:00 python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n"
    assert of(analyze(tmp_path, log), "host-oom-kill") == []
