"""Detector ``collective-mismatch``: members of a group disagree about the same collective."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from ..fr_analysis import (
    FrView,
    Group,
    as_int,
    call_columns,
    calls_at,
    describe_entry,
    entry_row,
    evidence_for,
    fr_view,
    frames_text,
    full_rows,
    majority,
    p2p_entries,
    per_group,
    shape_details,
)
from ..ingest.fr_calls import ALL_TO_ALL_OPS
from ..report import Affected, Culprit, Severity, Verdict, ranks_text
from ..tables import Tables
from .base import Detector

# Order in which a disagreement is named when several aspects differ at once.
KINDS = ("op_type", "size", "dtype")


@dataclass
class Finding:
    """One disagreement at one (group, sequence number)."""

    group: Group
    seq: int
    kind: str
    culprits: list[int]
    majority_ranks: list[int]
    strict: bool
    facts: dict[str, Any] = field(default_factory=dict)


def detect(tables: Tables) -> list[Verdict]:
    """Find the first collective at which members of a group disagree, and who deviates.

    What it detects:
        A desync between ranks of one process group: at the same collective sequence number
        they issued different ops, different sizes (respecting each op's size relation),
        different dtypes, or the same op from a different place in their code (an extra or
        missing call that still matches shapes); also point-to-point sends and receives whose
        sizes or dtypes disagree with their peer.

    Signals:
        fr_entries aligned by (group, collective_seq_id): op, input/output sizes and numel,
        dtypes, call_stack_id/call_site (caller frames outside torch), p2p peer and sizes;
        fr_groups for group size (all_gather out = in x size, reduce_scatter in = out x size);
        when membership is inferred or members left no dump, the size the entries imply.

    Rule:
        Per (group, seq) each rank's call is folded into a signature (coalesced members joined
        in record order; all_to_all sizes and gather outputs / scatter inputs left out, since
        they legitimately differ per rank). Where signatures differ, the value held by the
        majority of ranks is the reference and the other ranks are the culprits; a tie is
        reported without a majority, never resolved by file order. An op that disagrees with
        itself (all_reduce in != out, all_gather out != in x size, reduce_scatter in != out x
        size) blames its rank; when the member list may be short (inferred membership or
        members without a dump) the size is the one each entry implies (a whole multiple, at
        least the known members), and a relation every rank breaks identically is no desync.
        A finding without a strict majority names no culprit and is info only. all_to_all needs the group-wide input total to equal the
        output total. Call sites: a rank whose caller stack at a seq differs from the majority
        while at other seqs it used the majority's stack made an extra or missing call. The
        first disagreement per group is the verdict; later ones are still analysed and listed
        in details. State differences (started vs completed) are never a mismatch.

    Known false positives:
        Ranks that legitimately call the same collective from different code paths only at
        some steps (e.g. rank-dependent branches that change between iterations) look like a
        call-site divergence (reported at error, not critical). Dumps of different format
        versions across ranks fold coalesced groups differently.
    """
    view = fr_view(tables)
    if view is None or view.entry_count == 0:
        return []
    stats = _candidates(view)
    findings = _shape_findings(view, stats) + _call_site_findings(view, stats) + _p2p_findings(view)
    by_group: dict[str, list[Finding]] = {}
    for finding in findings:
        by_group.setdefault(finding.group.key, []).append(finding)
    verdicts = []
    for key in sorted(by_group):
        ordered = sorted(by_group[key], key=lambda f: (f.seq, f.kind == "call_site"))
        verdicts.append(_verdict(view, ordered[0], ordered[1:]))
    return verdicts


def _candidates(view: FrView) -> pl.DataFrame:
    # Lazy, so only the columns read are filtered (the calls frame has ~30).
    return (
        view.calls.lazy()
        .filter(~pl.col("partial"))
        .group_by("group_key", "collective_seq_id")
        .agg(
            pl.col("sig").n_unique().alias("n_sig"),
            pl.col("syntax_bad").any().alias("bad"),
            pl.len().alias("n"),
            pl.col("input_numel").sum().alias("in_total"),
            pl.col("output_numel").sum().alias("out_total"),
            pl.col("ops").first().alias("op0"),
            pl.col("ops").n_unique().alias("n_ops"),
            pl.col("call_stack_id").drop_nulls().n_unique().alias("n_sites"),
        )
        .collect()
    )


def _shape_findings(view: FrView, stats: pl.DataFrame) -> list[Finding]:
    sizes = {k: len(g.members) for k, g in view.groups.items()}
    a2a_ops = list(ALL_TO_ALL_OPS)
    flagged = stats.filter(
        (pl.col("n_sig") > 1)
        | pl.col("bad")
        | (
            pl.col("op0").is_in(a2a_ops)
            & (pl.col("n_ops") == 1)
            & (pl.col("in_total") != pl.col("out_total"))
            & (pl.col("n") == per_group(sizes, default=-1))
        )
    ).sort("group_key", "collective_seq_id")
    if flagged.height == 0:
        return []
    rows = shape_details(
        view,
        call_columns(
            view,
            view.calls.lazy()
            .select("_row", "group_key", "collective_seq_id")
            .join(
                flagged.lazy().select("group_key", "collective_seq_id"),
                on=["group_key", "collective_seq_id"],
                maintain_order="left",
            )
            .collect()["_row"],
            _CLASSIFIED,
        ),
    )
    by_seq: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows.iter_rows(named=True):
        by_seq.setdefault((row["group_key"], row["collective_seq_id"]), []).append(row)
    findings: list[Finding] = []
    for (key, seq), calls in sorted(by_seq.items()):
        group = view.groups.get(key)
        if group is None:
            continue
        finding = _classify(group, seq, calls)
        if finding is not None:
            findings.append(finding)
    return findings


# The calls columns _classify reads (the sizes and dtypes come from the entries).
_CLASSIFIED = (
    "group_key",
    "collective_seq_id",
    "rank",
    "source_file",
    "source_line",
    "op_sig",
    "in_sig",
    "out_sig",
    "dtype_sig",
    "syntax_bad",
    "ops",
    "profiling_name",
    "input_numel",
    "output_numel",
    "call_site",
)


def _classify(group: Group, seq: int, calls: list[dict[str, Any]]) -> Finding | None:
    by_rank = {int(c["rank"]): c for c in calls}
    for kind, column in (
        ("op_type", "op_sig"),
        ("size", "in_sig"),
        ("size", "out_sig"),
        ("dtype", "dtype_sig"),
    ):
        values = {r: c[column] for r, c in by_rank.items()}
        if len(set(values.values())) <= 1:
            continue
        _, holders, others, strict = majority(values)
        ref = by_rank[holders[0]]
        facts: dict[str, Any] = {
            "expected": _shape_facts(ref),
            "found": {str(r): _shape_facts(by_rank[r]) for r in others},
        }
        return Finding(group, seq, kind, others if strict else sorted(by_rank), holders, strict, facts)
    bad = sorted(r for r, c in by_rank.items() if c["syntax_bad"])
    if bad:
        facts = {
            "found": {str(r): _shape_facts(by_rank[r]) for r in bad},
            "relation": _relation(by_rank[bad[0]]["ops"]),
        }
        good = sorted(set(by_rank) - set(bad))
        exact = group.source != "inferred" and not group.missing_dumps
        if not good and not exact and "all_reduce" not in facts["relation"]:
            # Every rank's call is identical (signatures agree) and breaks a group-size relation
            # the same way while the member list may be short (inferred, or members without a
            # dump): no rank disagrees with another, so this is no desync.
            return None
        return Finding(group, seq, "size", bad, good, len(bad) < len(by_rank), facts)
    ops = {c["ops"] for c in calls}
    if len(ops) == 1 and next(iter(ops)) in ALL_TO_ALL_OPS:
        total_in = sum(c["input_numel"] or 0 for c in calls)
        total_out = sum(c["output_numel"] or 0 for c in calls)
        facts2: dict[str, Any] = {"input_total": total_in, "output_total": total_out}
        return Finding(group, seq, "size", [], sorted(by_rank), False, facts2)
    return None


def _relation(ops: str) -> str:
    if "all_gather" in ops:
        return "all_gather: output numel = input numel x group size"
    if "reduce_scatter" in ops:
        return "reduce_scatter: input numel = output numel x group size"
    return "all_reduce: output sizes = input sizes"


def _shape_facts(call: dict[str, Any]) -> dict[str, Any]:
    return {
        "op": call.get("ops"),
        "profiling_name": call.get("profiling_name"),
        "input_sizes": call.get("input_sizes"),
        "output_sizes": call.get("output_sizes"),
        "input_dtypes": call.get("input_dtypes"),
        "output_dtypes": call.get("output_dtypes"),
        "call_site": call.get("call_site"),
    }


def _call_site_findings(view: FrView, stats: pl.DataFrame) -> list[Finding]:
    """A rank calling from a stack the majority uses elsewhere, but not at this seq."""
    if not stats.height or stats["n_sites"].max() <= 1:  # type: ignore[operator]
        return []  # every rank used one stack at each seq: nobody can deviate
    sites = (
        view.calls.lazy()
        .filter(pl.col("call_stack_id").is_not_null() & ~pl.col("partial"))
        .select("group_key", "collective_seq_id", "rank", "call_stack_id")
        .collect()
    )
    if sites.height == 0:
        return []
    counts = sites.group_by("group_key", "collective_seq_id", "call_stack_id").len()
    if counts.select(pl.struct("group_key", "collective_seq_id").is_unique().all()).item():
        return []  # every rank used one stack at each seq: nobody can deviate
    ranked = counts.sort(["group_key", "collective_seq_id", "len"], descending=[False, False, True])
    top = ranked.group_by("group_key", "collective_seq_id", maintain_order=True).agg(
        pl.col("call_stack_id").first().alias("maj"),
        pl.col("len").first().alias("maj_n"),
        pl.col("len").get(1, null_on_oob=True).alias("second_n"),
    )
    top = top.filter(pl.col("second_n").is_null() | (pl.col("maj_n") > pl.col("second_n")))
    joined = sites.join(top, on=["group_key", "collective_seq_id"])
    normal = (
        joined.filter(pl.col("call_stack_id") == pl.col("maj")).select("group_key", "rank", "maj").unique()
    )
    deviant = joined.filter(pl.col("call_stack_id") != pl.col("maj")).join(
        normal, on=["group_key", "rank", "maj"], how="semi"
    )
    if deviant.height == 0:
        return []
    first = deviant.group_by("group_key").agg(pl.col("collective_seq_id").min().alias("seq"))
    findings: list[Finding] = []
    for key, seq in first.sort("group_key").iter_rows():
        group = view.groups.get(key)
        if group is None:
            continue
        at = calls_at(view, key, seq, ["rank", "call_stack_id", "call_site"])
        values = {int(r): s for r, s in at.select("rank", "call_stack_id").iter_rows() if s is not None}
        _, holders, others, strict = majority(values)
        site = {int(r): s for r, s in at.select("rank", "call_site").iter_rows()}
        facts = {
            "expected_call_site": site.get(holders[0]),
            "found_call_site": {str(r): site.get(r) for r in others},
        }
        findings.append(Finding(group, seq, "call_site", others, holders, strict, facts))
    return findings


def _p2p_findings(view: FrView) -> list[Finding]:
    """Sends and receives paired by (group, src, dst) and order; sizes and dtypes must agree.

    Vectorised: each send/recv gets its group-local (src, dst) pair and its ordinal within the
    pair (by record id), sends are joined to receives on (group, src, dst, ordinal), and the
    first disagreeing pair of each (group, src, dst) becomes a finding.
    """
    p2p = p2p_entries(
        view, ["group_key", "rank", "record_id", "op", "p2p_peer", "input_numel", "input_dtypes"]
    ).filter(
        pl.col("op").is_in(["send", "recv"])
        & pl.col("group_key").is_not_null()
        & pl.col("p2p_peer").is_not_null()  # recv from any source pairs with any send: not checked
    )
    if p2p.height == 0:
        return []
    local_rows = [
        (key, rank, index)
        for key, group in view.groups.items()
        for index, rank in enumerate(sorted(group.members))
    ]
    local = pl.DataFrame(
        local_rows, schema={"group_key": pl.String, "rank": pl.Int32, "_me": pl.Int64}, orient="row"
    )
    send = pl.col("op") == "send"
    dtypes = pl.col("input_dtypes")
    pairs = (
        p2p.with_columns(pl.col("group_key", "op").cast(pl.String))
        .join(local, on=["group_key", "rank"], how="inner")
        .with_columns(
            pl.when(send).then(pl.col("_me")).otherwise(pl.col("p2p_peer").cast(pl.Int64)).alias("_src"),
            pl.when(send).then(pl.col("p2p_peer").cast(pl.Int64)).otherwise(pl.col("_me")).alias("_dst"),
            pl.when(dtypes.list.len() > 0).then(dtypes.list.join("\x1f")).alias("_dt"),
        )
        .sort("group_key", "rank", "record_id", nulls_last=True)
        .with_columns(pl.int_range(pl.len()).over("group_key", "_src", "_dst", "op").alias("_nth"))
        .select("_row", "group_key", "rank", "op", "_src", "_dst", "_nth", "input_numel", "_dt")
    )
    on = ["group_key", "_src", "_dst", "_nth"]
    matched = (
        pairs.filter(pl.col("op") == "send")
        .join(pairs.filter(pl.col("op") == "recv"), on=on, how="inner", suffix="_r")
        .filter(
            pl.col("input_numel").ne_missing(pl.col("input_numel_r"))
            | (
                pl.col("_dt").is_not_null()
                & pl.col("_dt_r").is_not_null()
                & (pl.col("_dt") != pl.col("_dt_r"))
            )
        )
        .sort(on)
        .unique(subset=["group_key", "_src", "_dst"], keep="first", maintain_order=True)
    )
    findings: list[Finding] = []
    for key, src, dst, s_index, r_index in matched.select(
        "group_key", "_src", "_dst", "_row", "_row_r"
    ).iter_rows():
        group = view.groups.get(key)
        if group is None:
            continue
        members = sorted(group.members)
        s_row, r_row = full_rows(view, [int(s_index), int(r_index)])
        seq = int(s_row["p2p_seq_id"] or 0)
        facts = {
            "send": describe_entry(s_row),
            "recv": describe_entry(r_row),
            "p2p": True,
            "src": members[src] if 0 <= src < len(members) else None,
            "dst": members[dst] if 0 <= dst < len(members) else None,
        }
        findings.append(
            Finding(group, seq, "p2p", sorted({int(s_row["rank"]), int(r_row["rank"])}), [], False, facts)
        )
    return findings


def _verdict(view: FrView, first: Finding, later: list[Finding]) -> Verdict:
    group = first.group
    calls = calls_at(view, group.key, first.seq, ["profiling_name", "created_ns"])
    op = calls["profiling_name"].mode().sort().to_list()[0] if calls.height else None
    first_ts = as_int(calls["created_ns"].min()) if calls.height else None
    evidence = []
    for rank in (first.culprits + first.majority_ranks)[:6]:
        row = entry_row(view, rank, group.key, first.seq)
        if row is not None:
            role = "deviates" if rank in first.culprits else "majority"
            evidence.append(
                evidence_for(row, f"{describe_entry(row)} call site {row.get('call_site')} ({role})")
            )
    stacks = {}
    for rank in first.culprits[:2] + first.majority_ranks[:1]:
        row = entry_row(view, rank, group.key, first.seq)
        if row is not None and row.get("frames") is not None:
            stacks[str(rank)] = frames_text(row.get("frames"))
    names = ranks_text(first.culprits) if first.culprits else "undecided"
    kind_text = {
        "op_type": "a different collective",
        "size": "different sizes",
        "dtype": "a different dtype",
        "call_site": "the same collective from a different call site (extra or missing call)",
        "p2p": "a send/recv whose peer disagrees on size or dtype",
    }[first.kind]
    if first.strict and first.culprits:
        title = (
            f"Collective mismatch in group {group.label} ({group.key}) at #{first.seq} ({op}): "
            f"rank{'s' if len(first.culprits) > 1 else ''} {names} issued {kind_text}; "
            f"ranks {ranks_text(first.majority_ranks)} agree"
        )
    else:
        title = (
            f"Collective mismatch in group {group.label} ({group.key}) at #{first.seq} ({op}): "
            f"ranks disagree ({kind_text}) with no majority"
        )
    missing = []
    if not first.strict:
        missing.append("no majority among the ranks: the deviating side cannot be told from the reference")
    if group.missing_dumps:
        missing.append(f"ranks {ranks_text(group.missing_dumps)} of the group left no dump")
    severity = Severity.ERROR if first.kind == "call_site" else Severity.CRITICAL
    if not first.culprits:
        # Nobody can be named: a lead to look at, never a root cause on its own.
        severity = Severity.INFO
    elif not first.strict:
        # A real disagreement (e.g. a two-rank tie): every side is suspect, none can be singled out.
        severity = Severity.ERROR
    culprit_hosts = sorted({h for r in first.culprits if (h := view.hosts.get(r))})
    affected = sorted(set(first.majority_ranks) | set(first.culprits))
    return Verdict(
        pattern="collective-mismatch",
        title=title,
        severity=severity,
        key=f"group={group.key} seq={first.seq} kind={first.kind}",
        culprit=Culprit(ranks=first.culprits, hosts=culprit_hosts),
        affected=Affected(ranks=affected, hosts=sorted({h for r in affected if (h := view.hosts.get(r))})),
        window_start_ns=first_ts,
        window_end_ns=first_ts,
        evidence=evidence,
        missing_evidence=missing,
        actions=[
            f"Compare the code path of rank(s) {names} with the others at this collective "
            "(rank-dependent branches, skipped or extra calls, different batch shapes or dtypes)."
        ],
        details={
            "group_key": group.key,
            "pg_name": group.name,
            "pg_desc": group.desc,
            "seq": first.seq,
            "op": op,
            "mismatch_kind": first.kind,
            "culprit_ranks": first.culprits,
            "majority_ranks": first.majority_ranks,
            "no_majority": not first.strict,
            "first_ts_ns": first_ts,
            "facts": first.facts,
            "stacks": stacks,
            "later_mismatches": [
                {"seq": f.seq, "kind": f.kind, "culprit_ranks": f.culprits} for f in later[:20]
            ],
            "later_mismatch_count": len(later),
        },
    )


DETECTOR = Detector(
    id="collective-mismatch",
    summary="Members of a group disagree at the same collective (op, sizes, dtype, call site); majority decides the culprit",
    sources=("flight_recorder",),
    tables=("fr_entries", "fr_calls", "fr_groups", "fr_status", "identity"),
    detect=detect,
    scope=__name__,
)
