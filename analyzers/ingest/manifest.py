"""The optional ``incident.toml`` manifest at the incident root (docs/incident-dir.md).

Every key is validated; an unknown or ill-typed key is a one-line error naming it.
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ManifestError

MANIFEST_NAME = "incident.toml"


def normalize_pci(value: str | None) -> str | None:
    """Normalise any PCI spelling to ``0000:3b:00.0`` (lower case, 4-digit domain, function).

    Accepts ``00000000:3B:00.0`` (DCGM), ``0000:3b:00`` (Xid lines, function 0 implied),
    ``3b:00.0`` (no domain) and NCCL ``busId`` integers written in hex (``63000`` = ``0000:63:00.0``).
    """
    if value is None:
        return None
    text = value.strip().lower()
    if text.startswith("pci:"):
        text = text[4:]
    match = re.fullmatch(r"(?:([0-9a-f]{1,8}):)?([0-9a-f]{1,2}):([0-9a-f]{1,2})(?:\.([0-7]))?", text)
    if match:
        domain, bus, device, function = match.groups()
        return f"{int(domain or '0', 16):04x}:{int(bus, 16):02x}:{int(device, 16):02x}.{int(function or '0')}"
    if re.fullmatch(r"[0-9a-f]{4,12}", text):
        # NCCL prints busId as the hex digits of "dddd:bb:dd.f" run together: 63000 = 0000:63:00.0.
        number = int(text, 16)
        function, device, bus, domain = (
            number & 0xF,
            (number >> 4) & 0xFF,
            (number >> 12) & 0xFF,
            number >> 20,
        )
        return f"{domain:04x}:{bus:02x}:{device:02x}.{function}"
    return None


@dataclass(frozen=True)
class RankSpec:
    """One ``[[ranks]]`` entry."""

    rank: int
    host: str | None = None
    local_rank: int | None = None
    gpu: int | None = None
    pci_bus_id: str | None = None
    pid: int | None = None
    nic: str | None = None


@dataclass(frozen=True)
class HostSpec:
    """One ``[[hosts]]`` entry: clock offset (host clock minus true time) and zone for zone-less logs."""

    name: str
    clock_offset_ms: float = 0.0
    timezone: str | None = None
    boot_time_ns: int | None = None
    pod: str | None = None


@dataclass(frozen=True)
class Manifest:
    """Parsed manifest; an absent file gives the empty manifest."""

    job_name: str | None = None
    world_size: int | None = None
    capture_time_ns: int | None = None
    year: int | None = None
    ranks: tuple[RankSpec, ...] = ()
    hosts: tuple[HostSpec, ...] = ()
    source_file: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def host(self, name: str | None) -> HostSpec | None:
        """The host entry for ``name``."""
        return next((h for h in self.hosts if h.name == name), None) if name else None

    @functools.cached_property
    def host_names(self) -> frozenset[str]:
        """Every host named in ``[[hosts]]`` or ``[[ranks]]`` (asked once per discovered file)."""
        return frozenset({h.name for h in self.hosts} | {r.host for r in self.ranks if r.host})

    def rank_for_pid(self, host: str | None, pid: int | None) -> int | None:
        """Rank whose manifest entry has this pid (and host, when both are known)."""
        if pid is None:
            return None
        for spec in self.ranks:
            if spec.pid == pid and (host is None or spec.host is None or spec.host == host):
                return spec.rank
        return None


_JOB_KEYS = {"name": str, "world_size": int, "capture_time": (str, _dt.datetime), "year": int}
_RANK_KEYS = {
    "rank": int,
    "host": str,
    "local_rank": int,
    "gpu": int,
    "pci_bus_id": str,
    "pid": int,
    "nic": str,
}
_HOST_KEYS = {
    "name": str,
    "clock_offset_ms": (int, float),
    "timezone": str,
    "boot_time": (str, _dt.datetime),
    "pod": str,
}


def load_manifest(root: Path) -> Manifest:
    """Read ``root/incident.toml`` if present; raise :class:`ManifestError` naming the bad key."""
    path = root / MANIFEST_NAME
    if not path.is_file():
        return Manifest()
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{MANIFEST_NAME}: not valid TOML: {exc}") from exc
    return parse_manifest(document, MANIFEST_NAME)


def parse_manifest(document: dict[str, Any], source: str = MANIFEST_NAME) -> Manifest:
    """Validate a decoded manifest document."""
    unknown = sorted(set(document) - {"job", "ranks", "hosts"})
    if unknown:
        raise ManifestError(f"{source}: unknown top-level key {unknown[0]!r} (expected job, ranks, hosts)")
    job = _check_table(document.get("job", {}), _JOB_KEYS, f"{source}: [job]")
    world_size = job.get("world_size")
    if world_size is not None and world_size <= 0:
        raise ManifestError(f"{source}: [job].world_size must be positive, got {world_size}")
    ranks: list[RankSpec] = []
    seen_ranks: set[int] = set()
    for index, raw in enumerate(_check_array(document.get("ranks", []), f"{source}: ranks")):
        where = f"{source}: ranks[{index}]"
        entry = _check_table(raw, _RANK_KEYS, where)
        if "rank" not in entry:
            raise ManifestError(f"{where}: missing required key 'rank'")
        if entry["rank"] < 0:
            raise ManifestError(f"{where}.rank: must be >= 0, got {entry['rank']}")
        if world_size is not None and entry["rank"] >= world_size:
            raise ManifestError(f"{where}.rank: {entry['rank']} is not below [job].world_size {world_size}")
        if entry["rank"] in seen_ranks:
            raise ManifestError(f"{where}.rank: rank {entry['rank']} listed twice")
        seen_ranks.add(entry["rank"])
        pci = entry.get("pci_bus_id")
        if pci is not None and normalize_pci(pci) is None:
            raise ManifestError(f"{where}.pci_bus_id: {pci!r} is not a PCI address like 0000:3b:00.0")
        ranks.append(
            RankSpec(
                rank=entry["rank"],
                host=entry.get("host"),
                local_rank=entry.get("local_rank"),
                gpu=entry.get("gpu"),
                pci_bus_id=normalize_pci(pci),
                pid=entry.get("pid"),
                nic=entry.get("nic"),
            )
        )
    hosts: list[HostSpec] = []
    for index, raw in enumerate(_check_array(document.get("hosts", []), f"{source}: hosts")):
        where = f"{source}: hosts[{index}]"
        entry = _check_table(raw, _HOST_KEYS, where)
        if "name" not in entry:
            raise ManifestError(f"{where}: missing required key 'name'")
        timezone = entry.get("timezone")
        if timezone is not None:
            _check_timezone(timezone, f"{where}.timezone")
        hosts.append(
            HostSpec(
                name=entry["name"],
                clock_offset_ms=float(entry.get("clock_offset_ms", 0.0)),
                timezone=timezone,
                boot_time_ns=_time_ns(entry["boot_time"], f"{where}.boot_time")
                if "boot_time" in entry
                else None,
                pod=entry.get("pod"),
            )
        )
    capture = job.get("capture_time")
    return Manifest(
        job_name=job.get("name"),
        world_size=world_size,
        capture_time_ns=_time_ns(capture, f"{source}: [job].capture_time") if capture is not None else None,
        year=job.get("year"),
        ranks=tuple(sorted(ranks, key=lambda r: r.rank)),
        hosts=tuple(hosts),
        source_file=source,
    )


def _check_array(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ManifestError(f"{where}: must be an array of tables ([[...]])")
    return value


def _check_table(value: Any, keys: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ManifestError(f"{where}: must be a table")
    for key, item in value.items():
        if key not in keys:
            raise ManifestError(f"{where}: unknown key {key!r} (expected one of {', '.join(sorted(keys))})")
        expected = keys[key]
        if isinstance(item, bool) or not isinstance(item, expected):
            kinds = expected if isinstance(expected, tuple) else (expected,)
            names = " or ".join(k.__name__ for k in kinds)
            raise ManifestError(f"{where}.{key}: expected {names}, got {type(item).__name__} {item!r}")
    return value


def _check_timezone(name: str, where: str) -> None:
    if re.fullmatch(r"(?:UTC|Z|[+-]\d{2}:?\d{2})", name):
        return
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ManifestError(f"{where}: unknown time zone {name!r}") from exc


def _time_ns(value: str | _dt.datetime, where: str) -> int:
    if isinstance(value, str):
        try:
            value = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ManifestError(f"{where}: {value!r} is not an ISO-8601 time") from exc
    if value.tzinfo is None:
        raise ManifestError(f"{where}: time must carry a zone (e.g. 2026-11-27T06:00:00Z)")
    return int(value.timestamp()) * 1_000_000_000 + value.microsecond * 1000


def tzinfo_for(name: str | None) -> _dt.tzinfo | None:
    """A tzinfo for a manifest zone name (``UTC``, ``+02:00``, ``Europe/Berlin``), or ``None``."""
    if not name:
        return None
    if name in ("UTC", "Z"):
        return _dt.UTC
    match = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", name)
    if match:
        sign = 1 if match.group(1) == "+" else -1
        return _dt.timezone(sign * _dt.timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))
    import zoneinfo

    return zoneinfo.ZoneInfo(name)
