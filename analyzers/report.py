"""The verdict and report model: the one producer of the JSON contract (docs/json-output.md).

Detectors build :class:`Verdict` objects; the correlation stage assigns roles, ``explains`` links
and deterministic ids; renderers only read :meth:`Report.to_dict`.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any

SCHEMA_VERSION = "1"


class Severity(StrEnum):
    """How bad a verdict is; ordered from worst to mildest."""

    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        """0 for critical, 3 for info: lower sorts first."""
        return _SEVERITY_ORDER[self]

    def at_least(self, threshold: Severity) -> bool:
        """True when this severity is as bad as ``threshold`` or worse."""
        return self.rank <= threshold.rank


_SEVERITY_ORDER = {Severity.CRITICAL: 0, Severity.ERROR: 1, Severity.WARNING: 2, Severity.INFO: 3}


class Confidence(StrEnum):
    """``full`` when two independent sources agree on the culprit, else ``partial``."""

    FULL = "full"
    PARTIAL = "partial"


class Role(StrEnum):
    """Place of a verdict in the incident's causal chain."""

    ROOT = "root"
    CONTRIBUTING = "contributing"
    SYMPTOM = "symptom"
    FINDING = "finding"


_ROLE_ORDER = {Role.ROOT: 0, Role.CONTRIBUTING: 1, Role.SYMPTOM: 2, Role.FINDING: 3}


@dataclass(frozen=True, order=True)
class GpuRef:
    """One GPU as precisely as the evidence names it; unknown parts stay ``None``."""

    host: str | None = None
    index: int | None = None
    pci_bus_id: str | None = None
    uuid: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"host": self.host, "index": self.index, "pci_bus_id": self.pci_bus_id, "uuid": self.uuid}


@dataclass
class Culprit:
    """What a verdict blames: ranks, hosts, GPUs, links (NIC ports, NVLinks, PCIe ports), processes."""

    ranks: list[int] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    gpus: list[GpuRef] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, every list sorted and de-duplicated."""
        return {
            "ranks": sorted(set(self.ranks)),
            "hosts": sorted(set(self.hosts)),
            "gpus": [g.to_dict() for g in sorted(set(self.gpus), key=_gpu_sort_key)],
            "links": sorted(set(self.links)),
            "pids": sorted(set(self.pids)),
        }

    def is_empty(self) -> bool:
        """True when nothing is blamed."""
        return not (self.ranks or self.hosts or self.gpus or self.links or self.pids)


def _gpu_sort_key(gpu: GpuRef) -> tuple[str, int, str, str]:
    return (gpu.host or "", -1 if gpu.index is None else gpu.index, gpu.pci_bus_id or "", gpu.uuid or "")


@dataclass
class Affected:
    """Who suffered from the fault without causing it."""

    ranks: list[int] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"ranks": sorted(set(self.ranks)), "hosts": sorted(set(self.hosts))}


@dataclass(frozen=True)
class Evidence:
    """One line or record that supports a verdict: ``file`` relative to the incident root."""

    source: str
    file: str
    line: int | None
    excerpt: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"source": self.source, "file": self.file, "line": self.line, "excerpt": self.excerpt}


MAX_EXCERPT_CHARS = 400


def excerpt(text: str, limit: int = MAX_EXCERPT_CHARS) -> str:
    """Trim evidence text to one bounded line (newlines kept out of single excerpts)."""
    flat = text.replace("\r", " ").replace("\n", " ⏎ ")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass
class Verdict:
    """One conclusion of one detector, later placed in the causal chain by correlation.

    ``key`` is a detector-chosen discriminator (e.g. ``"pg=0 seq=9"``) so that two verdicts of the
    same pattern sort and number the same way on every run.
    """

    pattern: str
    title: str
    severity: Severity
    key: str = ""
    confidence: Confidence = Confidence.PARTIAL
    role: Role = Role.FINDING
    culprit: Culprit = field(default_factory=Culprit)
    affected: Affected = field(default_factory=Affected)
    window_start_ns: int | None = None
    window_end_ns: int | None = None
    evidence: list[Evidence] = field(default_factory=list)
    missing_evidence: list[str] = field(default_factory=list)
    explains: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    @property
    def sort_key(self) -> tuple[Any, ...]:
        """Deterministic order: role, severity, start time, pattern, key, culprit."""
        start = self.window_start_ns if self.window_start_ns is not None else 2**63 - 1
        return (
            _ROLE_ORDER[self.role],
            self.severity.rank,
            start,
            self.pattern,
            self.key,
            tuple(sorted(set(self.culprit.ranks))),
            tuple(sorted(set(self.culprit.hosts))),
            self.title,
        )

    @property
    def identity(self) -> tuple[str, str]:
        """Stable identity used before ids are assigned (pattern plus key)."""
        return (self.pattern, self.key)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/json-output.md)."""
        return {
            "id": self.id,
            "pattern": self.pattern,
            "title": self.title,
            "severity": self.severity.value,
            "confidence": self.confidence.value,
            "role": self.role.value,
            "culprit": self.culprit.to_dict(),
            "affected": self.affected.to_dict(),
            "window": {"start": iso_utc(self.window_start_ns), "end": iso_utc(self.window_end_ns)},
            "evidence": [e.to_dict() for e in self.evidence],
            "missing_evidence": list(dict.fromkeys(self.missing_evidence)),
            "explains": sorted(set(self.explains), key=_verdict_id_order),
            "actions": list(dict.fromkeys(self.actions)),
            "details": _jsonable(self.details),
        }


def _verdict_id_order(verdict_id: str) -> tuple[int, str]:
    digits = verdict_id[1:]
    return (int(digits), verdict_id) if digits.isdigit() else (2**31, verdict_id)


