"""Detector ``watchdog-timeout``: the collective watchdog fired (pattern P04); who fired, who never did."""

from __future__ import annotations

from collections import Counter
from typing import Any

import polars as pl

from ..report import Affected, Culprit, Severity, Verdict, ranks_text
from ..tables import Tables
from .base import Detector
from .common import evidence_from_row

_KINDS = (
    "watchdog_timeout",
    "watchdog_failure",
    "dump_signal",
    "heartbeat",
    "exception",
    "nccl_init",
    "elastic_failure",
)
MAX_EVIDENCE = 10


def _attr(row: dict[str, Any], key: str) -> str | None:
    attrs = row.get("attrs") or {}
    value = attrs.get(key) if isinstance(attrs, dict) else dict(attrs).get(key)
    return str(value) if value is not None else None


def _expected_ranks(frame: pl.DataFrame, tables: Tables) -> tuple[set[int], str | None]:
    """Ranks the job should have: NCCL world size, else identity/launcher ranks (with the source)."""
    inits = frame.filter(pl.col("kind") == "nccl_init")
    if inits.height:
        world = inits.select(pl.col("attrs").map.get("nranks").cast(pl.Int64, strict=False).max()).item()
        if world:
            return set(range(int(world))), "NCCL world communicator size"
    known: set[int] = set()
    if tables.has("identity"):
        known |= {int(r) for r in tables.df("identity")["rank"].drop_nulls().to_list()}
    # Ranks that left any line in the logs (own log file, [rankN]: prefix, launcher summary) exist.
    known |= {int(r) for r in frame["rank"].drop_nulls().to_list()}
    if known:
        return known, "ranks named by the identity table, launcher summaries or their own log lines"
    return set(), None


