"""rendezvous-failure: who never joined, and transient retries that recovered stay silent."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.incident import analyze_dir, write_incident
from tests.helpers.paths import INCIDENTS
from tracecore.analyzers.report import Verdict


def rendezvous(root: Path) -> list[Verdict]:
    return [v for v in analyze_dir(root).verdicts if v.pattern == "rendezvous-failure"]


def init(host: str, pid: int, rank: int, nranks: int) -> str:
    return (
        f"{host}:{pid}:{pid} [0] NCCL INFO comm 0x55aa rank {rank} nranks {nranks} cudaDev 0 nvmlDev 0 "
        "busId 18000 commId 0x1 - Init COMPLETE\n"
    )


def test_store_alive_so_the_unreachable_client_is_blamed() -> None:
    (verdict,) = rendezvous(INCIDENTS / "app-rendezvous-unreachable")
    d = verdict.details
    assert verdict.culprit.hosts == ["node-b"] and verdict.culprit.ranks == [1]
    assert (d["joined"], d["expected"]) == (1, 2)
    assert d["reasons"] == {"timeout": 2, "unreachable": 2} and d["reason"] == "unreachable"


def test_ranks_that_never_completed_init(tmp_path: Path) -> None:
    files = {f"rank{r}.log": init("node-a", 100 + r, r, 4) for r in (0, 1, 3)}
    files["rank2.log"] = (
        "torch.distributed.elastic.rendezvous.api.RendezvousTimeoutError: rendezvous timed out\n"
    )
    (verdict,) = rendezvous(write_incident(tmp_path / "inc", files))
    assert verdict.culprit.ranks == [2] and verdict.details["never_joined_ranks"] == [2]
    assert verdict.details["world_size"] == 4


def test_refused_master_is_named(tmp_path: Path) -> None:
    line = "[W socket.cpp:663] [c10d] The client socket has failed to connect to [master-0]:29500 (errno: 111 - Connection refused).\n"
    (verdict,) = rendezvous(write_incident(tmp_path / "inc", {"w1/rank1.log": line * 3}))
    assert verdict.details["reason"] == "connection-refused" and verdict.culprit.hosts == ["master-0"]


def test_retry_that_recovered_is_silent() -> None:
    assert rendezvous(INCIDENTS / "app-healthy-nccl") == []
