"""Text pieces shared by the terminal and Markdown reports (plain strings, escaped by the caller)."""

from __future__ import annotations

from tracecore.analyzers.report import Report, Verdict, iso_utc, ranks_text


def culprit_text(verdict: Verdict) -> str:
    """``ranks 6; hosts node-1; GPU node-1#2 (0000:3b:00.0)`` or an empty string."""
    culprit = verdict.culprit
    parts: list[str] = []
    if culprit.ranks:
        parts.append(f"rank{'s' if len(set(culprit.ranks)) > 1 else ''} {ranks_text(culprit.ranks)}")
    if culprit.hosts:
        parts.append(
            f"host{'s' if len(set(culprit.hosts)) > 1 else ''} {', '.join(sorted(set(culprit.hosts)))}"
        )
    for gpu in culprit.gpus:
        label = f"GPU {gpu.host + ' ' if gpu.host else ''}#{gpu.index if gpu.index is not None else '?'}"
        extras = ", ".join(x for x in (gpu.pci_bus_id, gpu.uuid) if x)
        parts.append(f"{label} ({extras})" if extras else label)
    if culprit.links:
        parts.append("links " + ", ".join(sorted(set(culprit.links))))
    if culprit.pids:
        parts.append("pids " + ", ".join(str(p) for p in sorted(set(culprit.pids))))
    return "; ".join(parts)


def time_text(ts_ns: int | None) -> str:
    """Compact UTC time for chains: ``12:03:11Z`` style from ISO."""
    iso = iso_utc(ts_ns)
    if iso is None:
        return ""
    return iso.replace("T", " ")[:19] + "Z"


def chain_lines(report: Report) -> list[tuple[int, str]]:
    """The causal chain from the root: (depth, text) pairs, depth-first over ``explains``."""
    if not report.root_cause:
        return []
    by_id = {v.id: v for v in report.verdicts}
    lines: list[tuple[int, str]] = []
    seen: set[str] = set()

    def visit(verdict_id: str, depth: int) -> None:
        verdict = by_id.get(verdict_id)
        if verdict is None or verdict_id in seen:
            return
        seen.add(verdict_id)
        when = time_text(verdict.window_start_ns)
        lines.append(
            (depth, f"{verdict.id} {verdict.pattern}{' at ' + when if when else ''}: {verdict.title}")
        )
        for child in verdict.explains:
            visit(child, depth + 1)

    visit(report.root_cause, 0)
    return lines


def ledger_rows(report: Report) -> list[tuple[str, str, str, str]]:
    """(source, files, records, rejected-with-reasons) per source."""
    rows: list[tuple[str, str, str, str]] = []
    for ledger in sorted(report.ingest.sources, key=lambda s: s.source):
        files = f"{ledger.files_parsed}/{ledger.files_seen}" + (
            f" ({ledger.files_failed} failed)" if ledger.files_failed else ""
        )
        reasons = ", ".join(
            f"{reason}: {count}" for reason, count in sorted(ledger.rejected_by_reason.items())
        )
        rejected = f"{ledger.rejected}" + (f" ({reasons})" if reasons else "")
        rows.append((ledger.source, files, str(ledger.records), rejected))
    return rows