def detect(tables: Tables) -> list[Verdict]:
    """Summarise the watchdog timeouts of a job: which ranks fired, on what, and who never did.

    What it detects:
        PyTorch's collective watchdog (or a gloo ``work.wait()``) gave up on a collective: the
        ``Watchdog caught collective operation timeout: WorkNCCL(SeqNum=…, OpType=…, Timeout(ms)=…)``
        lines, the "Exception … detected by watchdog at work: N, last enqueued …, last completed …"
        companion lines, heartbeat-monitor timeouts, "Received a dump signal … from rank R", and
        gloo's "Timed out waiting Nms for recv/send operation".

    Signals:
        ``app_events`` kinds ``watchdog_timeout`` (seq, op_type, timeout_ms), ``watchdog_failure``
        (seq, last_enqueued, last_completed), ``dump_signal`` (detector_rank), ``heartbeat``
        (severity error), ``exception`` rows with ``timeout_ms`` (gloo); NCCL ``nccl_init`` rows for
        the world size; the identity table and launcher summaries for the ranks that exist.

    Rule:
        Every watchdog fire is a consequence by default: correlation makes this verdict a symptom
        of whatever explains it (crash, device loss, hang) and root only when nothing does. One
        verdict per job, severity error. details: seq and op_type (most common among fires),
        timeout_ms (smallest), first_ts_ns (earliest fire with a time), fired_ranks,
        never_fired_ranks (expected ranks minus those that fired, when the world is known),
        fires (per rank: seq, op, timeout, ts), lowest_last_completed (ranks whose last completed
        seq is lowest: stragglers), op_mismatch (ranks that timed out on a different op for the
        same seq: desync), first_detector_rank (the rank a "dump signal from rank R" line names:
        the first to notice, NOT the culprit). Culprit: the ranks that never fired, when the world
        is known and some did fire (the rank that never times out is usually the one the others
        wait for); otherwise none: the ranks that fired are affected, never blamed.

    Known false positives:
        A timeout set too short for a legitimately slow collective (large all-gather, first
        compile) fires without any fault. Ranks whose logs were not collected look like ranks that
        never fired: never_fired_ranks is only as good as the set of logs provided.
    """
    if not tables.has("app_events"):
        return []
    events = tables.df("app_events").filter(pl.col("kind").is_in(list(_KINDS)))
    fires = events.filter(
        (pl.col("kind") == "watchdog_timeout")
        | ((pl.col("kind") == "exception") & pl.col("timeout_ms").is_not_null())
        | ((pl.col("kind") == "heartbeat") & (pl.col("severity") == "error"))
    ).sort("source_file", "source_line")
    if fires.height == 0:
        return []
    failures = events.filter(pl.col("kind") == "watchdog_failure").sort("source_file", "source_line")
    dumps = events.filter(pl.col("kind") == "dump_signal").sort("source_file", "source_line")
    rows = fires.to_dicts()
    timed = [r for r in rows if r["ts_ns"] is not None]
    first = min(timed, key=lambda r: r["ts_ns"]) if timed else rows[0]
    fired = sorted({int(r["rank"]) for r in rows if r["rank"] is not None})
    hosts = sorted({str(r["host"]) for r in rows if r["host"]})
    seq_counts = Counter(
        (r["seq"], r["op_type"]) for r in rows if r["kind"] == "watchdog_timeout" and r["seq"] is not None
    )
    seq, op_type = seq_counts.most_common(1)[0][0] if seq_counts else (None, None)
    if op_type is None:
        ops = Counter(r["op_type"] for r in rows if r["op_type"])
        op_type = ops.most_common(1)[0][0] if ops else None
    timeouts = [int(r["timeout_ms"]) for r in rows if r["timeout_ms"] is not None]
    timeout_ms = min(timeouts) if timeouts else None
    per_rank: dict[str, dict[str, Any]] = {}
    for r in rows:
        key = str(r["rank"]) if r["rank"] is not None else f"{r['source_file']}:{r['source_line']}"
        per_rank.setdefault(
            key,
            {
                "seq": r["seq"],
                "op_type": r["op_type"],
                "timeout_ms": r["timeout_ms"],
                "ts_ns": r["ts_ns"],
                "kind": r["kind"],
                "host": r["host"],
            },
        )
    # Same seq, different op on some rank: the ranks disagree on what collective they are in.
    by_seq: dict[int, dict[str, list[int]]] = {}
    for r in rows:
        if (
            r["kind"] == "watchdog_timeout"
            and r["seq"] is not None
            and r["rank"] is not None
            and r["op_type"]
        ):
            by_seq.setdefault(int(r["seq"]), {}).setdefault(str(r["op_type"]), []).append(int(r["rank"]))
    op_mismatch = {
        str(s): {op: sorted(set(rs)) for op, rs in ops.items()} for s, ops in by_seq.items() if len(ops) > 1
    }
    completed: dict[int, int] = {}
    for r in failures.to_dicts():
        done = _attr(r, "last_completed")
        if r["rank"] is not None and done is not None and done.lstrip("-").isdigit():
            completed[int(r["rank"])] = min(int(done), completed.get(int(r["rank"]), int(done)))
    lowest = sorted(
        r
        for r, v in completed.items()
        if completed and v == min(completed.values()) and len(set(completed.values())) > 1
    )
    detector_rank: int | None = None
    for r in dumps.to_dicts():
        value = _attr(r, "detector_rank")
        if value is not None and value.isdigit():
            detector_rank = int(value)
            break
    expected, expected_source = _expected_ranks(tables.df("app_events"), tables)
    never = sorted(expected - set(fired)) if expected and fired else []
    missing: list[str] = []
    if expected_source != "NCCL world communicator size":
        missing.append(
            "world size not stated (NCCL INFO init lines or [[ranks]] in incident.toml): ranks that left "
            "no line at all cannot be named as never timed out"
        )
    if any(r["rank"] is None for r in rows):
        missing.append(
            "rank of some watchdog lines (no [rankN]: prefix, [Rank N] tag or rank in the file name)"
        )
    if not timed:
        missing.append(
            "times of the watchdog lines (no timestamps in the log): the stall start cannot be estimated"
        )
    if not tables.has("fr_entries"):
        missing.append(
            "flight-recorder dumps (TORCH_NCCL_TRACE_BUFFER_SIZE) to see which rank did not enter the collective"
        )
    what = f"seq {seq} {op_type}" if seq is not None else (op_type or "a collective")
    if timeout_ms is not None:
        what += f" after {timeout_ms} ms"
    title = f"Watchdog timeout on ranks {ranks_text(fired)}: {what}" if fired else f"Watchdog timeout: {what}"
    if never:
        title += f"; rank(s) {ranks_text(never)} never timed out"
    evidence = [evidence_from_row("app_log", r) for r in rows[:MAX_EVIDENCE]]
    for extra in (failures.head(3).to_dicts(), dumps.head(2).to_dicts()):
        evidence.extend(evidence_from_row("app_log", r) for r in extra)
    last = max((r["ts_ns"] for r in timed), default=None)
    details: dict[str, Any] = {
        "seq": seq,
        "op_type": op_type,
        "timeout_ms": timeout_ms,
        "first_ts_ns": first["ts_ns"],
        "first_fire": {
            "rank": first["rank"],
            "host": first["host"],
            "file": first["source_file"],
            "line": first["source_line"],
        },
        "fired_ranks": fired,
        "never_fired_ranks": never,
        "expected_ranks_source": expected_source,
        "fires": per_rank,
        "lowest_last_completed": {"ranks": lowest, "seq": min(completed.values())} if lowest else None,
        "op_mismatch": op_mismatch or None,
        "first_detector_rank": detector_rank,
        "backend": "gloo" if any(_attr(r, "backend") == "gloo" for r in rows) else "nccl",
    }
    return [
        Verdict(
            pattern="watchdog-timeout",
            title=title,
            severity=Severity.ERROR,
            key=f"seq={seq} op={op_type}",
            culprit=Culprit(ranks=never),
            affected=Affected(ranks=fired, hosts=hosts),
            window_start_ns=first["ts_ns"],
            window_end_ns=last,
            evidence=evidence,
            missing_evidence=missing,
            actions=[
                "Treat the timeout as a consequence: look for what stopped the rank(s) that never timed out "
                "(crash, GPU/host fault, data or storage stall) shortly before first fire minus timeout",
                "Collect flight-recorder dumps and py-spy stacks of all ranks on the next occurrence",
            ],
            details=details,
        )
    ]


DETECTOR = Detector(
    id="watchdog-timeout",
    summary="Collective watchdog fired: which ranks, which seq/op, who never timed out (a symptom unless nothing explains it)",
    sources=("app_log",),
    tables=("app_events", "fr_entries", "identity"),
    detect=detect,
    scope=__name__,
)
