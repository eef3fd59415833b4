"""Detector ``input-stall``: the rank the others wait for is stuck loading data (pattern P18)."""

from __future__ import annotations

import re

import polars as pl

from ..report import Affected, Confidence, Culprit, Evidence, Severity, Verdict, excerpt
from ..stack_analysis import (
    Activity,
    ProcessView,
    classify,
    gil_contention,
    main_stacks,
    outlier_groups,
    site,
    stack_evidence,
    who,
    window,
)
from ..tables import Tables
from .base import Detector
from .storage_stall import kernel_evidence, kernel_storage_events

# PyTorch's messages when a DataLoader worker process dies (torch/utils/data/_utils/signal_handling.py,
# dataloader.py).
_DEAD_WORKER = re.compile(
    r"DataLoader worker \(pids?\(?s?\)? ?([\d, ]+)\)? (?:is killed by signal|exited unexpectedly)[^\n]*",
    re.IGNORECASE,
)


def detect(tables: Tables) -> list[Verdict]:
    """Name the outlier rank whose main thread is inside data loading.

    What it detects:
        A hang or stall whose culprit rank waits for its input pipeline: the DataLoader (or a
        user-level load/fetch/read-batch function) never delivers the next batch, so the rank never
        reaches the collective its peers wait in.

    Signals:
        ``stacks``: the stack-outlier grouping (see stack-outlier) and the outlier's main-thread
        frames: DataLoader ``_next_data`` / ``_get_data`` / ``_try_get_data``, ``torch/utils/data``,
        dataset ``__getitem__``, queue ``get`` calls, dataset libraries (datasets, webdataset,
        streaming, DALI, …) and user functions named like load/fetch/read/next batch/data/sample.
        Data-loader worker processes (``--subprocesses`` dumps) are reported with their top frame.
        ``app_events``: "DataLoader worker (pid N) is killed by signal" / "exited unexpectedly".

    Rule:
        For each outlier group, the members whose representative main-thread stack is classified
        as data loading (the outermost matching frame decides between data loading and storage)
        in a majority of their snapshots get one verdict. Severity follows the outlier: error when
        the outlier is stalled (see stack-outlier), info otherwise. A dead-worker message on a rank
        with a data-loading stack is added as evidence; a dead-worker message alone gives a
        warning verdict on its rank. Kernel storage trouble on the culprit's host (hung tasks in
        filesystem code, NFS not responding; see storage-stall) is added as evidence: the input
        pipeline is then waiting on storage. Confidence is full with such a second source.

    Known false positives:
        A single snapshot of a healthy job can catch a rank waiting a moment for its next batch;
        the verdict is an error only when the others wait for it and it did not move. A rank that
        legitimately prefetches in the main thread looks the same in one dump.
    """
    verdicts: list[Verdict] = []
    views, _grouping, groups = outlier_groups(tables)
    # A main thread waiting on a queue while another thread hogs the GIL is GIL contention, not input.
    contended, _known = gil_contention(tables, views)
    dead = _dead_workers(tables)
    kernel = kernel_storage_events(tables)
    workers = _worker_tops(tables)
    covered: set[int] = set()
    for group in groups:
        members: list[tuple[ProcessView, Activity]] = []
        for view in group.members:
            if view.key in contended:
                continue
            activity = classify(view.rep)
            votes = sum(1 for s in view.stacks if classify(s).kind == "data-loading")
            if activity.kind == "data-loading" and votes * 2 > len(view.stacks):
                members.append((view, activity))
        if not members:
            continue
        views_in = [m[0] for m in members]
        first, activity = members[0]
        top = site(first.rep)
        frame = activity.frame
        where = top or frame
        ranks = sorted(v.rank for v in views_in if v.rank is not None)
        covered.update(ranks)
        evidence = [stack_evidence(v.rep, v.label) for v in views_in[:3]]
        evidence.append(stack_evidence(group.dominant[0].rep, f"{group.dominant[0].label} (waiting)"))
        worker_facts = {}
        for view in views_in:
            for pid, text, ev in workers.get(view.pid, []) if view.pid is not None else []:
                worker_facts[str(pid)] = text
                if len(evidence) < 6:
                    evidence.append(ev)
        dead_facts = []
        for rank in ranks:
            for ev, pids in dead.get(rank, []):
                evidence.append(ev)
                dead_facts.extend(pids)
        hosts = sorted({v.host for v in views_in if v.host})
        pids = sorted(v.pid for v in views_in if v.pid is not None)
        storage = (
            kernel.filter(pl.col("host").is_in(hosts) | pl.col("pid").is_in(pids))
            if kernel.height
            else kernel
        )
        evidence.extend(kernel_evidence(storage, limit=2))
        start, end = window(views_in)
        via = (
            f" (via {activity.context.function})"
            if activity.context is not None and where is not None and activity.context.key != where.key
            else ""
        )
        title = (
            f"{who(views_in)} stuck loading input: main thread in "
            f"{where.label() if where else 'data-loading code'}{via} while {len(group.dominant)} "
            f"rank{'s' if len(group.dominant) != 1 else ''} wait"
        )
        verdicts.append(
            Verdict(
                pattern="input-stall",
                title=title,
                severity=Severity.ERROR if group.stalled else Severity.INFO,
                key=group.key,
                confidence=Confidence.FULL if (storage.height or dead_facts) else Confidence.PARTIAL,
                culprit=Culprit(ranks=ranks, hosts=hosts, pids=pids),
                affected=Affected(
                    ranks=sorted(v.rank for v in group.dominant if v.rank is not None),
                    hosts=sorted({v.host for v in group.dominant if v.host}),
                ),
                window_start_ns=start,
                window_end_ns=end,
                evidence=evidence,
                missing_evidence=[]
                if worker_facts or dead_facts
                else ["py-spy dump --subprocesses of the culprit (state of its data-loader workers)"],
                actions=[
                    "Check the culprit's data source (dataset storage, network filesystem, object store) and its "
                    "data-loader workers (alive? blocked in I/O?); a worker timeout (DataLoader timeout=) turns "
                    "a silent stall into an error.",
                ],
                details={
                    "ranks": ranks,
                    "data_frame": frame.label() if frame else None,
                    "data_context": activity.context.label() if activity.context else None,
                    "site": where.label() if where else None,
                    "stalled": group.stalled,
                    "dominant_ranks": sorted(v.rank for v in group.dominant if v.rank is not None),
                    "workers": worker_facts,
                    "dead_worker_pids": sorted(set(dead_facts)),
                    "storage_underneath": bool(storage.height),
                    "snapshots_in_data_loading": {
                        v.label: sum(1 for s in v.stacks if classify(s).kind == "data-loading")
                        for v in views_in
                    },
                },
            )
        )
    for rank, items in sorted(dead.items()):
        if rank in covered:
            continue
        pids = sorted({p for _, ps in items for p in ps})
        verdicts.append(
            Verdict(
                pattern="input-stall",
                title=f"rank {rank}: DataLoader worker process died ({', '.join(map(str, pids)) or 'pid unknown'})",
                severity=Severity.WARNING,
                key=f"dead-workers rank={rank}",
                culprit=Culprit(ranks=[rank]),
                evidence=[ev for ev, _ in items[:3]],
                missing_evidence=["py-spy dump of the rank (was its main thread waiting for data?)"],
                actions=["Find why the worker died (host OOM killer, segfault in a decoding library)."],
                details={"ranks": [rank], "dead_worker_pids": pids},
            )
        )
    return verdicts


