"""Main-thread stacks per process, normalised for comparison across ranks (docs/stacks.md).

The stack detectors (``stack-outlier``, ``input-stall``, ``storage-stall``, ``gil-contention``)
share this view of the ``stacks`` table:

* one :class:`MainStack` per snapshot of a training process (its main thread's frames, innermost
  first; for record formats the stack with the most samples);
* one :class:`ProcessView` per process (rank when known, else host and pid) with its snapshots, the
  representative stack (the signature most of its snapshots show) and whether it moved;
* :func:`group_processes`: identical normalised signatures form groups; the largest group is the
  expected state and small groups (≤ 25 % of the processes and ≤ 10 members) are outliers.

A signature is the tuple of Python frame keys (function + file basename, no line numbers, native
frames dropped) so the same code path compares equal across ranks, dumps with ``--native`` or
``--full-filenames``, and record formats.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from .report import Evidence, excerpt, ranks_text
from .tables import Tables

OUTLIER_SHARE = 0.25
OUTLIER_MAX_MEMBERS = 10
SKEW_WARN_NS = 10 * 1_000_000_000

TRAINING_ROLES = ("trainer", "unknown")
_FORMAT_ORDER = {"dump-text": 0, "dump-json": 1, "record-raw": 2, "speedscope": 3, "chrometrace": 4}

# Frames that say where a thread waits but not why (threading, queues, wrappers): skipped when
# naming the site a stack is "in".
_GENERIC_FILES = frozenset(
    {
        "threading.py",
        "queue.py",
        "queues.py",
        "selectors.py",
        "connection.py",
        "synchronize.py",
        "socket.py",
        "ssl.py",
        "contextlib.py",
        "functools.py",
        "c10d_logger.py",
        "module.py",
        "_contextlib.py",
        "popen_fork.py",
        "subprocess.py",
    }
)
_GENERIC_FUNCTIONS = re.compile(r"(?:^|\.)(?:wrapper|_wrapped_call_impl|_call_impl|inner|decorate_context)$")

COLLECTIVE_FUNCTIONS = frozenset(
    {
        "all_reduce",
        "all_gather",
        "all_gather_into_tensor",
        "all_gather_object",
        "reduce_scatter",
        "reduce_scatter_tensor",
        "all_to_all",
        "all_to_all_single",
        "broadcast",
        "broadcast_object_list",
        "reduce",
        "gather",
        "scatter",
        "barrier",
        "monitored_barrier",
        "send",
        "recv",
        "isend",
        "irecv",
        "batch_isend_irecv",
        "wait",
        "synchronize",
        "item",
    }
)
_COLLECTIVE_FILES = ("distributed_c10d.py", "_functional_collectives.py")


@dataclass(frozen=True)
class Frame:
    """One frame of a main-thread stack, with its place in the input file."""

    function: str
    file: str | None
    line: int | None
    key: str
    module: str | None
    source_file: str
    source_line: int | None

    @property
    def basename(self) -> str:
        """File name without folders."""
        return (self.file or "").replace("\\", "/").rsplit("/", 1)[-1]

    @property
    def short_name(self) -> str:
        """Function name without its class or enclosing function (``Queue.get`` → ``get``)."""
        return self.function.rsplit(".", 1)[-1]

    def label(self) -> str:
        """``function (file:line)`` as py-spy prints it."""
        where = self.file or "?"
        return (
            f"{self.function} ({where}:{self.line})"
            if self.line is not None
            else f"{self.function} ({where})"
        )


@dataclass
class MainStack:
    """The main thread of one process in one snapshot."""

    snapshot_id: str
    source_file: str
    capture_format: str
    ts_ns: int | None
    ts_origin: str | None
    host: str | None
    pid: int | None
    rank: int | None
    rank_source: str | None
    thread_name: str | None
    thread_id: int | None
    active: bool | None
    owns_gil: bool | None
    samples: int
    frames: list[Frame]
    moving: bool = False
    is_main: bool = True

    @property
    def python_frames(self) -> list[Frame]:
        """Frames of Python code (native frames dropped), innermost first."""
        return [f for f in self.frames if f.module is None]

    @property
    def signature(self) -> tuple[str, ...]:
        """Normalised identity of the code path: Python frame keys, innermost first."""
        return tuple(f.key for f in self.python_frames)

    @property
    def exact(self) -> tuple[tuple[str, int | None], ...]:
        """Signature with line numbers: equal only when the thread did not move at all."""
        return tuple((f.key, f.line) for f in self.python_frames)

    @property
    def known_time(self) -> int | None:
        """Capture time only when the capture itself states it (not the manifest's job time)."""
        return self.ts_ns if (self.ts_origin or "").startswith("file") else None

    @property
    def has_native(self) -> bool:
        """True when the dump was taken with ``--native``."""
        return any(f.module is not None for f in self.frames)


@dataclass
class ProcessView:
    """All main-thread snapshots of one training process."""

    key: str
    rank: int | None
    host: str | None
    pid: int | None
    stacks: list[MainStack]
    signature: tuple[str, ...] = ()
    representative: MainStack | None = None
    moving: bool = False
    unchanged: int = 0
    distinct_times: int = 0

    @property
    def label(self) -> str:
        """``rank 2`` or ``pid 7679`` (``on host`` when the host is known)."""
        if self.rank is not None:
            return f"rank {self.rank}"
        return f"pid {self.pid}" + (f" on {self.host}" if self.host else "")

    @property
    def rep(self) -> MainStack:
        """The representative stack (always set by :func:`process_views`)."""
        assert self.representative is not None
        return self.representative

    @property
    def idle(self) -> bool | None:
        """Main thread idle (blocked) in the representative snapshot; None when unknown."""
        return self.rep.active is False if self.rep.active is not None else None


@dataclass
class Grouping:
    """Processes grouped by signature: the dominant group and the outlier groups."""

    total: int
    groups: list[list[ProcessView]]
    dominant: list[ProcessView] = field(default_factory=list)
    outliers: list[list[ProcessView]] = field(default_factory=list)


def _frames_frame(tables: Tables) -> pl.DataFrame:
    if not tables.has("stacks"):
        return tables.df("stacks").clear()
    return tables.df("stacks")


def main_stacks(tables: Tables, roles: Sequence[str] = TRAINING_ROLES) -> list[MainStack]:
    """Main-thread stack of every snapshot of every process with one of ``roles``."""
    frame = _frames_frame(tables)
    if frame.is_empty():
        return []
    rows = frame.filter(pl.col("is_main_thread") & pl.col("process_role").is_in(list(roles)))
    return _stacks_from_rows(rows)


def thread_stacks(tables: Tables, snapshot_ids: Iterable[str]) -> dict[str, list[MainStack]]:
    """Every thread's stacks in the given snapshots, by snapshot id (used to find the GIL holder)."""
    frame = _frames_frame(tables)
    wanted = sorted(set(snapshot_ids))
    if frame.is_empty() or not wanted:
        return {}
    out: dict[str, list[MainStack]] = {}
    for stack in _stacks_from_rows(frame.filter(pl.col("snapshot_id").is_in(wanted)), per_thread=True):
        out.setdefault(stack.snapshot_id, []).append(stack)
    return out


def _stacks_from_rows(rows: pl.DataFrame, per_thread: bool = False) -> list[MainStack]:
    if rows.is_empty():
        return []
    keys = ["snapshot_id", "stack_id"]
    grouped = (
        rows.sort("snapshot_id", "stack_id", "depth", nulls_last=True)
        .group_by(keys, maintain_order=True)
        .agg(
            pl.col("source_file").first(),
            pl.col("capture_format").first(),
            pl.col("ts_ns").first(),
            pl.col("ts_origin").first(),
            pl.col("host").first(),
            pl.col("pid").first(),
            pl.col("rank").first(),
            pl.col("rank_source").first(),
            pl.col("thread_name").first(),
            pl.col("thread_id").first(),
            pl.col("active").first(),
            pl.col("owns_gil").first(),
            pl.col("samples").first(),
            pl.col("is_main_thread").first(),
            pl.col("function"),
            pl.col("file"),
            pl.col("line"),
            pl.col("frame_key"),
            pl.col("module"),
            pl.col("source_line"),
        )
    )
    stacks: list[MainStack] = []
    for row in grouped.iter_rows(named=True):
        frames = [
            Frame(fn, fl, ln, key, mod, row["source_file"], sl)
            for fn, fl, ln, key, mod, sl in zip(
                row["function"],
                row["file"],
                row["line"],
                row["frame_key"],
                row["module"],
                row["source_line"],
                strict=True,
            )
            if fn is not None
        ]
        stacks.append(
            MainStack(
                snapshot_id=row["snapshot_id"],
                source_file=row["source_file"],
                capture_format=row["capture_format"],
                ts_ns=row["ts_ns"],
                ts_origin=row["ts_origin"],
                host=row["host"],
                pid=row["pid"],
                rank=row["rank"],
                rank_source=row["rank_source"],
                thread_name=row["thread_name"],
                thread_id=row["thread_id"],
                active=row["active"],
                owns_gil=row["owns_gil"],
                samples=int(row["samples"] or 1),
                frames=frames,
                is_main=bool(row["is_main_thread"]),
            )
        )
    if per_thread:
        return stacks
    # Record formats hold several stacks of the main thread: keep the one with the most samples and
    # remember that the thread moved while it was sampled.
    best: dict[str, MainStack] = {}
    exacts: dict[str, set[tuple[str, ...]]] = {}
    for stack in stacks:
        exacts.setdefault(stack.snapshot_id, set()).add(stack.signature)
        current = best.get(stack.snapshot_id)
        if current is None or stack.samples > current.samples:
            best[stack.snapshot_id] = stack
    for snapshot_id, stack in best.items():
        stack.moving = len(exacts[snapshot_id]) > 1
    return list(best.values())


def _preference(stack: MainStack) -> tuple[int, bool, int, str]:
    """Which snapshot to cite: plain text dumps first, then the shortest file name."""
    return (
        _FORMAT_ORDER.get(stack.capture_format, 9),
        stack.has_native,
        len(stack.source_file),
        stack.source_file,
    )


def process_views(tables: Tables) -> list[ProcessView]:
    """One view per training process (rank when known, else host + pid), sorted by rank then pid."""
    by_key: dict[str, list[MainStack]] = {}
    for stack in main_stacks(tables):
        if not stack.frames:
            continue
        if stack.rank is not None:
            key = f"rank={stack.rank}"
        elif stack.pid is not None:
            key = f"host={stack.host or ''} pid={stack.pid}"
        else:
            continue  # a capture that names neither rank nor pid cannot be compared with others
        by_key.setdefault(key, []).append(stack)
    views: list[ProcessView] = []
    for key, stacks in by_key.items():
        first = stacks[0]
        view = ProcessView(key, first.rank, first.host, first.pid, stacks)
        counts = Counter(s.signature for s in stacks)
        newest: dict[tuple[str, ...], int] = {}
        for stack in stacks:
            if stack.known_time is not None:
                newest[stack.signature] = max(newest.get(stack.signature, -1), stack.known_time)
        # Most snapshots win; a tie goes to the signature seen at the latest stated capture time.
        view.signature = max(sorted(counts), key=lambda sig: (counts[sig], newest.get(sig, -1)))
        members = [s for s in stacks if s.signature == view.signature]
        view.representative = min(members, key=_preference)
        exact = view.rep.exact
        view.unchanged = sum(1 for s in stacks if s.exact == exact)
        # Moving = a different code path in another snapshot. Line changes inside the same functions
        # (a retry or polling loop) are still "stuck there".
        view.moving = len(counts) > 1 or any(s.moving for s in stacks)
        view.distinct_times = len({s.known_time for s in stacks if s.known_time is not None})
        if view.pid is None:
            view.pid = next((s.pid for s in stacks if s.pid is not None), None)
        if view.host is None:
            view.host = next((s.host for s in stacks if s.host is not None), None)
        views.append(view)
    views.sort(key=lambda v: (v.rank is None, v.rank if v.rank is not None else 0, v.pid or 0, v.key))
    return views


def group_processes(views: Sequence[ProcessView]) -> Grouping:
    """Group by signature; the strictly largest group is dominant, small groups are outliers."""
    by_signature: dict[tuple[str, ...], list[ProcessView]] = {}
    for view in views:
        by_signature.setdefault(view.signature, []).append(view)
    groups = sorted(by_signature.values(), key=lambda g: (-len(g), _group_order(g)))
    grouping = Grouping(total=len(views), groups=groups)
    if len(groups) < 2 or len(groups[0]) == len(groups[1]):
        return grouping
    grouping.dominant = groups[0]
    limit = min(OUTLIER_SHARE * len(views), OUTLIER_MAX_MEMBERS)
    grouping.outliers = [g for g in groups[1:] if len(g) <= limit]
    return grouping


def _group_order(group: Sequence[ProcessView]) -> tuple[int, int]:
    view = group[0]
    return (view.rank if view.rank is not None else 1 << 30, view.pid or 0)


def site(stack: MainStack) -> Frame | None:
    """The innermost Python frame that says what the thread is doing (skips threading/queue plumbing)."""
    python = stack.python_frames
    for frame in python:
        if frame.basename in _GENERIC_FILES or _GENERIC_FUNCTIONS.search(frame.function):
            continue
        return frame
    return python[0] if python else (stack.frames[0] if stack.frames else None)


def divergence(outlier: MainStack, dominant: MainStack) -> dict[str, Any]:
    """Where two stacks part, walking from the outermost frame inwards."""
    a = list(reversed(outlier.python_frames))
    b = list(reversed(dominant.python_frames))
    index = 0
    while index < len(a) and index < len(b) and a[index].key == b[index].key:
        index += 1
    common = a[index - 1] if index > 0 else None
    return {
        "outlier_function": a[index].function if index < len(a) else (a[-1].function if a else None),
        "depth_from_root": index,
        "outlier_frame": a[index].label() if index < len(a) else (a[-1].label() if a else None),
        "dominant_frame": b[index].label() if index < len(b) else None,
        "common_frame": common.label() if common else None,
    }


def in_collective(stack: MainStack) -> Frame | None:
    """The collective / synchronisation frame the stack waits in, if any."""
    for frame in stack.python_frames:
        if frame.basename in _COLLECTIVE_FILES or (
            frame.short_name in COLLECTIVE_FUNCTIONS and (frame.basename.endswith(".py") or not frame.file)
        ):
            if frame.short_name in ("wait", "item", "synchronize") and frame.basename in _GENERIC_FILES:
                continue
            return frame
    return None


def waiting(stack: MainStack) -> bool:
    """The main thread is blocked: idle per py-spy, or (status unknown) inside a collective/sync call."""
    if stack.active is not None:
        return not stack.active or in_collective(stack) is not None
    return in_collective(stack) is not None


def stack_text(stack: MainStack, who: str, limit: int = 6) -> str:
    """``rank 2 MainThread (idle): f (file:line) ← g (file:line) …`` innermost first."""
    status = "idle" if stack.active is False else ("active" if stack.active else "status unknown")
    if stack.owns_gil:
        status += "+gil"
    frames = stack.python_frames or stack.frames
    shown = " ← ".join(f.label() for f in frames[:limit])
    more = f" ← … {len(frames) - limit} more" if len(frames) > limit else ""
    name = stack.thread_name or "thread"
    return f"{who} {name} ({status}): {shown}{more}"


def stack_evidence(stack: MainStack, who: str, limit: int = 6) -> Evidence:
    """Evidence citing the innermost Python frame's line in the dump, with the stack as excerpt."""
    frames = stack.python_frames or stack.frames
    line = frames[0].source_line if frames else None
    return Evidence(
        source="pyspy", file=stack.source_file, line=line, excerpt=excerpt(stack_text(stack, who, limit))
    )


def who(views: Iterable[ProcessView]) -> str:
    """``rank 2`` / ``ranks 0, 1, 3`` / ``pid 7679`` for titles."""
    members = list(views)
    ranks = [v.rank for v in members if v.rank is not None]
    others = [v.label for v in members if v.rank is None]
    parts: list[str] = []
    if ranks:
        parts.append(("rank " if len(ranks) == 1 else "ranks ") + ranks_text(ranks))
    parts.extend(others)
    return ", ".join(parts) if parts else "no process"


def snapshot_skew_ns(views: Iterable[ProcessView]) -> int | None:
    """Spread of the capture times of the representative snapshots (only times stated in the files)."""
    times = [v.rep.known_time for v in views if v.rep.known_time is not None]
    return max(times) - min(times) if len(times) >= 2 else None


def window(views: Iterable[ProcessView]) -> tuple[int | None, int | None]:
    """Earliest and latest capture time of the views' snapshots (any origin)."""
    times = [s.ts_ns for v in views for s in v.stacks if s.ts_ns is not None]
    return (min(times), max(times)) if times else (None, None)


# --- what a stack is doing -----------------------------------------------------------------------
_DATA_PATHS = re.compile(
    r"(?:^|/)(?:torch/utils/data|datasets|webdataset|streaming|torchdata|petastorm|nvidia/dali|ray/data|"
    r"ffcv|grain|litdata)/"
)
_DATA_FUNCTIONS = re.compile(
    r"^(?:_next_data|_get_data|_try_get_data|_next_index|__getitem__|__getitems__|__iter__|__next__|"
    r"collate|default_collate|_worker_loop|get_batch|next_batch)$"
)
_DATA_USER = re.compile(
    r"(?i)(?:^|_)(?:load|fetch|read|get|next|prefetch|sample)_?(?:batch|batches|data|dataset|sample|samples|"
    r"example|examples|item|items|shard|shards|record|records|input|inputs)(?:$|_)|(?:^|_)(?:data|batch)_?(?:load|fetch|read)"
)
_QUEUE_GET = re.compile(r"^(?:Queue|SimpleQueue|JoinableQueue|PriorityQueue|LifoQueue)\.get$")

_STORAGE_PATHS = re.compile(
    r"(?:^|/)(?:torch/serialization\.py|torch/distributed/checkpoint/|safetensors/|orbax/|"
    r"deepspeed/runtime/checkpoint_engine/|lightning/.*checkpoint|megatron/.*checkpointing\.py|"
    r"torchsnapshot/)"
)
_OBJECT_STORE_PATHS = re.compile(
    r"(?:^|/)(?:botocore|boto3|s3transfer|s3fs|gcsfs|google/cloud/storage|azure/storage|adlfs|"
    r"minio|fsspec|obstore|tosfs|oss2)/"
)
_STORAGE_FUNCTIONS = re.compile(
    r"(?i)(?:^|_)(?:save|saves|write|writes|dump|dumps|flush|fsync|fdatasync|persist|upload|serialize|"
    r"checkpoint|checkpoints|ckpt)(?:$|_)"
)
_STORAGE_FILES = frozenset(
    {"serialization.py", "pickle.py", "shutil.py", "zipfile.py", "tarfile.py", "tempfile.py"}
)
_STORAGE_NATIVE = frozenset(
    {
        "fsync",
        "fdatasync",
        "__libc_write",
        "__GI___libc_write",
        "write",
        "__libc_open64",
        "open64",
        "sync_file_range",
        "msync",
        "syncfs",
    }
)
GIL_WAIT_NATIVE = frozenset(
    {"take_gil", "PyEval_RestoreThread", "PyEval_AcquireThread", "PyEval_AcquireLock", "PyGILState_Ensure"}
)


def _file_path(frame: Frame) -> str:
    return (frame.file or "").replace("\\", "/")


def is_data_frame(frame: Frame) -> bool:
    """Frame of data-loading code (DataLoader iteration, datasets, queue gets, load/fetch/read batch)."""
    if frame.module is not None:
        return False
    path = _file_path(frame)
    name = frame.short_name
    if _DATA_PATHS.search(path):
        return True
    if _DATA_FUNCTIONS.match(name) and (name not in ("__iter__", "__next__") or "data" in path.lower()):
        return True
    return bool(_DATA_USER.search(name) or _QUEUE_GET.match(frame.function))


def is_storage_frame(frame: Frame) -> bool:
    """Frame of checkpoint or file-write code (torch.save, DCP, safetensors, write/flush/fsync)."""
    path = _file_path(frame)
    if frame.module is not None:
        return frame.function in _STORAGE_NATIVE
    if "utils/checkpoint.py" in path:
        return False  # activation checkpointing (recompute in backward), not storage
    if _STORAGE_PATHS.search(path):
        return True
    name = frame.short_name
    if frame.basename in _STORAGE_FILES and _STORAGE_FUNCTIONS.search(name.lstrip("_")):
        return True
    if name in ("write", "flush", "fsync", "close", "writelines") and frame.basename in (
        "",
        "gzip.py",
        "_compression.py",
        "shutil.py",
        "zipfile.py",
        "tarfile.py",
        "os.py",
        "tempfile.py",
        "codecs.py",
        "lzma.py",
        "bz2.py",
    ):
        return True
    if frame.function in ("fsync", "fdatasync", "os.fsync", "copyfileobj", "copyfile", "copy2"):
        return True
    return bool(_STORAGE_FUNCTIONS.search(name))


def is_object_store_frame(frame: Frame) -> bool:
    """Frame of an object-store client (S3, GCS, Azure, fsspec)."""
    return frame.module is None and bool(_OBJECT_STORE_PATHS.search(_file_path(frame)))


@dataclass(frozen=True)
class Activity:
    """What a stack is doing: ``data-loading``, ``storage`` or ``None``, with the frames that say so."""

    kind: str | None
    frame: Frame | None = None
    context: Frame | None = None


def classify(stack: MainStack) -> Activity:
    """Data loading or storage I/O, decided by the outermost matching frame (the purpose of the call).

    A read inside a dataset's ``__getitem__`` is data loading; a write inside ``torch.save`` is
    storage. Object-store client frames count as storage only outside data-loading code.
    """
    frames = stack.frames
    data = [i for i, f in enumerate(frames) if is_data_frame(f)]
    storage = [i for i, f in enumerate(frames) if is_storage_frame(f)]
    store = [i for i, f in enumerate(frames) if is_object_store_frame(f)]
    if data and (not storage or max(data) > max(storage)):
        inner = frames[min(data)]
        return Activity("data-loading", inner, frames[max(data)])
    if storage or store:
        indexes = storage or store
        return Activity("storage", frames[min(indexes)], frames[max(indexes)])
    return Activity(None)


def gil_wait_frame(stack: MainStack) -> Frame | None:
    """Native frame showing the thread waiting to take the GIL (``take_gil``…), from ``--native`` dumps."""
    return next((f for f in stack.frames if f.module is not None and f.function in GIL_WAIT_NATIVE), None)


# --- outlier assessment shared by the stack detectors ---------------------------------------------
@dataclass
class OutlierGroup:
    """One outlier group with the facts every stack detector reports about it."""

    members: list[ProcessView]
    dominant: list[ProcessView]
    total: int
    stalled: bool
    dominant_waiting: bool
    moving: bool
    reason: str

    @property
    def ranks(self) -> list[int]:
        """Ranks of the members that have one."""
        return sorted(v.rank for v in self.members if v.rank is not None)

    @property
    def pids(self) -> list[int]:
        """Pids of the members that have one."""
        return sorted(v.pid for v in self.members if v.pid is not None)

    @property
    def hosts(self) -> list[str]:
        """Hosts of the members, when known."""
        return sorted({v.host for v in self.members if v.host})

    @property
    def key(self) -> str:
        """Stable discriminator for verdict keys."""
        if self.ranks:
            return "ranks=" + ",".join(str(r) for r in self.ranks)
        return "pids=" + ",".join(f"{v.host or ''}:{v.pid}" for v in self.members)


def outlier_groups(tables: Tables) -> tuple[list[ProcessView], Grouping, list[OutlierGroup]]:
    """Every training process, their grouping and the assessed outlier groups.

    An outlier group is *stalled* when the dominant group waits (idle, or inside a collective when
    py-spy gave no status), the outlier did not move between its snapshots, and it is blocked
    (idle) or was seen unchanged at two different capture times.
    """
    views = process_views(tables)
    grouping = group_processes(views)
    assessed: list[OutlierGroup] = []
    if not grouping.dominant:
        return views, grouping, assessed
    dominant_waiting = all(waiting(v.rep) for v in grouping.dominant)
    for members in grouping.outliers:
        moving = any(v.moving for v in members)
        idle = [v.idle for v in members]
        repeated = all(v.unchanged >= 2 and v.distinct_times >= 2 for v in members)
        blocked = all(i is True for i in idle) or repeated or all(i is None for i in idle)
        if not dominant_waiting:
            reason = "the other ranks are not waiting, so the job was probably still running"
        elif moving:
            reason = "its stack changed between snapshots (it was still making progress)"
        elif not blocked:
            reason = "its main thread was running on CPU in a single snapshot (possibly just slower)"
        else:
            reason = "it is blocked elsewhere while the others wait for it"
        assessed.append(
            OutlierGroup(
                members=members,
                dominant=grouping.dominant,
                total=grouping.total,
                stalled=dominant_waiting and not moving and blocked,
                dominant_waiting=dominant_waiting,
                moving=moving,
                reason=reason,
            )
        )
    return views, grouping, assessed


def undumped_ranks(tables: Tables, views: Sequence[ProcessView]) -> list[int]:
    """Ranks the identity table knows (manifest, flight recorder, logs) that left no main-thread stack."""
    if not tables.has("identity"):
        return []
    known = {int(r) for r in tables.df("identity")["rank"].drop_nulls().to_list()}
    dumped = {v.rank for v in views if v.rank is not None}
    return sorted(known - dumped)


@dataclass
class GilContention:
    """One snapshot where a non-main thread holds the GIL while the main thread waits."""

    snapshot_id: str
    main: MainStack
    holder: MainStack
    gil_wait: bool


def gil_contention(
    tables: Tables, views: Sequence[ProcessView]
) -> tuple[dict[str, list[GilContention]], set[str]]:
    """Contended snapshots per process key, and the keys whose captures carry any GIL status."""
    threads = thread_stacks(tables, [s.snapshot_id for v in views for s in v.stacks])
    found: dict[str, list[GilContention]] = {}
    known: set[str] = set()
    for view in views:
        for stack in view.stacks:
            snapshot = threads.get(stack.snapshot_id, [])
            if any(t.owns_gil is not None for t in snapshot):
                known.add(view.key)
            holders = [t for t in snapshot if not t.is_main and t.owns_gil]
            if not holders or stack.owns_gil:
                continue
            # Only one thread runs Python at a time: while another thread holds the GIL the main
            # thread is either blocked (idle) or runnable and waiting to take it (active, no GIL).
            waits_for_gil = gil_wait_frame(stack) is not None
            found.setdefault(view.key, []).append(
                GilContention(stack.snapshot_id, stack, holders[0], waits_for_gil)
            )
    return found, known


_STEP_NAMES = ("global_step", "step", "iteration", "iter_num", "curr_step")


def step_locals(tables: Tables) -> dict[str, int]:
    """Training step per process key, from the main thread's locals (``--locals`` dumps), when present.

    Ranks at different step values are in different iterations: a cheap way to see who is behind.
    """
    frame = _frames_frame(tables)
    if frame.is_empty():
        return {}
    rows = frame.filter(
        pl.col("is_main_thread")
        & pl.col("locals").is_not_null()
        & pl.col("process_role").is_in(list(TRAINING_ROLES))
    ).sort("snapshot_id", "stack_id", "depth")
    found: dict[str, int] = {}
    for row in rows.select("rank", "host", "pid", "locals").iter_rows(named=True):
        key = (
            f"rank={row['rank']}" if row["rank"] is not None else f"host={row['host'] or ''} pid={row['pid']}"
        )
        if key in found:
            continue
        raw = row["locals"] or []
        # Polars gives an Arrow map either as key/value structs or as (key, value) pairs.
        values = (
            dict(raw)
            if isinstance(raw, dict)
            else {
                (item["key"] if isinstance(item, dict) else item[0]): (
                    item["value"] if isinstance(item, dict) else item[1]
                )
                for item in raw
            }
        )
        for name in _STEP_NAMES:
            value = (values.get(name) or "").strip()
            if re.fullmatch(r"-?\d+", value):
                found[key] = int(value)
                break
    return found
