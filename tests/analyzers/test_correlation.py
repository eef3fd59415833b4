"""Cross-layer ranking: roles, causal links, root cause and honest confidence."""

from __future__ import annotations

from tracecore.analyzers.correlation import correlate
from tracecore.analyzers.identity import build_identity
from tracecore.analyzers.ingest.manifest import Manifest, RankSpec
from tracecore.analyzers.report import (
    Affected,
    Confidence,
    Culprit,
    Evidence,
    GpuRef,
    Role,
    Severity,
    Verdict,
)
from tracecore.analyzers.tables import Tables

MANIFEST = Manifest(ranks=tuple(RankSpec(rank=r, host=f"node-{r // 4}") for r in range(8)))


def _ev(source: str) -> list[Evidence]:
    return [Evidence(source, f"{source}.log", 1, "line")]


def hang(ranks: list[int], affected: list[int]) -> Verdict:
    return Verdict(
        "collective-hang",
        f"ranks {ranks} never entered all_reduce #9",
        Severity.CRITICAL,
        key="g=0 seq=9",
        culprit=Culprit(ranks=ranks),
        affected=Affected(ranks=affected),
        evidence=_ev("flight_recorder"),
        window_start_ns=2_000,
        details={"group_key": "0", "seq": 9},
    )


def xid79(rank: int | None, host: str) -> Verdict:
    return Verdict(
        "gpu-fell-off-bus",
        "GPU fell off the bus (Xid 79)",
        Severity.CRITICAL,
        key=f"{host}",
        culprit=Culprit(
            ranks=[rank] if rank is not None else [], hosts=[host], gpus=[GpuRef(host, 2, "0000:3b:00.0")]
        ),
        evidence=_ev("kernel_log"),
        window_start_ns=1_000,
    )


def watchdog(ranks: list[int]) -> Verdict:
    return Verdict(
        "watchdog-timeout",
        "watchdog timeouts",
        Severity.ERROR,
        key="seq=9",
        affected=Affected(ranks=ranks),
        evidence=_ev("app_log"),
        window_start_ns=600_000_000_000,
        details={"timeout_ms": 600_000, "first_ts_ns": 600_000_000_000},
    )


def by_pattern(verdicts: list[Verdict]) -> dict[str, Verdict]:
    return {v.pattern: v for v in verdicts}


def test_gpu_loss_on_the_lagging_rank_is_the_root_with_full_confidence() -> None:
    result = correlate(
        [watchdog([0, 1, 2, 3, 4, 5, 7]), hang([6], [0, 1, 2, 3, 4, 5, 7]), xid79(6, "node-1")],
        Tables(),
        MANIFEST,
    )
    verdicts = by_pattern(result.verdicts)
    root = verdicts["gpu-fell-off-bus"]
    assert result.root_cause == root.id == "v1"
    assert root.role is Role.ROOT and root.confidence is Confidence.FULL
    assert verdicts["collective-hang"].role is Role.SYMPTOM
    assert verdicts["watchdog-timeout"].role is Role.SYMPTOM
    assert set(root.explains) == {verdicts["collective-hang"].id, verdicts["watchdog-timeout"].id}
    assert result.summary is not None and result.summary.startswith("GPU fell off the bus")
    assert any("estimated stall start" in note for note in result.notes)


def test_hardware_fault_on_a_victim_rank_is_only_a_finding() -> None:
    result = correlate([hang([6], [0, 1, 2, 3, 4, 5, 7]), xid79(1, "node-0")], Tables(), MANIFEST)
    verdicts = by_pattern(result.verdicts)
    assert result.root_cause == verdicts["collective-hang"].id
    assert verdicts["gpu-fell-off-bus"].role is Role.FINDING
    assert verdicts["collective-hang"].confidence is Confidence.PARTIAL


def test_gpu_with_unknown_rank_on_the_culprits_host_still_links() -> None:
    result = correlate([hang([6], [0, 1, 2, 3, 4, 5, 7]), xid79(None, "node-1")], Tables(), MANIFEST)
    verdicts = by_pattern(result.verdicts)
    assert result.root_cause == verdicts["gpu-fell-off-bus"].id
    assert verdicts["collective-hang"].id in verdicts["gpu-fell-off-bus"].explains


