"""Build flight-recorder dumps the way torch writes them: pickle protocol 2 of plain containers
(frames memo-shared, ``process_group`` a tuple, missing timestamps None) or
``_dump_fr_trace_json`` JSON (sorted keys, no frames, list groups, 0 for unknown times, string
pg_status values, ``entries`` omitted when empty).

A :class:`Job` records what each rank enqueued, in order, and keeps the per-group counters torch
keeps (collective_seq_id, p2p_seq_id, op_id, record_id), so tests describe scenarios as programs.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASE_NS = 1_790_000_000_000_000_000

# Shared frame dicts: pickle emits each once and references it through the memo, like torch.
_FRAME_CACHE: dict[tuple[str, str, int], dict[str, Any]] = {}


def frame(name: str, filename: str, line: int) -> dict[str, Any]:
    """One shared frame dict."""
    key = (name, filename, line)
    if key not in _FRAME_CACHE:
        _FRAME_CACHE[key] = {"name": name, "filename": filename, "line": line}
    return _FRAME_CACHE[key]


def stack(op: str, user_line: int, user_func: str = "train_step") -> list[dict[str, Any]]:
    """A torch-like stack: the torch API frame, the logger wrapper, the caller, main."""
    return [
        frame(op, "torch/distributed/distributed_c10d.py", 3245),
        frame("wrapper", "torch/distributed/c10d_logger.py", 83),
        frame(user_func, "train.py", user_line),
        frame("main", "train.py", 500),
    ]


@dataclass
class RankState:
    """Counters and entries of one rank's recorder."""

    rank: int
    entries: list[dict[str, Any]] = field(default_factory=list)
    seq: dict[str, int] = field(default_factory=dict)
    p2p: dict[str, int] = field(default_factory=dict)
    ops: dict[str, int] = field(default_factory=dict)
    pg_ids: dict[str, int] = field(default_factory=dict)
    record: int = 0


