"""Helpers shared by the kernel-log detectors: row selection, GPU identity, DCGM corroboration."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from .. import dcgm_signals
from ..report import Confidence, Culprit, Evidence, GpuRef
from ..tables import Tables
from ..xid_catalog import action_of, lookup
from .common import GpuIdentity, evidence_from_row, identity_for_pci, identity_for_pid

SOURCE = "kernel_log"


def attrs_of(row: dict[str, Any]) -> dict[str, str]:
    """The ``attrs`` map of a kernel_events row as a dict."""
    value = row.get("attrs")
    if not value:
        return {}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    return {str(item["key"]): str(item["value"]) for item in value if item.get("value") is not None}


def kernel_rows(
    tables: Tables, kinds: Iterable[str], xids: Iterable[int] | None = None
) -> list[dict[str, Any]]:
    """kernel_events rows of these kinds (and Xid codes), in file/line order, with attrs as dicts."""
    if not tables.has("kernel_events"):
        return []
    kinds = list(kinds)
    frame = tables.df("kernel_events")
    if "other" not in kinds:
        frame = _classified(frame)
    frame = frame.filter(pl.col("kind").is_in(kinds))
    if xids is not None:
        frame = frame.filter(pl.col("xid").is_in(list(xids)))
    rows = frame.sort("source_file", "source_line").to_dicts()
    for row in rows:
        row["attrs"] = attrs_of(row)
    return rows


# (kernel_events frame, its classified rows): every kernel detector asks for a few kinds, and
# "other" lines are nearly all of a large log, so the table is scanned once per analysis, not once
# per detector. Keyed by the frame object itself (Tables caches it), so a new analysis rebuilds it.
_CLASSIFIED: list[tuple[pl.DataFrame, pl.DataFrame]] = []


def _classified(frame: pl.DataFrame) -> pl.DataFrame:
    """The rows of ``frame`` whose kind is not ``other`` (cached for the same frame object)."""
    if _CLASSIFIED and _CLASSIFIED[0][0] is frame:
        return _CLASSIFIED[0][1]
    classified = frame.filter(pl.col("kind") != "other")
    _CLASSIFIED[:] = [(frame, classified)]
    return classified


def order_key(row: dict[str, Any]) -> tuple[int, str, int]:
    """Time order when known, then file order."""
    ts = row.get("ts_ns")
    return (ts if ts is not None else 2**62, str(row.get("source_file")), int(row.get("source_line") or 0))


def evidence(row: dict[str, Any]) -> Evidence:
    """Evidence citing the row's file and line, noting collapsed repeats."""
    count = row.get("count") or 1
    text = str(row.get("message") or "")
    if count > 1:
        text = f"{text} (×{count})"
    return evidence_from_row(SOURCE, row, text)


@dataclass
class GpuContext:
    """What is known about the GPU a kernel line names."""

    host: str | None
    pci_bus_id: str | None
    identity: GpuIdentity | None
    missing: list[str] = field(default_factory=list)

    @property
    def rank(self) -> int | None:
        """Rank using the GPU, when the identity table says so."""
        return self.identity.rank if self.identity else None

    def culprit(self, links: Sequence[str] = ()) -> Culprit:
        """The GPU as a verdict's culprit: its rank (when mapped), host and GPU reference."""
        return Culprit(
            ranks=[self.rank] if self.rank is not None else [],
            hosts=[self.host] if self.host else [],
            gpus=[self.gpu],
            links=list(links),
        )

    @property
    def gpu_index(self) -> int | None:
        """GPU index on its host, when known."""
        return self.identity.gpu_index if self.identity else None

    @property
    def gpu(self) -> GpuRef:
        """Verdict GPU reference."""
        if self.identity:
            ref = self.identity.gpu
            return GpuRef(
                host=ref.host or self.host, index=ref.index, pci_bus_id=self.pci_bus_id, uuid=ref.uuid
            )
        return GpuRef(host=self.host, index=None, pci_bus_id=self.pci_bus_id, uuid=None)

    @property
    def rank_assumed(self) -> bool:
        """True when the rank link is a convention rather than a stated fact."""
        return bool(self.identity and self.identity.assumptions)


def gpu_context(tables: Tables, host: str | None, pci: str | None, uuid: str | None = None) -> GpuContext:
    """Identity of the GPU at ``pci`` on ``host``; says what is missing when it cannot be mapped."""
    identity = identity_for_pci(tables, host, pci)
    missing: list[str] = []
    if pci is None:
        missing.append(f"the kernel line names no PCI address on host {host}; GPU and rank unknown")
    elif identity is None:
        missing.append(
            f"PCI {pci} on host {host} is not mapped to a GPU index or rank "
            "(no manifest pci_bus_id, NCCL init busId or DCGM label for it)"
        )
    elif identity.rank is None:
        missing.append(f"GPU {pci} on host {host} is known but no rank is mapped to it")
    return GpuContext(host, pci, identity, missing)


def pid_rank(tables: Tables, host: str | None, pid: int | None, row_rank: int | None = None) -> int | None:
    """Rank of process ``pid`` (row's own rank first, then the identity table)."""
    if row_rank is not None:
        return int(row_rank)
    identity = identity_for_pid(tables, host, pid)
    return identity.rank if identity else None