def test_input_stall_explains_outlier_and_hang() -> None:
    outlier = Verdict(
        "stack-outlier",
        "rank 2 is in load_batch",
        Severity.WARNING,
        key="o",
        culprit=Culprit(ranks=[2]),
        evidence=_ev("pyspy"),
    )
    stall = Verdict(
        "input-stall",
        "rank 2 stuck loading data",
        Severity.ERROR,
        key="i",
        culprit=Culprit(ranks=[2]),
        evidence=_ev("pyspy"),
    )
    result = correlate([outlier, hang([2], [0, 1, 3]), stall], Tables(), MANIFEST)
    verdicts = by_pattern(result.verdicts)
    assert result.root_cause == verdicts["input-stall"].id
    assert verdicts["input-stall"].confidence is Confidence.FULL
    assert verdicts["stack-outlier"].role is Role.CONTRIBUTING


def test_unexplained_hang_is_partial_root_listing_what_would_narrow_it() -> None:
    result = correlate([hang([3], [0, 1, 2]), watchdog([0, 1, 2])], Tables(), MANIFEST)
    root = by_pattern(result.verdicts)["collective-hang"]
    assert result.root_cause == root.id
    assert root.confidence is Confidence.PARTIAL
    assert "py-spy dump of rank 3 (what it was doing instead)" in root.missing_evidence
    assert "kernel log of host node-0 (GPU, PCIe, NIC or OOM events)" in root.missing_evidence


def test_ib_flap_explains_transport_errors_and_cross_node_stall() -> None:
    flap = Verdict(
        "ib-link-flap",
        "mlx5_0 port 1 flapped",
        Severity.ERROR,
        key="f",
        culprit=Culprit(hosts=["node-1"]),
        evidence=_ev("kernel_log"),
        window_start_ns=10,
    )
    nccl = Verdict(
        "nccl-transport-error",
        "peers name node-1",
        Severity.ERROR,
        key="n",
        culprit=Culprit(hosts=["node-1"]),
        evidence=_ev("app_log"),
        window_start_ns=20,
    )
    stall = Verdict(
        "collective-stall",
        "all ranks stuck in all_reduce",
        Severity.CRITICAL,
        key="s",
        affected=Affected(ranks=list(range(8)), hosts=["node-0", "node-1"]),
        evidence=_ev("flight_recorder"),
        details={"host_span": "cross-node"},
    )
    result = correlate([stall, nccl, flap], Tables(), MANIFEST)
    verdicts = by_pattern(result.verdicts)
    assert result.root_cause == verdicts["ib-link-flap"].id
    assert set(verdicts["ib-link-flap"].explains) >= {
        verdicts["nccl-transport-error"].id,
        verdicts["collective-stall"].id,
    }


def test_only_findings_means_no_root() -> None:
    info = Verdict(
        "gpu-row-remap", "remapped rows", Severity.INFO, key="r", culprit=Culprit(hosts=["node-0"])
    )
    result = correlate([info], Tables(), MANIFEST)
    assert result.root_cause is None and result.verdicts[0].role is Role.FINDING


def test_lone_watchdog_timeout_is_the_root_when_nothing_explains_it() -> None:
    result = correlate([watchdog([0, 1])], Tables(), MANIFEST)
    assert result.root_cause == "v1" and result.verdicts[0].role is Role.ROOT


def test_killed_process_that_is_not_a_rank_is_not_linked_by_host() -> None:
    manifest = Manifest(ranks=tuple(RankSpec(rank=r, host=f"node-{r // 4}", pid=61000 + r) for r in range(8)))
    oom = Verdict(
        "host-oom-kill",
        "OOM killer killed perl (pid 1440763) on node-0",
        Severity.WARNING,
        key="k",
        culprit=Culprit(hosts=["node-0"], pids=[1440763]),
        evidence=_ev("kernel_log"),
        window_start_ns=1_000,
    )
    identity, _ = build_identity(Tables(), manifest)  # as the pipeline does before correlating
    result = correlate([oom, hang([2], [0, 1, 3])], Tables({"identity": identity}), manifest)
    verdicts = by_pattern(result.verdicts)
    assert result.root_cause == verdicts["collective-hang"].id
    assert verdicts["host-oom-kill"].role is Role.FINDING
