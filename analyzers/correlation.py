"""Correlation and ranking: one causal chain across layers, one root cause (docs/correlation.md).

Detectors each see one layer. This stage links their verdicts with a small set of causal rules
(a fault on the culprit rank's GPU, host or NIC explains that rank's hang; a hang explains the
watchdog timeouts; an IB flap on host H explains NCCL transport errors naming H …), gives every
verdict a role, picks the root cause consistent with the flight-recorder and stack picture, and
states the confidence honestly: ``full`` only when two independent sources agree on the culprit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .detectors.common import rank_pids_by_host
from .ingest.manifest import Manifest
from .report import Confidence, Role, Severity, Verdict, assign_ids, identity_ref, iso_utc, ranks_text
from .tables import Tables

# Faults of a GPU, host, NIC or link: they can start an incident on their own.
HARDWARE = (
    "gpu-fell-off-bus",
    "gpu-memory-ecc",
    "nvlink-fault",
    "gpu-firmware-hang",
    "gpu-row-remap",
    "pcie-aer",
    "ib-link-flap",
    "host-oom-kill",
    "gpu-app-fault",
    "gpu-throttle",
)
# What a rank's own program was doing wrong.
PROGRAM = (
    "process-crash",
    "cuda-oom",
    "storage-stall",
    "input-stall",
    "gil-contention",
    "rendezvous-failure",
)
# What the collectives show.
COLLECTIVE = ("collective-mismatch", "collective-hang", "collective-stall", "slow-rank", "stack-outlier")
# Consequences unless nothing explains them.
SYMPTOMS = ("watchdog-timeout", "collective-timeout", "nccl-transport-error")
CONTEXT = ("config-drift",)

# Lower is a better root explanation when several are consistent with the picture.
ROOT_PREFERENCE = {
    pattern: index for index, pattern in enumerate((*HARDWARE, *PROGRAM, *COLLECTIVE, *CONTEXT, *SYMPTOMS))
}
# Patterns whose culprit ranks define "the lagging ranks" of the incident.
PICTURE = ("collective-hang", "collective-mismatch", "stack-outlier", "slow-rank")
# Hardware faults that kill or wedge the rank's GPU/process outright.
DEVICE_LOSS = ("gpu-fell-off-bus", "gpu-firmware-hang", "gpu-memory-ecc", "host-oom-kill", "nvlink-fault")


@dataclass
class Correlation:
    """Ranked verdicts plus the incident-level conclusions."""

    verdicts: list[Verdict]
    root_cause: str | None = None
    window_start_ns: int | None = None
    window_end_ns: int | None = None
    notes: list[str] = field(default_factory=list)
    summary: str | None = None


@dataclass
class _Node:
    verdict: Verdict
    ranks: set[int]
    hosts: set[str]
    sources: set[str]
    rank_unknown: bool
    explains: list[_Node] = field(default_factory=list)
    explained_by: list[_Node] = field(default_factory=list)

    @property
    def pattern(self) -> str:
        return self.verdict.pattern

    @property
    def start(self) -> int:
        v = self.verdict
        return v.window_start_ns if v.window_start_ns is not None else 2**63 - 1


def correlate(verdicts: list[Verdict], tables: Tables, manifest: Manifest) -> Correlation:
    """Place verdicts in one causal chain and pick the root cause."""
    host_of_rank = _host_of_rank(tables, manifest)
    rank_pids = rank_pids_by_host(tables)
    nodes = [_node(v, host_of_rank, rank_pids) for v in verdicts]
    for cause in nodes:
        for effect in nodes:
            if cause is not effect and _explains(cause, effect):
                cause.explains.append(effect)
                effect.explained_by.append(cause)
    _break_cycles(nodes)
    root = _pick_root(nodes)
    notes: list[str] = []
    _assign_roles(nodes, root)
    if root is not None:
        _set_confidence(root, tables, host_of_rank)
    for node in nodes:
        node.verdict.explains = [identity_ref(e.verdict) for e in node.explains]
    ordered = assign_ids(verdicts)
    window_start, window_end = _window(nodes, root)
    stall = _stall_estimate(nodes)
    if stall is not None:
        notes.append(f"estimated stall start (first watchdog fire minus its timeout): {iso_utc(stall)}")
    summary = _summary(root) if root is not None else None
    return Correlation(
        verdicts=ordered,
        root_cause=root.verdict.id if root is not None else None,
        window_start_ns=window_start,
        window_end_ns=window_end,
        notes=notes,
        summary=summary,
    )


def _host_of_rank(tables: Tables, manifest: Manifest) -> dict[int, str]:
    mapping = {spec.rank: spec.host for spec in manifest.ranks if spec.host}
    if tables.has("identity"):
        for row in tables.df("identity").select("rank", "host").iter_rows():
            rank, host = row
            if rank is not None and host is not None:
                mapping.setdefault(int(rank), str(host))
    return mapping


def _node(verdict: Verdict, host_of_rank: dict[int, str], rank_pids: dict[str, set[int]]) -> _Node:
    ranks = set(verdict.culprit.ranks)
    hosts = set(verdict.culprit.hosts) | {g.host for g in verdict.culprit.gpus if g.host}
    hosts |= {host_of_rank[r] for r in ranks if r in host_of_rank}
    sources = {e.source for e in verdict.evidence if e.source}
    rank_unknown = not ranks and bool(verdict.culprit.gpus or verdict.culprit.hosts)
    pids = set(verdict.culprit.pids)
    if rank_unknown and pids:
        known = set().union(*(rank_pids.get(h, set()) for h in hosts)) if hosts else set()
        if known and not pids & known:
            # The process is known not to be a rank (e.g. an OOM-killed helper): no link by host.
            rank_unknown = False
    return _Node(verdict, ranks, hosts, sources, rank_unknown)


def _group_of(verdict: Verdict) -> str | None:
    details = verdict.details
    for key in ("group_key", "pg_name", "group"):
        value = details.get(key)
        if value is not None:
            return str(value)
    return None


def _hits_ranks(cause: _Node, effect: _Node) -> bool:
    """The cause names one of the effect's culprit ranks, or (rank unknown) one of their hosts."""
    if cause.ranks & effect.ranks:
        return True
    return bool(cause.rank_unknown and effect.hosts and cause.hosts & effect.hosts)


