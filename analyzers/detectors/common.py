"""Small helpers every detector uses: evidence from rows, identity look-ups, time windows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from ..report import Evidence, GpuRef, excerpt
from ..tables import Tables


def evidence_from_row(source: str, row: Mapping[str, Any], text: str | None = None) -> Evidence:
    """Evidence pointing at one table row (``source_file``/``source_line``), with an excerpt."""
    body = text if text is not None else str(row.get("message") or "")
    line = row.get("source_line")
    return Evidence(
        source=source,
        file=str(row.get("source_file") or ""),
        line=int(line) if line is not None else None,
        excerpt=excerpt(body),
    )


@dataclass(frozen=True)
class GpuIdentity:
    """What the identity table says about one GPU or rank; unknown parts are ``None``."""

    host: str | None
    rank: int | None
    local_rank: int | None
    gpu_index: int | None
    pci_bus_id: str | None
    gpu_uuid: str | None
    sources: tuple[str, ...] = ()
    assumptions: tuple[str, ...] = ()

    @property
    def gpu(self) -> GpuRef:
        """The GPU as a verdict reference."""
        return GpuRef(host=self.host, index=self.gpu_index, pci_bus_id=self.pci_bus_id, uuid=self.gpu_uuid)


def _identity_rows(tables: Tables) -> list[dict[str, Any]]:
    if not tables.has("identity"):
        return []
    return tables.df("identity").to_dicts()


def _as_identity(row: Mapping[str, Any]) -> GpuIdentity:
    return GpuIdentity(
        host=row.get("host"),
        rank=row.get("rank"),
        local_rank=row.get("local_rank"),
        gpu_index=row.get("gpu_index"),
        pci_bus_id=row.get("pci_bus_id"),
        gpu_uuid=row.get("gpu_uuid"),
        sources=tuple(row.get("sources") or ()),
        assumptions=tuple(row.get("assumptions") or ()),
    )


def identity_for_pci(tables: Tables, host: str | None, pci_bus_id: str | None) -> GpuIdentity | None:
    """The identity row of the GPU at ``pci_bus_id`` on ``host`` (host ignored when unknown on either side)."""
    if pci_bus_id is None:
        return None
    for row in _identity_rows(tables):
        if row.get("pci_bus_id") == pci_bus_id and (host is None or row.get("host") in (None, host)):
            return _as_identity(row)
    return None


def identity_for_rank(tables: Tables, rank: int | None) -> GpuIdentity | None:
    """The identity row of ``rank``."""
    if rank is None:
        return None
    for row in _identity_rows(tables):
        if row.get("rank") == rank:
            return _as_identity(row)
    return None


def identity_for_pid(tables: Tables, host: str | None, pid: int | None) -> GpuIdentity | None:
    """The identity row of the process ``pid`` on ``host``."""
    if pid is None:
        return None
    for row in _identity_rows(tables):
        if row.get("pid") == pid and (host is None or row.get("host") in (None, host)):
            return _as_identity(row)
    return None


def rank_pids_by_host(tables: Tables) -> dict[str, set[int]]:
    """Pids the identity table ties to a rank, per host (the manifest's pids are in it too)."""
    if not tables.has("identity"):
        return {}
    pids: dict[str, set[int]] = {}
    known = tables.df("identity").filter(
        pl.col("rank").is_not_null() & pl.col("pid").is_not_null() & pl.col("host").is_not_null()
    )
    for host, pid in known.select("host", "pid").iter_rows():
        pids.setdefault(str(host), set()).add(int(pid))
    return pids


def ranks_on_host(tables: Tables, host: str | None) -> list[int]:
    """Ranks the identity table places on ``host``."""
    if host is None:
        return []
    return sorted(
        {
            int(r["rank"])
            for r in _identity_rows(tables)
            if r.get("host") == host and r.get("rank") is not None
        }
    )


def time_window(values: Iterable[int | None]) -> tuple[int | None, int | None]:
    """(min, max) of the known values."""
    known = [v for v in values if v is not None]
    return (min(known), max(known)) if known else (None, None)


def filter_kind(tables: Tables, table: str, kinds: Iterable[str]) -> pl.DataFrame:
    """Rows of ``table`` whose ``kind`` is one of ``kinds``, in file/line order."""
    if not tables.has(table):
        return tables.df(table).clear()
    return tables.df(table).filter(pl.col("kind").is_in(list(kinds))).sort("source_file", "source_line")


def map_value(column: str, key: str) -> pl.Expr:
    """The value under ``key`` of a map column (``labels``, ``attrs``, ``locals``), or null."""
    return pl.col(column).map.get(key)