def iso_utc(ts_ns: int | None) -> str | None:
    """ISO-8601 UTC with microseconds and a ``Z`` suffix, or ``None``."""
    if ts_ns is None:
        return None
    seconds, rem_ns = divmod(int(ts_ns), 1_000_000_000)
    moment = _dt.datetime.fromtimestamp(seconds, tz=_dt.UTC).replace(microsecond=rem_ns // 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _jsonable(value: Any) -> Any:
    """Make details JSON-safe and deterministic (sets sorted, tuples as lists, enums as values)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (set, frozenset)):
        return sorted((_jsonable(v) for v in value), key=repr)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    if hasattr(value, "to_dict"):
        return _jsonable(value.to_dict())
    return value


@dataclass(frozen=True)
class Problem:
    """Something wrong with an input file: ``line`` is 1-based (record index for non-line formats)."""

    file: str
    line: int | None
    problem: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"file": self.file, "line": self.line, "problem": self.problem}


@dataclass(frozen=True)
class SkippedFile:
    """A file under the incident root that no parser read, with the reason."""

    file: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"file": self.file, "reason": self.reason}


@dataclass
class SourceLedger:
    """Per-source accounting: every record read is accepted or rejected with a reason."""

    source: str
    files_seen: int = 0
    files_parsed: int = 0
    files_failed: int = 0
    records: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    bytes_read: int = 0

    def add_rejections(self, reasons: Mapping[str, int]) -> None:
        """Fold a parser's rejection counts into the ledger."""
        for reason, count in reasons.items():
            if count:
                self.rejected_by_reason[reason] = self.rejected_by_reason.get(reason, 0) + count
                self.rejected += count

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "source": self.source,
            "files": self.files_parsed,
            "files_seen": self.files_seen,
            "files_failed": self.files_failed,
            "records": self.records,
            "rejected": self.rejected,
            "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
            "bytes": self.bytes_read,
        }


@dataclass
class IngestSummary:
    """What ingest read, skipped and complained about."""

    sources: list[SourceLedger] = field(default_factory=list)
    skipped_files: list[SkippedFile] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def ledger(self, source: str) -> SourceLedger:
        """The ledger for ``source``, created on first use."""
        for entry in self.sources:
            if entry.source == source:
                return entry
        entry = SourceLedger(source)
        self.sources.append(entry)
        return entry

    @property
    def total_rejected(self) -> int:
        """Records rejected across all sources."""
        return sum(s.rejected for s in self.sources)

    @property
    def total_records(self) -> int:
        """Records accepted across all sources."""
        return sum(s.records for s in self.sources)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, sorted for clean diffs."""
        return {
            "sources": [s.to_dict() for s in sorted(self.sources, key=lambda s: s.source)],
            "skipped_files": [s.to_dict() for s in sorted(self.skipped_files, key=lambda s: s.file)],
            "problems": [
                p.to_dict()
                for p in sorted(
                    self.problems, key=lambda p: (p.file, p.line if p.line is not None else -1, p.problem)
                )
            ],
        }


@dataclass
class Report:
    """Everything one analysis concluded; :meth:`to_dict` is the JSON contract."""

    tool_version: str
    incident_path: str
    ingest: IngestSummary
    verdicts: list[Verdict] = field(default_factory=list)
    root_cause: str | None = None
    window_start_ns: int | None = None
    window_end_ns: int | None = None
    notes: list[str] = field(default_factory=list)
    summary: str | None = None

    def verdict(self, verdict_id: str) -> Verdict | None:
        """The verdict with that id, if any."""
        return next((v for v in self.verdicts if v.id == verdict_id), None)

    def worst_severity(self) -> Severity | None:
        """The most severe verdict's severity, or ``None`` when there is no verdict."""
        return min((v.severity for v in self.verdicts), key=lambda s: s.rank, default=None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract v1."""
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "tracecore", "version": self.tool_version},
            "incident": {
                "path": self.incident_path,
                "window": {"start": iso_utc(self.window_start_ns), "end": iso_utc(self.window_end_ns)},
            },
            "ingest": self.ingest.to_dict(),
            "root_cause": self.root_cause,
            "summary": self.summary,
            "verdicts": [v.to_dict() for v in self.verdicts],
            "notes": list(self.notes),
        }


def assign_ids(verdicts: Iterable[Verdict]) -> list[Verdict]:
    """Sort verdicts deterministically and number them ``v1``, ``v2``… in that order.

    ``explains`` entries written as ``pattern|key`` identities are rewritten to the new ids.
    """
    ordered = sorted(verdicts, key=lambda v: v.sort_key)
    by_identity: dict[str, str] = {}
    for number, verdict in enumerate(ordered, start=1):
        verdict.id = f"v{number}"
        by_identity.setdefault(identity_ref(verdict), verdict.id)
    for verdict in ordered:
        verdict.explains = [
            by_identity.get(ref, ref) for ref in verdict.explains if by_identity.get(ref, ref)
        ]
    return ordered


def identity_ref(verdict: Verdict) -> str:
    """The pre-id reference string to one verdict, used in ``explains`` before numbering."""
    return f"{verdict.pattern}|{verdict.key}"


def ranks_text(ranks: Sequence[int]) -> str:
    """Compact rank list for titles: ``0–5, 7``."""
    values = sorted(set(ranks))
    if not values:
        return "none"
    parts: list[str] = []
    start = prev = values[0]
    for value in [*values[1:], None]:
        if value is not None and value == prev + 1:
            prev = value
            continue
        parts.append(
            str(start) if start == prev else (f"{start}, {prev}" if prev == start + 1 else f"{start}–{prev}")
        )
        if value is not None:
            start = prev = value
    return ", ".join(parts)