def _touches_hosts(cause: _Node, effect: _Node) -> bool:
    """The cause's hosts include one of the effect's culprit or affected hosts."""
    return bool(cause.hosts & (effect.hosts | set(effect.verdict.affected.hosts)))


def _explains(cause: _Node, effect: _Node) -> bool:
    c, e = cause.pattern, effect.pattern
    if c == e:
        return False
    if e in SYMPTOMS and e != "nccl-transport-error":
        # A hang, desync, stall or device loss explains the watchdog and timeout lines of its victims.
        return c in (
            "collective-hang",
            "collective-mismatch",
            "collective-stall",
            *DEVICE_LOSS,
            "process-crash",
        )
    if c == "ib-link-flap":
        if e == "nccl-transport-error":
            return _touches_hosts(cause, effect)
        if e == "collective-stall":
            return effect.verdict.details.get("host_span") in (None, "cross-node") and _touches_hosts(
                cause, effect
            )
        return e == "collective-hang" and _hits_ranks(cause, effect)
    if c == "nvlink-fault" and e == "collective-stall":
        return effect.verdict.details.get("host_span") in (None, "intra-node") and _touches_hosts(
            cause, effect
        )
    if c == "nccl-transport-error" and e == "collective-stall":
        return _touches_hosts(cause, effect) or not cause.hosts
    if c in HARDWARE or c in PROGRAM:
        if e in ("collective-hang", "stack-outlier", "slow-rank", "process-crash", "collective-stall"):
            if e == "process-crash" and c not in (
                "host-oom-kill",
                "cuda-oom",
                "gpu-fell-off-bus",
                "gpu-memory-ecc",
            ):
                return False
            return _hits_ranks(cause, effect)
        return False
    if c == "collective-mismatch" and e in ("collective-hang", "stack-outlier"):
        group = _group_of(cause.verdict)
        return group is None or group == _group_of(effect.verdict) or bool(cause.ranks & effect.ranks)
    if c == "collective-hang" and e == "stack-outlier":
        return bool(cause.ranks & effect.ranks)
    return False


def _break_cycles(nodes: list[_Node]) -> None:
    """Mutual links (A explains B and B explains A) keep only the direction of the better root."""
    for node in nodes:
        for other in list(node.explains):
            if node in other.explains:
                keep_forward = (ROOT_PREFERENCE.get(node.pattern, 99), node.start) <= (
                    ROOT_PREFERENCE.get(other.pattern, 99),
                    other.start,
                )
                loser, winner = (other, node) if keep_forward else (node, other)
                if winner in loser.explains:
                    loser.explains.remove(winner)
                    winner.explained_by.remove(loser)


def _reachable(node: _Node) -> list[_Node]:
    seen: list[_Node] = []
    stack = [node]
    while stack:
        current = stack.pop()
        for child in current.explains:
            if child not in seen and child is not node:
                seen.append(child)
                stack.append(child)
    return seen


def _pick_root(nodes: list[_Node]) -> _Node | None:
    """The earliest initiating verdict consistent with the flight-recorder / stack picture."""
    serious = [n for n in nodes if n.verdict.severity.at_least(Severity.WARNING)]
    if not serious:
        return None
    picture = [n for n in serious if n.pattern in PICTURE and n.ranks]
    candidates = [
        n for n in serious if not any(p.verdict.severity.at_least(Severity.WARNING) for p in n.explained_by)
    ]
    if picture:
        # Only causes connected to the lagging ranks can be root; other hardware noise is a finding.
        consistent = [n for n in candidates if n in picture or any(p in _reachable(n) for p in picture)]
        if consistent:
            candidates = consistent
    else:
        errors = [n for n in candidates if n.verdict.severity.at_least(Severity.ERROR)]
        candidates = errors or candidates
    if not candidates:
        return None

    def rank(node: _Node) -> tuple[int, int, int, int, str, str]:
        reach = len(_reachable(node))
        return (
            ROOT_PREFERENCE.get(node.pattern, 99),
            node.start,
            node.verdict.severity.rank,
            -reach,
            node.pattern,
            node.verdict.key,
        )

    symptoms_only = all(n.pattern in SYMPTOMS for n in candidates)
    best = min(candidates, key=rank)
    if symptoms_only and not best.verdict.severity.at_least(Severity.ERROR):
        return None
    return best