def _dead_workers(tables: Tables) -> dict[int, list[tuple[Evidence, list[int]]]]:
    """Dead-worker messages in job logs, by rank (rows without a rank are skipped)."""
    if not tables.has("app_events"):
        return {}
    rows = tables.df("app_events").filter(
        pl.col("message").str.contains(r"(?i)DataLoader worker") & pl.col("rank").is_not_null()
    )
    out: dict[int, list[tuple[Evidence, list[int]]]] = {}
    for row in rows.sort("source_file", "source_line").iter_rows(named=True):
        match = _DEAD_WORKER.search(row["message"] or "")
        if not match:
            continue
        pids = [int(p) for p in re.findall(r"\d+", match.group(1))]
        ev = Evidence("app_log", row["source_file"], row["source_line"], excerpt(row["message"] or ""))
        out.setdefault(int(row["rank"]), []).append((ev, pids))
    return out


def _worker_tops(tables: Tables) -> dict[int, list[tuple[int, str, Evidence]]]:
    """Data-loader worker processes by parent pid: (pid, 'function (file:line)', evidence)."""
    stacks = main_stacks(tables, roles=("dataloader-worker",))
    out: dict[int, list[tuple[int, str, Evidence]]] = {}
    seen: set[int] = set()
    for stack in stacks:
        if stack.pid is None or stack.pid in seen:
            continue
        seen.add(stack.pid)
        ppid = _ppid(tables, stack.snapshot_id)
        if ppid is None:
            continue
        top = site(stack)
        text = top.label() if top else "?"
        out.setdefault(ppid, []).append(
            (stack.pid, text, stack_evidence(stack, f"data-loader worker pid {stack.pid}", limit=4))
        )
    return out


def _ppid(tables: Tables, snapshot_id: str) -> int | None:
    rows = tables.df("stacks").filter(pl.col("snapshot_id") == snapshot_id).select("ppid").drop_nulls()
    return int(rows["ppid"][0]) if rows.height else None


DETECTOR = Detector(
    id="input-stall",
    summary="The outlier rank's main thread is stuck in data loading (DataLoader, dataset, load/fetch batch)",
    sources=("pyspy", "app_log", "kernel_log"),
    tables=("stacks", "app_events", "kernel_events", "identity"),
    detect=detect,
    scope=__name__,
)
