"""Detector ``stack-outlier``: the few ranks whose main thread is somewhere else (pattern P25)."""

from __future__ import annotations

from ..report import Affected, Culprit, Severity, Verdict
from ..stack_analysis import (
    SKEW_WARN_NS,
    OutlierGroup,
    divergence,
    in_collective,
    outlier_groups,
    site,
    snapshot_skew_ns,
    stack_evidence,
    step_locals,
    undumped_ranks,
    who,
    window,
)
from ..tables import Tables
from .base import Detector


def detect(tables: Tables) -> list[Verdict]:
    """Group ranks by their main thread's normalised stack and name the odd ones out.

    What it detects:
        A hung or stalled job where most ranks wait at the same place (typically inside a
        collective) and a few ranks are somewhere else: those few are the ones the others wait for.

    Signals:
        ``stacks`` (py-spy dumps or records of any format): per process the main thread's Python
        frames, normalised to function + file basename (no line numbers, native frames dropped), so
        the same code path compares equal across ranks and capture options. Each process's
        signature is the one most of its snapshots show. Thread status (idle/active) and repeated
        snapshots tell blocked from running. ``identity`` names ranks that left no stack.

    Rule:
        Identical signatures form groups. The strictly largest group is the expected state; every
        other group with at most 25 % of the dumped processes and at most 10 members is an outlier
        (one verdict per group), reported with its ranks, the first frame (from the outermost
        inwards) where it diverges from the dominant group, and both groups' top frames. Severity
        is error when the dominant group waits (idle, or in a collective / sync call when status is
        unknown) and the outlier is blocked (idle, or unchanged at two capture times) without
        having moved between its snapshots; otherwise info (the job was probably still running).
        Works on any subset of ranks; ranks the identity table knows but nobody dumped are listed
        as missing evidence, and snapshots whose stated capture times differ by more than 10 s
        are flagged as skewed. Several identical dumps of the outlier are reported as "no progress".

    Known false positives:
        A single snapshot of a healthy job can catch one rank waiting for its next batch or still
        computing while the others already wait in the collective; take two dumps some seconds
        apart to tell a stall from jitter. Rank 0 alone in logging, evaluation or checkpoint code
        is normal for a while. With fewer than 4 dumped ranks a single odd rank is never more than
        25 % and is not reported.
    """
    views, grouping, groups = outlier_groups(tables)
    if not groups:
        return []
    missing = undumped_ranks(tables, views)
    skew = snapshot_skew_ns(views)
    steps = step_locals(tables)
    verdicts = [_verdict(group, missing, skew, [len(g) for g in grouping.groups], steps) for group in groups]
    return verdicts


def _verdict(
    group: OutlierGroup, missing: list[int], skew: int | None, sizes: list[int], steps: dict[str, int]
) -> Verdict:
    outlier = group.members[0]
    victim = group.dominant[0]
    outlier_site = site(outlier.rep)
    victim_site = site(victim.rep)
    victim_collective = in_collective(victim.rep)
    top = victim_collective or victim_site
    verb = (
        ("waits" if len(group.dominant) == 1 else "wait")
        if group.dominant_waiting
        else ("is" if len(group.dominant) == 1 else "are")
    )
    noun = "ranks" if all(v.rank is not None for v in group.dominant) else "processes"
    dominant_who = f"{len(group.dominant)} {noun}" if len(group.dominant) > 1 else who(group.dominant)
    outlier_verb = "is" if len(group.members) == 1 else "are"
    where = divergence(outlier.rep, victim.rep)
    place = outlier_site.function if outlier_site else "?"
    if where["outlier_function"] and where["outlier_function"] != place:
        place = f"{where['outlier_function']} → {place}"
    title = f"{dominant_who} {verb} in {top.function if top else '?'}; {who(group.members)} {outlier_verb} in {place}"
    unchanged = {v.label: v.unchanged for v in group.members}
    if group.stalled and all(v.unchanged >= 2 for v in group.members):
        title += f" (unchanged in {min(unchanged.values())} dumps)"
    missing_evidence: list[str] = []
    if missing:
        missing_evidence.append(
            f"py-spy dump of ranks {', '.join(map(str, missing))} (known ranks without a stack; the grouping covers only dumped ranks)"
        )
    if skew is not None and skew > SKEW_WARN_NS:
        missing_evidence.append(
            f"simultaneous snapshots: capture times differ by {skew / 1e9:.0f} s, so ranks may have moved between dumps"
        )
    if skew is None:
        missing_evidence.append("capture time of each dump (to check the snapshots were simultaneous)")
    if all(v.unchanged < 2 for v in group.members):
        missing_evidence.append(
            "a second dump of the outlier some seconds later (to confirm it made no progress)"
        )
    if any(v.rank is None for v in group.members):
        missing_evidence.append(
            "rank of the outlier process (pid not in the manifest or any rank-named file)"
        )
    start, end = window([*group.members, *group.dominant])
    evidence = [stack_evidence(v.rep, v.label) for v in group.members[:3]]
    evidence.append(stack_evidence(victim.rep, f"{victim.label} (expected state)"))
    actions = [
        f"Look at what {who(group.members)} {outlier_verb} doing in "
        f"{outlier_site.label() if outlier_site else 'its top frame'}; the other ranks wait for it.",
    ]
    if not group.stalled:
        actions.append("Take two py-spy dumps of every rank some seconds apart to confirm a stall.")
    return Verdict(
        pattern="stack-outlier",
        title=title,
        severity=Severity.ERROR if group.stalled else Severity.INFO,
        key=group.key,
        culprit=Culprit(ranks=group.ranks, hosts=group.hosts, pids=group.pids),
        affected=Affected(
            ranks=sorted(v.rank for v in group.dominant if v.rank is not None),
            hosts=sorted({v.host for v in group.dominant if v.host}),
        ),
        window_start_ns=start,
        window_end_ns=end,
        evidence=evidence,
        missing_evidence=missing_evidence,
        actions=actions,
        details={
            "outlier_ranks": group.ranks,
            "outlier_pids": group.pids,
            "outlier_processes": [v.label for v in group.members],
            "dominant_ranks": sorted(v.rank for v in group.dominant if v.rank is not None),
            "dominant_size": len(group.dominant),
            "processes_compared": group.total,
            "group_sizes": sizes,
            "divergence": where,
            "outlier_top_frame": outlier.rep.python_frames[0].label() if outlier.rep.python_frames else None,
            "outlier_site": outlier_site.label() if outlier_site else None,
            "dominant_top_frame": victim.rep.python_frames[0].label() if victim.rep.python_frames else None,
            "dominant_collective": victim_collective.function if victim_collective else None,
            "dominant_waiting": group.dominant_waiting,
            "outlier_idle": [v.idle for v in group.members],
            "moving": group.moving,
            "stalled": group.stalled,
            "assessment": group.reason,
            "unchanged_snapshots": unchanged,
            "snapshot_skew_s": None if skew is None else round(skew / 1e9, 3),
            "snapshot_times_known": skew is not None,
            "ranks_without_stack": missing,
            "rank_sources": {v.label: v.rep.rank_source for v in group.members},
            "snapshots": {v.label: v.rep.snapshot_id for v in [*group.members, victim]},
            "steps": {v.label: steps[v.key] for v in [*group.members, *group.dominant] if v.key in steps},
        },
    )


DETECTOR = Detector(
    id="stack-outlier",
    summary="Few ranks' main-thread stacks differ from the dominant group (the ranks the others wait for)",
    sources=("pyspy",),
    tables=("stacks", "identity"),
    detect=detect,
    scope=__name__,
)