@dataclass
class Job:
    """A multi-rank program whose ranks enqueue collectives into their recorders."""

    world: int
    backend: str = "nccl"
    groups: dict[str, tuple[str, list[int]]] = field(default_factory=dict)
    timing: bool = False
    version: str = "2.10"
    clock: int = BASE_NS

    def __post_init__(self) -> None:
        self.groups.setdefault("0", ("default_pg", list(range(self.world))))
        self.ranks = {r: RankState(r) for r in range(self.world)}

    def group(self, name: str, desc: str, members: list[int]) -> None:
        """Declare a process group (global name, desc, member ranks)."""
        self.groups[name] = (desc, sorted(members))

    def _pg_id(self, state: RankState, name: str) -> int:
        if name not in state.pg_ids:
            state.pg_ids[name] = len(state.pg_ids)
        return state.pg_ids[name]

    def collective(
        self,
        op: str,
        ranks: list[int] | None = None,
        group: str = "0",
        sizes: list[list[int]] | None = None,
        out_sizes: list[list[int]] | None = None,
        dtype: str = "Float",
        state: str = "completed",
        retired: bool | None = None,
        line: int = 100,
        func: str = "train_step",
        duration_ms: float | None = None,
        per_rank: dict[int, dict[str, Any]] | None = None,
        same_seq: bool = False,
    ) -> None:
        """Enqueue ``op`` on ``ranks`` (default: all members); ``per_rank`` overrides fields per rank."""
        members = self.groups[group][1]
        self.clock += 1_000_000
        for rank in ranks if ranks is not None else members:
            st = self.ranks[rank]
            if not same_seq:
                st.seq[group] = st.seq.get(group, 0) + 1
            st.ops[group] = st.ops.get(group, 0) + 1
            shape = sizes if sizes is not None else [[4, 4]]
            entry: dict[str, Any] = {
                "record_id": st.record,
                "pg_id": self._pg_id(st, group),
                "process_group": (group, self.groups[group][0]),
                "collective_seq_id": st.seq.get(group, 0),
                "p2p_seq_id": st.p2p.get(group, 0),
                "op_id": st.ops[group],
                "profiling_name": f"{self.backend}:{op}",
                "time_created_ns": self.clock + rank * 1000,
                "input_sizes": shape,
                "input_dtypes": [dtype] * len(shape),
                "output_sizes": out_sizes if out_sizes is not None else shape,
                "output_dtypes": [dtype] * len(out_sizes if out_sizes is not None else shape),
                "state": state,
                "time_discovered_started_ns": None,
                "time_discovered_completed_ns": None,
                "retired": (state == "completed") if retired is None else retired,
                "timeout_ms": 600000,
                "is_p2p": False,
                "thread_name": "pt_main_thread",
                "thread_id": "140000000000000",
                "frames": stack(op, line, func),
            }
            if self.timing:
                if state in ("started", "completed"):
                    entry["time_discovered_started_ns"] = self.clock + 10_000 + rank * 1000
                if state == "completed":
                    entry["time_discovered_completed_ns"] = self.clock + 2_000_000
                    entry["duration_ms"] = duration_ms if duration_ms is not None else 2.0
            if per_rank and rank in per_rank:
                entry.update(per_rank[rank])
            st.entries.append(entry)
            st.record += 1

    def p2p(
        self,
        op: str,
        rank: int,
        peer_local: int | None,
        own_local: int,
        group: str = "0",
        size: int = 16,
        state: str = "completed",
    ) -> None:
        """Enqueue a send/recv on ``rank`` (names use group-local ranks: ``send 1->0``, ``recv 0<-?``)."""
        st = self.ranks[rank]
        st.p2p[group] = st.p2p.get(group, 0) + 1
        st.ops[group] = st.ops.get(group, 0) + 1
        self.clock += 1_000_000
        arrow = "->" if op == "send" else "<-"
        peer = "?" if peer_local is None else str(peer_local)
        st.entries.append(
            {
                "record_id": st.record,
                "pg_id": self._pg_id(st, group),
                "process_group": (group, self.groups[group][0]),
                "collective_seq_id": st.seq.get(group, 0),
                "p2p_seq_id": st.p2p[group],
                "op_id": st.ops[group],
                "profiling_name": f"{self.backend}:{op} {own_local}{arrow}{peer}",
                "time_created_ns": self.clock,
                "input_sizes": [[size]],
                "input_dtypes": ["Float"],
                "output_sizes": [[size]],
                "output_dtypes": ["Float"],
                "state": state,
                "time_discovered_started_ns": None,
                "time_discovered_completed_ns": None,
                "retired": state == "completed",
                "timeout_ms": 600000,
                "is_p2p": True,
                "frames": stack(op, 300),
            }
        )
        st.record += 1

    def dump(self, rank: int, pg_config: str = "sane", keep_last: int | None = None) -> dict[str, Any]:
        """The dict torch pickles for ``rank``; ``pg_config``: sane, broken (gloo 2.13) or none."""
        st = self.ranks[rank]
        entries = st.entries[-keep_last:] if keep_last else list(st.entries)
        status: dict[str, dict[str, int]] = {}
        for name, pg in st.pg_ids.items():
            mine = [e for e in st.entries if e["process_group"][0] == name and not e["is_p2p"]]
            enq = max((e["collective_seq_id"] for e in mine), default=-1)
            done = max(
                (
                    e["collective_seq_id"]
                    for e in mine
                    if e["state"] == "completed" or (self.backend == "gloo" and e["retired"])
                ),
                default=-1,
            )
            status[str(pg)] = {
                "last_enqueued_collective": enq,
                "last_started_collective": -1,
                "last_completed_collective": done,
            }
        dump: dict[str, Any] = {"version": self.version}
        if pg_config == "sane":
            dump["pg_config"] = {
                name: {"name": name, "desc": desc, "ranks": str(members)}
                for name, (desc, members) in self.groups.items()
                if rank in members
            }
        elif pg_config == "broken":
            dump["pg_config"] = {"": {"name": "", "desc": "", "ranks": "[]"}}
        dump["comm_lib_version"] = "" if self.backend == "gloo" else "2.27.5"
        dump["pg_status"] = status
        dump["entries"] = entries
        return dump

    def write(
        self,
        root: Path,
        fmt: str = "pickle",
        ranks: list[int] | None = None,
        pg_config: str = "sane",
        prefix: str = "comm_lib_trace_rank_",
        host_of: dict[int, str] | None = None,
        keep_last: int | None = None,
    ) -> Path:
        """Write one dump per rank under ``root`` (``<host>/`` folders when ``host_of`` is given)."""
        root.mkdir(parents=True, exist_ok=True)
        for rank in ranks if ranks is not None else list(self.ranks):
            dump = self.dump(rank, pg_config, keep_last)
            folder = root / host_of[rank] if host_of else root
            folder.mkdir(parents=True, exist_ok=True)
            if fmt == "json":
                (folder / f"{prefix}{rank}.json").write_text(to_json(dump))
            else:
                (folder / f"{prefix}{rank}").write_bytes(pickle.dumps(dump, protocol=2))
        return root


def to_json(dump: dict[str, Any]) -> str:
    """``_dump_fr_trace_json`` shape: sorted keys, no frames, list groups, 0 times, string status."""
    out = dict(dump)
    entries = []
    for entry in dump.get("entries", []):
        e = {k: v for k, v in entry.items() if k != "frames"}
        e["process_group"] = list(entry["process_group"])
        for key in ("time_discovered_started_ns", "time_discovered_completed_ns"):
            if e.get(key) is None:
                e[key] = 0
        entries.append(e)
    if entries:
        out["entries"] = entries
    else:
        out.pop("entries", None)
    out["pg_status"] = {
        k: {kk: str(vv) for kk, vv in v.items()} for k, v in dump.get("pg_status", {}).items()
    }
    out["nccl_comm_state"] = {}
    return json.dumps(out, sort_keys=True, separators=(",", ":"))


def job_tables(job: Job, root: Path, **write: Any) -> Any:
    """Write ``job``'s dumps under ``root`` and ingest them (serially): the incident's ``Tables``."""
    from tests.helpers.incident import ingest_serial

    job.write(root, **write)
    return ingest_serial(root).tables
