"""Detector ``collective-hang``: ranks wait in a collective that some members never issued."""

from __future__ import annotations

from typing import Any

import polars as pl

from ..fr_analysis import (
    DEFAULT_PG,
    FrView,
    Pending,
    as_int,
    describe_entry,
    entry_row,
    evidence_for,
    first_rows_at,
    fr_view,
    frames_text,
    host_span,
    last_entry,
    pending_collectives,
)
from ..report import Affected, Culprit, Evidence, Severity, Verdict, ranks_text
from ..tables import Tables
from .base import Detector


def detect(tables: Tables) -> list[Verdict]:
    """Find process groups whose members wait in a collective that other members never issued.

    What it detects:
        A hang in the program's collective order: some members of a process group enqueued
        collective N and wait in it, while other members never enqueued it (they are stuck
        elsewhere, dead, or took a different code path).

    Signals:
        fr_entries (collective_seq_id per group, state, retired), fr_status (pg_status
        last_enqueued/last_completed: the only progress signal on gloo, where state is always
        'scheduled'), fr_groups (members, including ranks that left no dump).

    Rule:
        Per group, the stuck sequence number is the lowest one some member has enqueued but
        not completed. Members that completed it are finished, members that enqueued it are
        waiting, members whose own dump shows a lower last enqueued number are the group's
        culprits; members that left no dump are unknown (listed in missing evidence) and are the
        culprits only when no dumped member explains the hang. Ranks are aligned by (group, sequence number), never by record_id.
        When several groups hang, a culprit that is itself waiting in another hung group is a
        victim: the root culprits are those waiting nowhere; in a wait cycle (each side waits
        for the other) the smallest culprit set that explains every hung group is chosen.
        One critical verdict per incident names the root group and ranks; details list every
        hung group.

    Known false positives:
        Dumps taken at very different moments (one rank dumped long after the others moved
        on) look like a hang of the early ranks. Ranks whose buffer wrapped past every entry
        of a group and that have no pg_status for it cannot show progress there and may be
        listed as culprits (said in missing evidence). Membership inferred from entries
        (broken gloo pg_config) cannot list subgroup members that left no dump.
    """
    view = fr_view(tables)
    if view is None:
        return []
    pending = pending_collectives(view)
    hung = [p for p in pending if p.waiting and p.culprits]
    no_dump = sorted({r for g in view.groups.values() for r in g.missing_dumps})
    wrapped = set(view.calls["rank"].filter(view.calls["wrapped"].fill_null(False)).unique().to_list())
    complete = set(view.dumped) - wrapped
    stalled: list[Pending] = []
    hung.extend(_incomplete_groups(pending, hung, no_dump, complete, stalled))
    if not hung:
        return []
    roots, primary = _root_cause(hung)
    # Culprits that themselves wait in a group stalled on a member no dump names are victims of
    # that group: never blame a group's own waiting members for another group's hang.
    blocked = {r for p in stalled for r in p.waiting}
    if stalled and roots and set(roots) <= blocked:
        primary = next(p for p in stalled if set(p.waiting) & set(roots))
        return [_verdict(view, [*hung, *stalled], [], primary)]
    return [_verdict(view, hung, roots, primary)]


def _incomplete_groups(
    pending: list[Pending],
    hung: list[Pending],
    no_dump: list[int],
    complete: set[int],
    stalled: list[Pending],
) -> list[Pending]:
    """Groups whose every known member waits, when membership was inferred from the entries.

    A member that never issued any collective of such a group leaves no trace of membership
    (torch 2.13 gloo pg_config is broken), so the group looks complete. When the ranks waiting
    in it are the culprits of another hung group, the members it misses are that group's culprits
    that left no dump, else the ranks waiting *there* (the other side of a wait cycle). With no
    such partner, ranks of the world that left no dump are the only possible missing members.
    Past the group's first collective every member has entries of it: a rank whose dump holds
    its whole history (``complete``) and none of the group is no member. A group left with no
    possible missing member is added to ``stalled`` (it waits for a rank no dump names).
    """
    extra: list[Pending] = []
    for p in pending:
        if (
            p.culprits
            or not p.waiting
            or p.finished
            or p.group.source != "inferred"
            or p.group.name == DEFAULT_PG
        ):
            continue
        members = set(p.group.members)
        partners = [h for h in hung if set(h.culprits) & set(p.waiting)]
        candidates = sorted({r for h in partners for r in h.no_dump} - members)
        if not candidates:
            there = {r for h in partners for r in h.waiting} - members
            if p.seq > 1:
                there -= complete
            candidates = sorted(there)
            if not candidates and partners:
                stalled.append(p)
        if not candidates and not partners:
            candidates = sorted(set(no_dump) - members)
        if candidates:
            p.absent = candidates
            p.behind.update({r: None for r in candidates})
            p.inferred_culprits = True
            extra.append(p)
    return extra


