"""nccl-transport-error: weighted vote over the peers NCCL's completion errors name."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.incident import analyze_dir, write_incident
from tests.helpers.paths import INCIDENTS
from tracecore.analyzers.report import Verdict


def transport(root: Path) -> list[Verdict]:
    return [v for v in analyze_dir(root).verdicts if v.pattern == "nccl-transport-error"]


def warn(host: str, pid: int, peer: str, status: int) -> str:
    return (
        f"{host}:{pid}:{pid + 1} [0] transport/net_ib.cc:1696 NCCL WARN NET/IB : Got completion from peer "
        f"{peer}<44206> with status={status} opcode=129 len=65536 vendor err 129 (Recv) localGid ::ffff:10.9.9.9 "
        f"remoteGids::ffff:{peer}\n"
    )


def test_majority_names_the_host_behind_the_ip() -> None:
    (verdict,) = transport(INCIDENTS / "app-nccl-ib-peer")
    d = verdict.details
    assert verdict.culprit.hosts == ["node-d"] and verdict.culprit.ranks == [3]
    assert (d["peer"], d["peer_ip"], d["peer_mapped"]) == ("node-d", "10.0.0.14", True)
    # status=12 weighs 2, status=5 (flush) 1: node-d gets 3×2 + 3×1, node-a only 1.
    assert d["votes"] == {"10.0.0.11": 1, "10.0.0.14": 9}
    assert d["statuses"] == {"12": 3, "5": 4}
    assert d["reporter_ranks"] == [0, 1, 2, 3]
    assert verdict.title.startswith(
        "NCCL transport errors blame host node-d (10.0.0.14) (status 12: IBV_WC_RETRY_EXC_ERR)"
    )


def test_unmapped_ip_is_said_not_invented(tmp_path: Path) -> None:
    root = write_incident(
        tmp_path / "inc",
        {
            "a/rank0.log": warn("a", 10, "172.36.143.59", 12),
            "b/rank1.log": warn("b", 20, "172.36.143.59", 12),
        },
    )
    (verdict,) = transport(root)
    assert verdict.culprit.hosts == [] and verdict.culprit.links == ["ip:172.36.143.59"]
    assert verdict.details["peer_mapped"] is False
    assert any("host of IP 172.36.143.59" in m for m in verdict.missing_evidence)


def test_local_protection_error_blames_the_reporter(tmp_path: Path) -> None:
    line = (
        "H100-2:19989:20082 [1] transport/net_ib.cc:1295 NCCL WARN NET/IB : Got completion from peer "
        "fe80::966d:ae03:8b:df78%ib0<53249> with error 4, opcode 32564, len 32564, vendor err 81 (Send)\n"
    )
    root = write_incident(tmp_path / "inc", {"H100-2/rank1.log": line})
    (verdict,) = transport(root)
    assert verdict.details["blame"] == "local" and verdict.culprit.hosts == ["H100-2"]
    assert verdict.details["statuses"] == {"4": 1}


def test_silent_on_other_nccl_warnings(tmp_path: Path) -> None:
    assert transport(INCIDENTS / "app-healthy-nccl") == []
    root = write_incident(
        tmp_path / "inc",
        {
            "rank1.log": "n122-164-108:7400:7642 [1] include/alloc.h:125 NCCL WARN Cuda failure 700 "
            "'an illegal memory access was encountered'\n"
            "n122-164-108:7400:7642 [1] NCCL INFO include/alloc.h:246 -> 1\n"
        },
    )
    assert transport(root) == []
