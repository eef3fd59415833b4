"""Correlation and ranking: roles, causal links, the root cause and the incident window.

(Foundation version: roles come from each pattern's default place in a causal chain; the
cross-layer rules of docs/correlation.md build on this.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .ingest.manifest import Manifest
from .report import Role, Severity, Verdict, assign_ids
from .tables import Tables

# Patterns that are consequences of something else unless nothing explains them.
SYMPTOM_PATTERNS = frozenset({"watchdog-timeout", "collective-timeout"})
# Patterns that can start an incident.
INITIATING_PATTERNS = frozenset(
    {
        "gpu-fell-off-bus",
        "gpu-memory-ecc",
        "gpu-row-remap",
        "nvlink-fault",
        "gpu-firmware-hang",
        "gpu-app-fault",
        "pcie-aer",
        "ib-link-flap",
        "host-oom-kill",
        "process-crash",
        "storage-stall",
        "input-stall",
        "gil-contention",
        "cuda-oom",
        "rendezvous-failure",
        "collective-mismatch",
        "collective-hang",
        "collective-stall",
        "slow-rank",
        "gpu-throttle",
        "stack-outlier",
        "nccl-transport-error",
        "config-drift",
    }
)


@dataclass
class Correlation:
    """Ranked verdicts plus the incident-level conclusions."""

    verdicts: list[Verdict]
    root_cause: str | None = None
    window_start_ns: int | None = None
    window_end_ns: int | None = None
    notes: list[str] = field(default_factory=list)


def correlate(verdicts: list[Verdict], tables: Tables, manifest: Manifest) -> Correlation:
    """Place verdicts in the causal chain and pick the root cause."""
    candidates = [
        v for v in verdicts if v.pattern in INITIATING_PATTERNS and v.severity.at_least(Severity.ERROR)
    ]
    root = min(
        candidates,
        key=lambda v: (v.severity.rank, v.window_start_ns or 2**63 - 1, v.pattern, v.key),
        default=None,
    )
    for verdict in verdicts:
        if verdict is root:
            verdict.role = Role.ROOT
        elif verdict.pattern in SYMPTOM_PATTERNS:
            verdict.role = Role.SYMPTOM
        elif verdict.severity.at_least(Severity.ERROR) and root is not None:
            verdict.role = Role.CONTRIBUTING
        else:
            verdict.role = Role.FINDING
    ordered = assign_ids(verdicts)
    starts = [v.window_start_ns for v in ordered if v.window_start_ns is not None]
    ends = [v.window_end_ns or v.window_start_ns for v in ordered]
    ends_known = [e for e in ends if e is not None]
    return Correlation(
        verdicts=ordered,
        root_cause=root.id if root is not None else None,
        window_start_ns=min(starts) if starts else None,
        window_end_ns=max(ends_known) if ends_known else None,
    )