def _assign_roles(nodes: list[_Node], root: _Node | None) -> None:
    chain = set(map(id, _reachable(root))) if root is not None else set()
    root_ranks = root.ranks if root is not None else set()
    root_hosts = root.hosts if root is not None else set()
    for node in nodes:
        verdict = node.verdict
        if node is root:
            verdict.role = Role.ROOT
        elif id(node) in chain:
            consequence = node.pattern in (*SYMPTOMS, "collective-hang", "collective-stall", "process-crash")
            verdict.role = Role.SYMPTOM if consequence else Role.CONTRIBUTING
        elif (
            root is not None
            and ((node.ranks & root_ranks) or (node.rank_unknown and node.hosts & root_hosts))
            and verdict.severity.at_least(Severity.WARNING)
        ):
            verdict.role = Role.CONTRIBUTING
        elif node.pattern in SYMPTOMS and any(p.verdict.role is not Role.FINDING for p in node.explained_by):
            verdict.role = Role.SYMPTOM
        else:
            verdict.role = Role.FINDING


def _set_confidence(root: _Node, tables: Tables, host_of_rank: dict[int, str]) -> None:
    """``full`` when a second, independent source agrees on the culprit; else say what would confirm it."""
    verdict = root.verdict
    agreeing = set(root.sources)
    for effect in _reachable(root):
        if effect.ranks & root.ranks or (root.rank_unknown and effect.hosts & root.hosts):
            agreeing |= effect.sources
    if len(agreeing) >= 2:
        verdict.confidence = Confidence.FULL
        return
    verdict.confidence = Confidence.PARTIAL
    if root.pattern in COLLECTIVE:
        for rank in sorted(root.ranks):
            if not _has_stacks(tables, rank):
                verdict.missing_evidence.append(f"py-spy dump of rank {rank} (what it was doing instead)")
        for host in sorted({host_of_rank[r] for r in root.ranks if r in host_of_rank}):
            if not _has_kernel_log(tables, host):
                verdict.missing_evidence.append(f"kernel log of host {host} (GPU, PCIe, NIC or OOM events)")
        if any(r not in host_of_rank for r in root.ranks):
            verdict.missing_evidence.append(
                "host of the culprit rank(s): add [[ranks]] to incident.toml or NCCL INFO logs"
            )


def _has_stacks(tables: Tables, rank: int) -> bool:
    if not tables.has("stacks"):
        return False
    import polars as pl

    return tables.df("stacks").filter(pl.col("rank") == rank).height > 0


def _has_kernel_log(tables: Tables, host: str) -> bool:
    if not tables.has("kernel_events"):
        return False
    import polars as pl

    return tables.df("kernel_events").filter(pl.col("host") == host).height > 0


def _window(nodes: list[_Node], root: _Node | None) -> tuple[int | None, int | None]:
    relevant: Iterable[_Node] = nodes
    if root is not None:
        relevant = [root, *_reachable(root)]
    starts = [n.verdict.window_start_ns for n in relevant if n.verdict.window_start_ns is not None]
    ends = [n.verdict.window_end_ns or n.verdict.window_start_ns for n in relevant]
    known_ends = [e for e in ends if e is not None]
    return (min(starts) if starts else None, max(known_ends) if known_ends else None)


def _stall_estimate(nodes: list[_Node]) -> int | None:
    estimates = []
    for node in nodes:
        if node.pattern == "watchdog-timeout":
            first = node.verdict.details.get("first_ts_ns") or node.verdict.window_start_ns
            timeout = node.verdict.details.get("timeout_ms")
            if isinstance(first, int) and isinstance(timeout, int):
                estimates.append(first - timeout * 1_000_000)
    return min(estimates) if estimates else None


def _summary(root: _Node) -> str:
    """One sentence: the root, then what it caused."""
    parts = [root.verdict.title.rstrip(".")]
    consequences = [
        n
        for n in _reachable(root)
        if n.pattern in ("collective-hang", "collective-stall", "watchdog-timeout")
    ]
    for node in sorted(consequences, key=lambda n: (n.start, n.pattern)):
        if node.pattern == "watchdog-timeout" and node.verdict.affected.ranks:
            parts.append(f"the watchdog then fired on ranks {ranks_text(node.verdict.affected.ranks)}")
        elif node.pattern != "watchdog-timeout":
            parts.append(_lower_first(node.verdict.title.rstrip(".")))
    return "; ".join(parts)


def _lower_first(text: str) -> str:
    """``Collective hang: …`` → ``collective hang: …`` (acronyms such as ``GPU`` stay)."""
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        return text[0].lower() + text[1:]
    return text
