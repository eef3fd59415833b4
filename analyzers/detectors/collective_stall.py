"""Detector ``collective-stall``: every member entered the same collective and none finished it."""

from __future__ import annotations

from ..fr_analysis import (
    DEFAULT_PG,
    as_int,
    calls_at,
    describe_entry,
    entry_row,
    evidence_for,
    fr_view,
    frames_text,
    host_span,
    pending_collectives,
    signatures_agree,
)
from ..report import Affected, Culprit, Severity, Verdict
from ..tables import Tables
from .base import Detector


def detect(tables: Tables) -> list[Verdict]:
    """Find collectives that all members entered with matching arguments but none completed.

    What it detects:
        A transport-level stall: the program is in sync (every member issued the same
        collective with the same op, sizes and dtypes) but the data never moved, which points
        at the network or NVLink path, a wedged GPU or the communication library, not at the
        program.

    Signals:
        fr_entries/fr_status progress per (group, rank); fr_groups members (a member without a
        dump rules a stall out: it may simply never have arrived); state 'started' (NCCL with
        timing) proving the collective began on the device; hosts of the members.

    Rule:
        For the lowest pending sequence number of a group: every member dumped, every member
        enqueued it, none completed it, and their signatures agree. Groups whose membership was
        inferred from entries (other than the default group) are left out, since a member that
        never issued anything there is invisible. Severity: error when every member shows state
        'started' (the device began the collective on all ranks) or the collective was retired
        without completing; warning on NCCL-like dumps otherwise; info on gloo, where an
        in-flight collective at dump time cannot be told from a stall. Details give the host
        span (intra-node or cross-node) so correlation can look for NVLink or InfiniBand
        evidence.

    Known false positives:
        A dump taken while a healthy collective is in flight on every rank (an on-demand dump
        in the middle of training) looks like a stall unless the entries say it started long
        ago; that is why such cases without 'started' states stay at warning or info.
    """
    view = fr_view(tables)
    if view is None:
        return []
    verdicts = []
    for pending in pending_collectives(view):
        group = pending.group
        if pending.culprits or pending.finished or not pending.waiting:
            continue
        if group.source == "inferred" and group.name != DEFAULT_PG:
            continue
        if not signatures_agree(view, group.key, pending.seq):
            continue  # a desync, reported by collective-mismatch
        calls = calls_at(
            view,
            group.key,
            pending.seq,
            ["state", "backend", "retired_not_completed", "profiling_name", "created_ns"],
        )
        if calls.height == 0:
            continue
        states = set(calls["state"].drop_nulls().to_list())
        backends = set(calls["backend"].drop_nulls().to_list())
        retired_bad = bool(calls["retired_not_completed"].any()) and backends != {"gloo"}
        if states == {"started"} or retired_bad:
            severity = Severity.ERROR
        elif backends == {"gloo"} or not backends:
            severity = Severity.INFO
        else:
            severity = Severity.WARNING
        op = calls["profiling_name"].mode().sort().to_list()[0]
        first_ts = as_int(calls["created_ns"].max())
        ranks = list(pending.waiting)
        hosts, span = host_span(view, ranks)
        evidence = []
        stack: list[str] = []
        for rank in ranks[:4]:
            row = entry_row(view, rank, group.key, pending.seq)
            if row is not None:
                evidence.append(evidence_for(row, describe_entry(row)))
                if not stack:
                    stack = frames_text(row.get("frames"))
        missing = []
        if severity is not Severity.ERROR:
            missing.append(
                "no proof the collective started on the device or how long it ran (no 'started' state, "
                "no dump time): an in-flight collective at dump time looks the same"
            )
        verdicts.append(
            Verdict(
                pattern="collective-stall",
                title=(
                    f"Collective stall: all {len(ranks)} members of group {group.label} ({group.key}) entered "
                    f"{op} #{pending.seq} and none completed it ({span or 'host span unknown'})"
                ),
                severity=severity,
                key=f"group={group.key} seq={pending.seq}",
                culprit=Culprit(hosts=hosts if span == "intra-node" else []),
                affected=Affected(ranks=ranks, hosts=hosts),
                window_start_ns=first_ts,
                window_end_ns=view.ref_ts_ns,
                evidence=evidence,
                missing_evidence=missing,
                actions=[
                    "Check the transport between these hosts/GPUs (NCCL warnings, IB/NVLink counters, Xid "
                    "events) around the time the collective was enqueued."
                ],
                details={
                    "group_key": group.key,
                    "pg_name": group.name,
                    "pg_desc": group.desc,
                    "seq": pending.seq,
                    "op": op,
                    "waiting_ranks": ranks,
                    "culprit_ranks": [],
                    "states": sorted(states),
                    "host_span": span,
                    "hosts": hosts,
                    "first_ts_ns": first_ts,
                    "waiting_stack": stack,
                },
            )
        )
    return verdicts


DETECTOR = Detector(
    id="collective-stall",
    summary="Every member entered the same collective with matching arguments and none completed it (transport stall)",
    sources=("flight_recorder",),
    tables=("fr_entries", "fr_calls", "fr_groups", "fr_status", "identity"),
    detect=detect,
    scope=__name__,
)
