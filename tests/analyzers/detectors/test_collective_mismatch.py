"""collective-mismatch: real gloo mismatches, and every scenario of PyTorch's analyzer test-suite.

The ``test_frtrace_*`` cases follow pytorch/pytorch test_fr_analysis.py (docs/flight-recorder.md
lists them with what tracecore reports).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers.fr_dumps import Job, job_tables
from tests.helpers.incident import ingest_serial
from tests.helpers.paths import CAPTURES, SAMPLES
from tracecore.analyzers.detectors import collective_hang
from tracecore.analyzers.detectors.collective_mismatch import detect
from tracecore.analyzers.report import Severity, Verdict

FR = SAMPLES / "flight_recorder"


def run(job: Job, tmp_path: Path, **write: Any) -> list[Verdict]:
    return detect(job_tables(job, tmp_path / "inc", **write))


def warmup(job: Job, n: int = 2) -> None:
    for _ in range(n):
        job.collective("all_reduce")


# -- real dumps ---------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["pickle", "json", "pickle_pgfixed"])
def test_size_mismatch_sample(variant: str) -> None:
    [verdict] = detect(ingest_serial(FR / "size_mismatch_allreduce" / variant).tables)
    assert verdict.severity is Severity.CRITICAL
    assert verdict.culprit.ranks == [2]
    d = verdict.details
    assert (d["group_key"], d["seq"], d["mismatch_kind"], d["majority_ranks"]) == (
        "0[0-3]",
        5,
        "size",
        [0, 1, 3],
    )
    assert d["facts"]["found"]["2"]["input_sizes"] == [[5, 4]]
    assert d["facts"]["expected"]["input_sizes"] == [[4, 4]]


@pytest.mark.parametrize(
    ("scenario", "culprit", "kind", "op"),
    [
        ("dtype_mismatch_ws4_r1", 1, "dtype", "gloo:all_reduce"),
        ("optype_mismatch_ws4_r0", 0, "op_type", "gloo:all_reduce"),
        ("size_mismatch_ws5_r3", 3, "size", "gloo:all_gather"),
    ],
)
@pytest.mark.parametrize("variant", ["pickle", "json"])
def test_captured_mismatches(scenario: str, culprit: int, kind: str, op: str, variant: str) -> None:
    [verdict] = detect(ingest_serial(CAPTURES / "fr" / scenario / variant).tables)
    assert verdict.culprit.ranks == [culprit]
    assert (verdict.details["mismatch_kind"], verdict.details["seq"], verdict.details["op"]) == (kind, 5, op)


def test_call_site_divergence_in_real_capture() -> None:
    [verdict] = detect(ingest_serial(CAPTURES / "fr" / "extra_call_desync_ws4_r0" / "pickle").tables)
    assert verdict.culprit.ranks == [0]
    assert verdict.severity is Severity.ERROR
    d = verdict.details
    assert (d["mismatch_kind"], d["seq"], d["group_key"]) == ("call_site", 6, "0[0-3]")
    assert "log_metric_sync" in d["facts"]["found_call_site"]["0"]
    assert "grad_sync" in d["facts"]["expected_call_site"]


@pytest.mark.parametrize(
    "path",
    [
        FR / "healthy" / "pickle",
        FR / "p2p" / "json",
        FR / "missing_rank_hang" / "pickle",
        CAPTURES / "fr" / "healthy_ws8" / "pickle",
        CAPTURES / "fr" / "coalesced_ws4" / "pickle",
        CAPTURES / "fr" / "ring_wrap_healthy_skew_ws4" / "pickle",
    ],
)
def test_no_mismatch_on_real_dumps(path: Path) -> None:
    assert detect(ingest_serial(path).tables) == []


# -- torchfrtrace test-suite scenarios ---------------------------------------------------------


def test_frtrace_identical_all_reduce_matches(tmp_path: Path) -> None:
    job = Job(world=2)
    job.collective("all_reduce")
    assert run(job, tmp_path) == []


def test_frtrace_type_mismatch_majority(tmp_path: Path) -> None:
    job = Job(world=4)
    warmup(job)
    job.collective("all_reduce", per_rank={2: {"profiling_name": "nccl:all_gather"}})
    [verdict] = run(job, tmp_path)
    assert verdict.culprit.ranks == [2]
    assert verdict.details["mismatch_kind"] == "op_type"


def test_frtrace_type_mismatch_two_ranks_has_no_majority(tmp_path: Path) -> None:
    job = Job(world=2)
    job.collective("all_reduce", per_rank={1: {"profiling_name": "nccl:all_gather"}})
    [verdict] = run(job, tmp_path)
    assert verdict.details["no_majority"] is True
    assert verdict.culprit.ranks == [0, 1]  # both sides are suspect; neither can be singled out
    assert "no majority" in verdict.title


def test_frtrace_odd_rank_listed_first_is_still_the_culprit(tmp_path: Path) -> None:
    # torchfrtrace blames the majority when the odd rank's file is listed first; the vote does not.
    job = Job(world=4)
    warmup(job)
    job.collective("all_reduce", per_rank={0: {"input_sizes": [[8, 4]], "output_sizes": [[8, 4]]}})
    [verdict] = run(job, tmp_path)
    assert verdict.culprit.ranks == [0]
    assert verdict.details["majority_ranks"] == [1, 2, 3]


@pytest.mark.parametrize("side", ["input_sizes", "output_sizes"])
def test_frtrace_size_mismatch_input_or_output(tmp_path: Path, side: str) -> None:
    job = Job(world=3)
    job.collective("all_reduce", per_rank={1: {side: [[5, 5]]}})
    [verdict] = run(job, tmp_path)
    assert verdict.culprit.ranks == [1]
    assert verdict.details["mismatch_kind"] == "size"


def test_frtrace_all_reduce_in_out_syntax(tmp_path: Path) -> None:
    # Every rank issues an all_reduce whose output differs from its input (same on all ranks).
    job = Job(world=2)
    job.collective("all_reduce", sizes=[[4, 4]], out_sizes=[[4, 5]])
    [verdict] = run(job, tmp_path)
    assert verdict.details["mismatch_kind"] == "size"
    assert verdict.details["facts"]["relation"] == "all_reduce: output sizes = input sizes"


def test_frtrace_state_mismatch_is_not_a_mismatch(tmp_path: Path) -> None:
    job = Job(world=3, timing=True)
    warmup(job)
    job.collective("all_reduce", state="completed", per_rank={1: {"state": "started"}})
    tables = job_tables(job, tmp_path / "inc")
    assert detect(tables) == []
    assert collective_hang.detect(tables) == []


def test_frtrace_dtype_mismatch(tmp_path: Path) -> None:
    job = Job(world=3)
    job.collective("all_reduce", per_rank={0: {"output_dtypes": ["Half"], "input_dtypes": ["Half"]}})
    [verdict] = run(job, tmp_path)
    assert verdict.culprit.ranks == [0]
    assert verdict.details["mismatch_kind"] == "dtype"


def test_frtrace_gather_non_root_empty_output_matches(tmp_path: Path) -> None:
    job = Job(world=3)
    job.collective(
        "gather",
        sizes=[[4]],
        out_sizes=[[4], [4], [4]],
        per_rank={
            1: {"output_sizes": [[]], "output_dtypes": [""]},
            2: {"output_sizes": [], "output_dtypes": []},
        },
    )
    assert run(job, tmp_path) == []


@pytest.mark.parametrize(
    ("op", "inp", "out"),
    [
        ("all_reduce", [[8]], [[8]]),
        ("allreduce_coalesced", [[8], [2]], [[8], [2]]),
        ("broadcast", [[8]], [[8]]),
        ("_broadcast_oop", [[8]], [[8]]),
        ("reduce", [[8]], [[8]]),
        ("_reduce_oop", [[8]], [[8]]),
        ("all_gather", [[8]], [[8], [8]]),
        ("_all_gather_base", [[8]], [[16]]),
        ("all_gather_into_tensor_coalesced", [[8]], [[16]]),
        ("reduce_scatter", [[8], [8]], [[8]]),
        ("_reduce_scatter_base", [[16]], [[8]]),
        ("reduce_scatter_tensor_coalesced", [[16]], [[8]]),
        ("all_to_all", [[8]], [[8]]),
        ("all_to_all_single", [[8]], [[8]]),
        ("barrier", [], []),
        ("all_reduce_barrier", [[1]], [[1]]),
        ("scatter", [[8], [8]], [[8]]),
    ],
)
def test_frtrace_every_known_collective_matches_itself(tmp_path: Path, op: str, inp: list, out: list) -> None:
    job = Job(world=2)
    job.collective(op, sizes=inp, out_sizes=out)
    assert run(job, tmp_path) == []


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("all_gather", "_all_gather_base"),
        ("all_reduce", "allreduce_coalesced"),
        ("reduce_scatter", "_reduce_scatter_base"),
        ("all_to_all", "all_to_all_single"),
    ],
)
def test_frtrace_variants_are_different_types(tmp_path: Path, a: str, b: str) -> None:
    job = Job(world=3)
    job.collective(a, sizes=[[8]], out_sizes=[[8]], per_rank={2: {"profiling_name": f"nccl:{b}"}})
    [verdict] = run(job, tmp_path)
    assert verdict.details["mismatch_kind"] == "op_type"
    assert verdict.culprit.ranks == [2]


def test_frtrace_all_gather_base_numel_relation(tmp_path: Path) -> None:
    job = Job(world=3)
    job.collective("_all_gather_base", sizes=[[8]], out_sizes=[[24]], per_rank={1: {"output_sizes": [[16]]}})
    [verdict] = run(job, tmp_path)
    assert verdict.culprit.ranks == [1]
    assert verdict.details["mismatch_kind"] == "size"


def test_frtrace_all_to_all_uneven_splits_and_totals(tmp_path: Path) -> None:
    job = Job(world=2)
    job.collective(
        "all_to_all_single",
        per_rank={
            0: {"input_sizes": [[6]], "output_sizes": [[4]]},
            1: {"input_sizes": [[2]], "output_sizes": [[4]]},
        },
    )
    assert run(job, tmp_path / "even") == []
    job = Job(world=2)
    job.collective(
        "all_to_all_single",
        per_rank={
            0: {"input_sizes": [[6]], "output_sizes": [[4]]},
            1: {"input_sizes": [[2]], "output_sizes": [[5]]},
        },
    )
    [verdict] = run(job, tmp_path / "odd")
    assert verdict.details["facts"] == {"input_total": 8, "output_total": 9}
    assert verdict.culprit.ranks == []


def test_frtrace_recv_from_any_and_p2p_sizes(tmp_path: Path) -> None:
    job = Job(world=2)
    job.p2p("send", rank=0, own_local=0, peer_local=1, size=16)
    job.p2p("recv", rank=1, own_local=1, peer_local=None, size=16)  # recv 1<-?
    assert run(job, tmp_path / "any") == []
    job = Job(world=2)
    job.p2p("send", rank=0, own_local=0, peer_local=1, size=16)
    job.p2p("recv", rank=1, own_local=1, peer_local=0, size=32)
    [verdict] = run(job, tmp_path / "bad")
    assert verdict.details["mismatch_kind"] == "p2p"
    assert verdict.details["facts"]["src"] == 0 and verdict.details["facts"]["dst"] == 1


def test_frtrace_split_groups_reusing_a_name_pass(tmp_path: Path) -> None:
    dumps = []
    for rank in (0, 1):
        job = Job(world=2, version="2.8")
        job.group("1", "sub", [rank])
        job.collective("all_reduce")
        job.collective("all_reduce", ranks=[rank], group="1")
        dumps.append((rank, job))
    root = tmp_path / "inc"
    for rank, job in dumps:
        job.write(root, ranks=[rank])
    tables = ingest_serial(root).tables
    assert detect(tables) == [] and collective_hang.detect(tables) == []


def test_frtrace_single_allreduce_coalesced_passes(tmp_path: Path) -> None:
    job = Job(world=2, version="2.8")
    job.collective("allreduce_coalesced", sizes=[[4], [2, 3]])
    assert run(job, tmp_path) == []


def test_frtrace_slow_path_coalesced_passes(tmp_path: Path) -> None:
    job = Job(world=2, version="2.8")
    job.collective("broadcast", sizes=[[4]])
    job.collective("broadcast", sizes=[[5]], same_seq=True)
    job.collective("coalesced", sizes=[], out_sizes=[], same_seq=True)
    assert run(job, tmp_path) == []


def test_frtrace_uneven_all_gather_size_difference(tmp_path: Path) -> None:
    job = Job(world=2, version="2.8")
    job.collective("_broadcast_oop", sizes=[[4, 4]])
    job.collective(
        "_broadcast_oop",
        sizes=[[4, 4]],
        same_seq=True,
        per_rank={0: {"input_sizes": [[5, 5]], "output_sizes": [[5, 5]]}},
    )
    job.collective("ALLGATHER_coalesced", sizes=[], out_sizes=[], same_seq=True)
    [verdict] = run(job, tmp_path)
    assert verdict.details["mismatch_kind"] == "size"
    assert verdict.details["seq"] == 1
    assert verdict.details["no_majority"] is True


def test_frtrace_uneven_reduce_scatter_passes(tmp_path: Path) -> None:
    job = Job(world=2, version="2.8")
    job.collective("_reduce_oop", sizes=[[4]])
    job.collective("_reduce_oop", sizes=[[4]], same_seq=True)
    job.collective("REDUCE_SCATTER_coalesced", sizes=[], out_sizes=[], same_seq=True)
    assert run(job, tmp_path) == []


def test_frtrace_coalesced_group_one_rank_never_issued(tmp_path: Path) -> None:
    # Rank 1 issued a coalesced reduce-scatter group rank 0 never issued: a hang, not a mismatch.
    job = Job(world=2, version="2.8")
    job.collective("all_reduce")
    job.collective("_reduce_oop", ranks=[1], state="scheduled")
    job.collective(
        "REDUCE_SCATTER_coalesced", ranks=[1], sizes=[], out_sizes=[], same_seq=True, state="scheduled"
    )
    tables = job_tables(job, tmp_path / "inc")
    assert detect(tables) == []
    [hang] = collective_hang.detect(tables)
    assert hang.culprit.ranks == [0]
    assert hang.details["seq"] == 2


def test_frtrace_hook_shaped_traces(tmp_path: Path) -> None:
    # nccl2 hook recorder: in-place all_reduce, list-form all_gather / reduce_scatter.
    job = Job(world=2, backend="nccl2")
    job.collective("all_reduce", sizes=[[8]])
    job.collective("all_gather", sizes=[[8]], out_sizes=[[8], [8]])
    job.collective("reduce_scatter", sizes=[[8], [8]], out_sizes=[[8]])
    assert run(job, tmp_path / "good") == []
    job = Job(world=2, backend="nccl2")
    job.collective("all_gather", sizes=[[8]], out_sizes=[[8], [8], [8]])
    [verdict] = run(job, tmp_path / "bad")
    assert verdict.details["mismatch_kind"] == "size"
    assert "all_gather" in verdict.details["facts"]["relation"]


# -- beyond the peer -------------------------------------------------------------------------


def test_later_sequence_numbers_are_still_analysed(tmp_path: Path) -> None:
    job = Job(world=4)
    job.collective("all_reduce", per_rank={1: {"input_sizes": [[9]], "output_sizes": [[9]]}})
    job.collective("all_reduce")
    job.collective("all_reduce", per_rank={3: {"input_dtypes": ["Int"], "output_dtypes": ["Int"]}})
    [verdict] = run(job, tmp_path)
    assert (verdict.details["seq"], verdict.culprit.ranks) == (1, [1])
    assert verdict.details["later_mismatches"] == [{"seq": 3, "kind": "dtype", "culprit_ranks": [3]}]


def test_consistent_rank_dependent_call_site_is_not_a_divergence(tmp_path: Path) -> None:
    # Rank 0 always broadcasts from its own branch: a legitimate, consistent difference.
    job = Job(world=4)
    for _ in range(5):
        job.collective("broadcast", line=120, per_rank={0: {"frames": stack_at(140)}})
    assert run(job, tmp_path) == []


def test_one_off_call_site_divergence(tmp_path: Path) -> None:
    job = Job(world=4)
    for step in range(6):
        job.collective("all_reduce", line=120, per_rank={2: {"frames": stack_at(200)}} if step == 3 else None)
    [verdict] = run(job, tmp_path)
    assert (verdict.details["mismatch_kind"], verdict.details["seq"], verdict.culprit.ranks) == (
        "call_site",
        4,
        [2],
    )


def stack_at(line: int) -> list[dict[str, Any]]:
    from tests.helpers.fr_dumps import stack

    return stack("all_reduce", line, "other_path")


def test_coalesced_call_never_matches_a_plain_one(tmp_path: Path) -> None:
    # Rank 2 issued two ops under one sequence number (a coalesced group) where the others
    # issued one: folded, its call is a list of two signatures and must not equal theirs.
    job = Job(world=3, version="2.8")
    job.collective("all_reduce", sizes=[[4]])
    job.collective("all_reduce", sizes=[[4]], ranks=[2], same_seq=True)
    [verdict] = run(job, tmp_path)
    assert verdict.culprit.ranks == [2]
    assert verdict.details["seq"] == 1
    assert verdict.details["mismatch_kind"] == "op_type"