def dcgm_deltas(tables: Tables, fields: list[str]) -> pl.DataFrame:
    """Counter deltas > 0 for ``fields`` (empty when DCGM is absent)."""
    frame = dcgm_signals.counter_deltas(tables, fields)
    if frame.height == 0:
        return frame
    return frame.filter(pl.col("delta") > 0)


def dcgm_latest(tables: Tables, fields: list[str]) -> pl.DataFrame:
    """Latest values for ``fields`` (empty when DCGM is absent)."""
    return dcgm_signals.latest_values(tables, fields)


def same_gpu(frame: pl.DataFrame, host: str | None, pci: str | None, gpu_index: int | None) -> pl.DataFrame:
    """Rows of a DCGM signal frame about this GPU (PCI first, then host + index)."""
    if frame.height == 0:
        return frame
    cond = pl.lit(False)
    if pci is not None:
        cond = cond | (pl.col("pci_bus_id") == pci)
    if gpu_index is not None:
        cond = cond | ((pl.col("gpu_index") == gpu_index) & (pl.col("host") == host))
    frame = frame.filter(cond)
    if host is not None:
        frame = frame.filter(pl.col("host").is_null() | (pl.col("host") == host))
    return frame


def dcgm_evidence(row: dict[str, Any], text: str) -> Evidence:
    """Evidence citing a DCGM signal row."""
    line = row.get("source_line")
    return Evidence(
        source="dcgm",
        file=str(row.get("source_file") or ""),
        line=int(line) if line is not None else None,
        excerpt=text,
    )


def corroborate(
    dcgm: pl.DataFrame,
    evidence_list: list[Evidence],
    missing: list[str],
    absent: str | None,
    text: str | None = None,
) -> Confidence:
    """Confidence of a kernel finding given the DCGM rows of the same GPU.

    With a row, it joins ``evidence_list`` (``text``, by default the counter's rise) and the
    finding has two independent sources (full); without, ``absent`` (when given) is noted as
    missing evidence and confidence stays partial.
    """
    if dcgm.height:
        row = dcgm.row(0, named=True)
        evidence_list.append(dcgm_evidence(row, text or f"{row['field']} rose by {row['delta']:g}"))
        return Confidence.FULL
    if absent is not None:
        missing.append(absent)
    return Confidence.PARTIAL


def xid_action(code: int | None) -> str:
    """NVIDIA's recommended action for an Xid."""
    return action_of(code)


def xid_bucket(code: int | None) -> str:
    """NVIDIA's immediate-resolution bucket for an Xid ('' when unknown)."""
    entry = lookup(code)
    return entry.immediate if entry else ""


def window(rows: list[dict[str, Any]]) -> tuple[int | None, int | None]:
    """(first ts, last ts) over rows, using last_ts_ns of collapsed rows."""
    starts = [r["ts_ns"] for r in rows if r.get("ts_ns") is not None]
    ends: list[int] = [
        int(r.get("last_ts_ns") or r["ts_ns"])
        for r in rows
        if (r.get("last_ts_ns") or r.get("ts_ns")) is not None
    ]
    return (min(starts) if starts else None, max(ends) if ends else None)


def total_count(rows: list[dict[str, Any]]) -> int:
    """Lines represented by rows (collapsed floods count every line)."""
    return int(sum(int(r.get("count") or 1) for r in rows))


def group_by_gpu(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Rows grouped by (host, pci_bus_id) in a deterministic order."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        key = (str(row.get("host") or ""), str(row.get("pci_bus_id") or ""))
        groups.setdefault(key, []).append(row)
    return dict(sorted(groups.items()))


def gpu_key(host: str, pci: str) -> str:
    """Stable verdict key for one GPU."""
    return f"host={host or '?'} pci={pci or '?'}"


def recovery_actions(tables: Tables, host: str | None, pci: str | None) -> list[str]:
    """Xid 154 recovery actions reported for this GPU."""
    found = []
    for row in kernel_rows(tables, ["xid"], [154]):
        if row.get("host") == host and row.get("pci_bus_id") == pci:
            action = row["attrs"].get("recovery_action")
            if action:
                found.append(action)
    return found


def cascades(tables: Tables, host: str | None, codes: Iterable[int]) -> list[dict[str, Any]]:
    """Xid 45 rows on ``host`` that name one of ``codes`` as their cause ("caused by previous Xid N").

    Xid 45 is never a root cause; the fault it names takes the processes it lists with it.
    """
    wanted = {str(c) for c in codes}
    found = []
    for row in kernel_rows(tables, ["xid"], [45]):
        if row.get("host") == host and row["attrs"].get("cascade_of") in wanted:
            found.append(
                {
                    "pci_bus_id": row.get("pci_bus_id"),
                    "pid": row.get("pid"),
                    "rank": pid_rank(tables, host, row.get("pid"), row.get("rank")),
                    "cascade_of": int(row["attrs"]["cascade_of"]),
                    "source_file": row.get("source_file"),
                    "source_line": row.get("source_line"),
                }
            )
    return found