def _root_cause(hung: list[Pending]) -> tuple[list[int], Pending]:
    """(root culprit ranks, the hung group they explain directly)."""
    waiting_anywhere = {r for p in hung for r in p.waiting}
    culprits = {r for p in hung for r in p.culprits}
    roots = sorted(culprits - waiting_anywhere)
    if roots:
        candidates = [p for p in hung if set(p.culprits) & set(roots)]
        primary = min(candidates, key=lambda p: (len(p.culprits), len(p.group.members), p.group.key))
        return roots, primary
    # A wait cycle: every culprit waits in another hung group. The smallest set of ranks whose
    # missing call explains every hung group is the most likely origin (one rank skipping a
    # collective, rather than several ranks all doing something else).
    primary = min(
        hung, key=lambda p: (len(p.culprits), len(p.culprits) / max(1, len(p.group.members)), p.group.key)
    )
    return list(primary.culprits), primary


def _op_at(view: FrView, pending: Pending) -> tuple[str | None, dict[str, Any] | None]:
    for rank in pending.waiting:
        row = entry_row(view, rank, pending.group.key, pending.seq)
        if row is not None:
            return row.get("profiling_name"), row
    return None, None


def _verdict(view: FrView, hung: list[Pending], roots: list[int], primary: Pending) -> Verdict:
    op, waiting_row = _op_at(view, primary)
    group = primary.group
    waiting_all = sorted({r for p in hung for r in p.waiting})
    root_set = set(roots)
    evidence: list[Evidence] = []
    missing: list[str] = []
    waiting_at = first_rows_at(view, group.key, primary.seq).filter(pl.col("rank").is_in(primary.waiting))
    first_ts = as_int(waiting_at["time_created_ns"].min())
    located = set(waiting_at["rank"].to_list())
    cited = [r for r in primary.waiting if r in located][:4]
    for rank in cited:
        row = entry_row(view, rank, group.key, primary.seq)
        if row is not None:
            evidence.append(evidence_for(row, describe_entry(row) + " (waiting)"))
    culprit_last: dict[str, Any] = {}
    for rank in sorted(root_set | set(primary.culprits)):
        if rank not in view.dumped:
            missing.append(
                f"rank {rank} left no flight-recorder dump (it is a member of group {group.label})"
            )
            continue
        last = last_entry(view, rank)
        if last is None:
            continue
        culprit_last[str(rank)] = {
            "profiling_name": last.get("profiling_name"),
            "group_key": last.get("group_key"),
            "pg_name": last.get("pg_name"),
            "seq": last.get("collective_seq_id"),
            "state": last.get("state"),
            "retired": last.get("retired"),
            "call_site": last.get("call_site"),
            "frames": frames_text(last.get("frames")),
        }
        if len(evidence) < 8:
            evidence.append(evidence_for(last, describe_entry(last) + " (culprit's last entry)"))
    if primary.unknown:
        many = len(primary.unknown) > 1
        missing.append(
            f"no dump from rank{'s' if many else ''} {ranks_text(primary.unknown)} of group {group.label}: "
            "what they did is unknown (the dumped culprits already explain the hang)"
        )
    waiting_stack = frames_text(waiting_row.get("frames")) if waiting_row else []
    if waiting_row is not None and waiting_row.get("frames") is None:
        missing.append("the dumps carry no stack frames (JSON or includeStackTraces=False): no Python stacks")
    if primary.inferred_culprits:
        missing.append(
            f"no dump records ranks {ranks_text(primary.absent)} as members of group {group.label}: "
            "they are inferred as the members it waits for "
            + (
                "(they left no dump)"
                if not set(primary.absent) & set(view.dumped)
                else "(they wait in the group whose members wait here)"
            )
        )
    if group.source == "inferred":
        missing.append(
            f"group {group.label} membership inferred from the entries (pg_config unusable); "
            "members that left no dump can only be listed for the default group"
        )
    if primary.no_record:
        many = len(primary.no_record) > 1
        missing.append(
            f"rank{'s' if many else ''} {ranks_text(primary.no_record)} ha{'ve' if many else 's'} no record of "
            f"group {group.label} (buffer wrapped or no pg_status)"
        )
    if not view.has_timing:
        # Said once here rather than as a separate collective-timeout verdict on every gloo hang.
        missing.append(
            "no timing fields (duration_ms / time_discovered_*) and no dump time: how long ranks waited, "
            "and whether a collective passed its timeout (collective-timeout), cannot be assessed"
        )
    hung_groups = []
    for p in sorted(hung, key=lambda p: p.group.key):
        p_op, _ = _op_at(view, p)
        elsewhere = {
            str(r): next((q.group.key for q in hung if r in q.waiting and q is not p), None)
            for r in p.culprits
        }
        hung_groups.append(
            {
                "group_key": p.group.key,
                "pg_name": p.group.name,
                "pg_desc": p.group.desc,
                "seq": p.seq,
                "op": p_op,
                "waiting_ranks": p.waiting,
                "culprit_ranks": p.culprits,
                "missing_dump_ranks": p.no_dump,
                "unknown_ranks": p.unknown,
                "waiting_elsewhere": {k: v for k, v in elsewhere.items() if v is not None},
            }
        )
    hosts, span = host_span(view, waiting_all + roots)
    culprit_hosts = sorted({h for r in roots if (h := view.hosts.get(r))})
    behind = {str(r): primary.behind.get(r) for r in primary.culprits}
    names = ranks_text(roots) if roots else "unknown"
    plural = "s" if len(roots) > 1 else ""
    group_text = f"{group.label} ({group.key})"
    if primary.inferred_culprits:
        # The group's known members plus the inferred ones it waits for.
        group_text = (
            f"{group.label} (ranks {ranks_text(sorted(set(group.members) | set(primary.absent)))}, "
            f"{ranks_text(primary.absent)} inferred)"
        )
    title = (
        f"Collective hang: rank{plural} {names} never issued {op or 'collective'} #{primary.seq} of group "
        f"{group_text}; rank{'s' if len(primary.waiting) > 1 else ''} "
        f"{ranks_text(primary.waiting)} wait in it"
    )
    if not roots:
        title = (
            f"Collective hang: group {group_text} waits in {op or 'a collective'} #{primary.seq} for a member "
            f"no dump names (it left no dump); rank{'s' if len(primary.waiting) > 1 else ''} "
            f"{ranks_text(primary.waiting)} wait in it"
        )
        missing.append(
            f"no dump names the member group {group.label} waits for: it left no dump and may lie beyond the "
            "ranks seen (set [job] world_size in incident.toml)"
        )
    if len(hung) > 1:
        title += f"; {len(hung)} groups hung"
    return Verdict(
        pattern="collective-hang",
        title=title,
        severity=Severity.CRITICAL,
        key=f"group={group.key} seq={primary.seq}",
        culprit=Culprit(ranks=roots, hosts=culprit_hosts),
        affected=Affected(ranks=waiting_all, hosts=hosts),
        window_start_ns=first_ts,
        window_end_ns=view.ref_ts_ns,
        evidence=evidence,
        missing_evidence=missing,
        actions=[
            f"Inspect what rank{plural} {names} did instead of {op or 'the collective'} #{primary.seq} "
            f"(their Python stacks, logs, data loader); compare with the waiting ranks' stack.",
        ],
        details={
            "group_key": group.key,
            "pg_name": group.name,
            "pg_desc": group.desc,
            "seq": primary.seq,
            "op": op,
            "culprit_ranks": roots,
            "group_culprit_ranks": primary.culprits,
            "waiting_ranks": primary.waiting,
            "finished_ranks": primary.finished,
            "missing_dump_ranks": sorted({r for p in hung for r in p.no_dump}),
            "unknown_ranks": primary.unknown,
            "behind": behind,
            "first_ts_ns": first_ts,
            "membership_source": group.source,
            "waiting_stack": waiting_stack,
            "culprit_last_entries": culprit_last,
            "hung_groups": hung_groups,
            "host_span": span,
        },
    )


DETECTOR = Detector(
    id="collective-hang",
    summary="Ranks wait in a collective that other members of the group never issued (culprits: who never arrived)",
    sources=("flight_recorder",),
    tables=("fr_entries", "fr_calls", "fr_groups", "fr_status", "identity"),
    detect=detect,
    scope=__name__,
)
